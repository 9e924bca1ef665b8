"""The ``neurodecode`` command line: argument parsing, one-line errors, exit codes; the work is in the stages."""

from __future__ import annotations

import argparse
import json
import sys
import time

_DESCRIPTION = """\
Decode brain signals (EEG, MEG, fMRI) with scikit-learn pipelines, and benchmark pipelines on
local datasets with MOABB's evaluations, offline."""

_EPILOG = """\
Each command has its own --help (neurodecode benchmark --help).

data:
  Datasets are read from the folder named by the environment variable NEURODECODE_DATA, one
  sub-folder per dataset card. Nothing is downloaded unless you ask (NEURODECODE_ALLOW_DOWNLOAD=1).

examples:
  export NEURODECODE_DATA=~/data
  neurodecode datasets eegmmidb
  neurodecode benchmark pipelines --subjects 1-3 --out results/benchmark

exit status: 0 success, 1 something failed (a dataset, a pipeline), 2 a usage mistake."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2), not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _format_counts(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else "-"


def _format_shape(shape) -> str:
    return "(" + ", ".join("ragged" if s is None else str(s) for s in shape) + ")"


def datasets_table(load: bool = True, names=None, stream=None, *, verify: bool = False,
                   card_dirs=()) -> list[dict]:
    """Print one row per dataset card: files present and verified, and what its loader reports.

    ``verify`` rehashes every file, ignoring the checksum cache (``--verify``); ``card_dirs``
    adds a user's cards, each a ``.toml`` file or a folder of them (``--cards``).
    Returns the rows as dictionaries (also written with ``--json``).
    """
    from .data.cards import DATA_ENV, list_cards
    from .data.errors import NeurodecodeDataError
    from .data.registry import summarize

    stream = stream or sys.stdout
    rows = []
    try:
        every = list_cards(card_dirs)
    except NeurodecodeDataError as err:
        raise SystemExit(f"neurodecode datasets: {err}") from None
    cards = [c for c in every if names is None or c.name in names]
    unknown = set(names or ()) - {c.name for c in cards}
    if unknown:
        raise SystemExit(f"unknown dataset(s) {sorted(unknown)}; known: {[c.name for c in every]}")
    for card in cards:
        status = card.verify_all() if verify else card.status()
        row = {"dataset": card.name, "modality": card.modality, "licence": card.licence,
               "files": status["total"], "present": status["present"], "verified": status["verified"],
               "unverified": status["unverified"], "listed": status["listed"], "missing": status["missing"],
               "mismatched": status["mismatched"], "loads": [], "error": None}
        if status["error"]:
            row["error"] = status["error"]
        elif load and status["present"] == status["total"]:
            start = time.perf_counter()
            try:
                row["loads"] = [{"what": what, "shape": list(shape), "classes": counts}
                                for what, shape, counts in summarize(card)]
            except NeurodecodeDataError as err:
                row["error"] = f"{type(err).__name__}: {err}"
            row["load_seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        _print_row(row, stream)
    print(f"\n{len(rows)} dataset card(s); data folder from ${DATA_ENV}.", file=stream)
    return rows


def _print_row(row: dict, stream) -> None:
    unverified = row.get("unverified", 0)  # files of a user's card that give no sha256
    ok = row["verified"] + unverified == row["files"]
    state = (("verified" if not unverified else "present, not all verifiable") if ok
             else ("MISSING" if row["present"] < row["files"] else "CHECKSUM MISMATCH"))
    listed = row.get("listed", row["files"])  # a partial card lists more files than are expected here
    print(f"\n{row['dataset']}  [{row['modality']}]  files {row['present']}/{row['files']} present"
          f"{f' (of {listed} the card lists)' if listed != row['files'] else ''}, "
          f"{row['verified']} verified{f', {unverified} unverified (no sha256)' if unverified else ''}: {state}",
          file=stream)
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


def _subjects(text: str) -> list:
    """``"1-3,7"`` -> ``[1, 2, 3, 7]``; a reversed range or an empty part is refused, not read as nothing."""
    out = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"subjects must look like 1-3,7; got {text!r}") from None
        if last < first:
            raise argparse.ArgumentTypeError(f"subject range {part.strip()!r} is reversed (write {last}-{first})")
        out += [s for s in range(first, last + 1) if s not in out]
    return out


def _add_benchmark_parser(sub) -> None:
    from .benchmark.runner import DEFAULT_DATASET, DEFAULT_N_SUBJECTS, EVALUATIONS

    bench = sub.add_parser(
        "benchmark", help="run the pipelines of a folder on datasets, fold by fold, and write a report",
        description="Runs each pipeline of PIPELINES_DIR (MOABB YAML, or .py with a PIPELINE dict) with MOABB's "
                    "evaluations, offline. Every finished fold is appended to OUT/results.jsonl, keyed by a hash "
                    "of the pipeline's parameters: a rerun skips stored folds, an edited pipeline is recomputed. "
                    "The report (HTML, PNG, CSV, failures.csv) goes to OUT/report/. "
                    "Pipeline files are code and run when loaded: a .py file is executed, and a YAML file imports "
                    "and calls what its steps name. Only run pipeline folders you trust. With --pipelines, only "
                    "the files declaring those names are loaded (a YAML's name: key, a .py file's stem or a "
                    "literal name = \"...\" or \"name\": \"...\" in it, all read without running anything). "
                    "Exit status: 0 all ran, 1 a pipeline file failed to load or a pipeline failed, 2 a usage "
                    "mistake (one line on stderr).")
    bench.add_argument("pipelines_dir", nargs="?", default="pipelines", help="folder or file (default: pipelines)")
    bench.add_argument("--datasets", nargs="+", default=[DEFAULT_DATASET], metavar="DATASET",
                       help="package datasets by name or alias (`neurodecode datasets` lists them; NAME:VARIANT "
                            "picks a task), a card file (path/to/card.toml), a BIDS folder, or moabb:ClassName; "
                            f"each runs with the paradigm its card declares (default: {DEFAULT_DATASET})")
    bench.add_argument("--subjects", type=_subjects, default=None,
                       help=f"e.g. 1-3,7 (default: the first {DEFAULT_N_SUBJECTS} subjects present; --full: all)")
    bench.add_argument("--pipelines", nargs="+", default=None, metavar="NAME", help="only these pipeline names")
    bench.add_argument("--evaluation", choices=list(EVALUATIONS), default="within-session")
    bench.add_argument("--out", default="benchmarks/results/benchmark", help="results folder")
    bench.add_argument("--n-jobs", type=int, default=1, help="folds in parallel (joblib processes)")
    bench.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="Dask scheduler address, or 'local' for a local cluster")
    bench.add_argument("--full", action="store_true", help="the full study: every subject and every pipeline")
    bench.add_argument("--no-report", action="store_true", help="only run the folds")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")


def _benchmark(args) -> int:
    from .benchmark.runner import BenchmarkConfig, run_benchmark
    from .reports.benchmark_report import write_report

    config = BenchmarkConfig(pipelines_dir=args.pipelines_dir, datasets=args.datasets, subjects=args.subjects,
                             pipelines=args.pipelines, evaluation=args.evaluation, out=args.out,
                             n_jobs=args.n_jobs, scheduler=args.scheduler, full=args.full)
    from .data.errors import NeurodecodeDataError

    try:
        results = run_benchmark(config, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, NeurodecodeDataError) as err:
        # Operator mistakes and bad data: what is wrong, in one line; rows already written stay.
        print(f"neurodecode benchmark: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neurodecode benchmark: interrupted; finished folds are kept in {args.out}/results.jsonl and "
              "the same command resumes", file=sys.stderr)
        return 130
    failures = results.attrs.get("failures", [])
    if not args.no_report and (not results.empty or failures):
        index = write_report(results, f"{args.out}/report", failures=failures)
        print(f"report: {index}")
    return 0 if not failures and not results.empty else 1


def _one_line(err: BaseException) -> str:
    """An exception as one line: its message's lines joined (a multi-file load error lists each file)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines) or type(err).__name__


def main(argv=None) -> int:
    from . import __version__

    parser = _Parser(prog="neurodecode", description=_DESCRIPTION, epilog=_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"neurodecode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    ds = sub.add_parser("datasets", help="list dataset cards, verify their files, and load each one")
    ds.add_argument("names", nargs="*", help="only these datasets (default: every card)")
    ds.add_argument("--no-load", action="store_true", help="only check files and checksums")
    ds.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    ds.add_argument("--verify", action="store_true",
                    help="rehash every file, ignoring (and refreshing) the checksum cache")
    ds.add_argument("--cards", action="append", default=[], metavar="DIR",
                    help="also list your own cards: a folder of TOML cards or one .toml file (repeatable)")
    _add_benchmark_parser(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, a usage error: a status to return, as for any command
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 2

    if args.command == "datasets":
        rows = datasets_table(load=not args.no_load, names=args.names or None, verify=args.verify,
                              card_dirs=args.cards)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=2, default=str)
        return 0 if all(r["verified"] + r["unverified"] == r["files"] and not r["error"] for r in rows) else 1
    if args.command == "benchmark":
        return _benchmark(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
