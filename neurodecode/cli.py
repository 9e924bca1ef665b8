"""The ``neurodecode`` command. Thin: it parses arguments and calls the stages."""

from __future__ import annotations

import argparse
import json
import sys
import time


def _format_counts(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else "-"


def _format_shape(shape) -> str:
    return "(" + ", ".join("ragged" if s is None else str(s) for s in shape) + ")"


def datasets_table(load: bool = True, names=None, stream=None) -> list[dict]:
    """Print one row per dataset card: files present and verified, and what its loader reports.

    Returns the rows as dictionaries (also written with ``--json``).
    """
    from .data.cards import DATA_ENV, list_cards
    from .data.errors import NeurodecodeDataError
    from .data.registry import SUMMARIES

    stream = stream or sys.stdout
    rows = []
    cards = [c for c in list_cards() if names is None or c.name in names]
    unknown = set(names or ()) - {c.name for c in cards}
    if unknown:
        raise SystemExit(f"unknown dataset(s) {sorted(unknown)}; known: {[c.name for c in list_cards()]}")
    for card in cards:
        status = card.status()
        row = {"dataset": card.name, "modality": card.modality, "licence": card.licence,
               "files": status["total"], "present": status["present"], "verified": status["verified"],
               "missing": status["missing"], "mismatched": status["mismatched"], "loads": [], "error": None}
        if status["error"]:
            row["error"] = status["error"]
        elif load and status["present"] == status["total"] and card.name in SUMMARIES:
            start = time.perf_counter()
            try:
                row["loads"] = [{"what": what, "shape": list(shape), "classes": counts}
                                for what, shape, counts in SUMMARIES[card.name]()]
            except NeurodecodeDataError as err:
                row["error"] = f"{type(err).__name__}: {err}"
            row["load_seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        _print_row(row, stream)
    print(f"\n{len(rows)} dataset card(s); data folder from ${DATA_ENV}.", file=stream)
    return rows


def _print_row(row: dict, stream) -> None:
    ok = row["verified"] == row["files"]
    state = "verified" if ok else ("MISSING" if row["present"] < row["files"] else "CHECKSUM MISMATCH")
    print(f"\n{row['dataset']}  [{row['modality']}]  files {row['present']}/{row['files']} present, "
          f"{row['verified']} verified: {state}", file=stream)
    print(f"  licence: {row['licence']}", file=stream)
    for load in row["loads"]:
        print(f"  {load['what']}: shape {_format_shape(load['shape'])}; classes {_format_counts(load['classes'])}",
              file=stream)
    if row["missing"][:3] and not row["error"]:
        print(f"  missing: {row['missing'][:3]}{' ...' if len(row['missing']) > 3 else ''}", file=stream)
    if row["mismatched"]:
        print(f"  checksum mismatch: {row['mismatched'][:3]}", file=stream)
    if row["error"]:
        print(f"  error: {row['error']}", file=stream)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="neurodecode", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ds = sub.add_parser("datasets", help="list dataset cards, verify their files, and load each one")
    ds.add_argument("names", nargs="*", help="only these datasets (default: every card)")
    ds.add_argument("--no-load", action="store_true", help="only check files and checksums")
    ds.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    args = parser.parse_args(argv)

    if args.command == "datasets":
        rows = datasets_table(load=not args.no_load, names=args.names or None)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=2, default=str)
        return 0 if all(r["verified"] == r["files"] and not r["error"] for r in rows) else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
