"""A resumable, append-only store of benchmark results: one JSON line per finished fold.

Layout of a results folder (``--out``)::

    results.jsonl   one line per result row, appended as each fold finishes
    errors.jsonl    one line per fold that raised (kept apart, so a rerun retries it)
    runs.jsonl      one line per run started here: its configuration, pid, start time
    config.json     the configuration of the latest run, replaced atomically
    .lock           the lock file every writer takes

Guarantees
----------
* **Atomic rows.** A row is one ``write`` of a whole line, made while holding an exclusive
  ``flock`` on ``.lock``. A run killed mid-write leaves at most a partial last line; the next
  writer cuts it off before appending, and readers skip it.
* **Two runs, one folder.** Writers serialise on the lock, and a row whose key is already in
  the file (written meanwhile by the other run) is not written again: the first writer wins.
  Results are deterministic functions of their key, so which run wrote a row does not matter.
* **Resume.** :meth:`ResultStore.done_keys` gives the keys of finished folds; a run skips them.
* **Versions.** A row's key includes what computed it (:data:`CONTENT_KEY`: the pipeline's
  parameter hash, the neurodecode version, the data fingerprint). A changed pipeline writes new
  rows next to the old ones; nothing is overwritten, and readers choose the version they need.
* **Foreign lines.** A complete line that is valid JSON but not a result row (edited in by
  hand, or another tool's file) raises :class:`CorruptResultsError` naming the file and line,
  rather than being silently ignored or crashing the planner later.

The lock is POSIX ``fcntl.flock`` (Linux, macOS), advisory, on a local or NFSv4 filesystem.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils.files import write_atomically

#: Columns that identify one result (one fold of one pipeline on one subject's session); every row has them.
KEY = ("evaluation", "dataset", "pipeline", "subject", "session", "fold")
#: Optional key column: the calibration a row was computed with (the cross-subject ``cs_mode``, or a
#: learning-curve point, ``"8 per class"``); "" where absent. Rows of one calibration are never served
#: for another.
CALIBRATION = "calibration"
#: Columns that say what computed a row: the pipeline's parameter hash, the package version and the
#: data fingerprint. Part of the key, so an edited pipeline gets new rows instead of reusing old
#: ones; optional (rows written before they existed read as "").
CONTENT_KEY = ("pipeline_hash", "neurodecode_version", "data_key")


class CorruptResultsError(ValueError):
    """A results file holds a line that is not a result row (it names the file and line)."""


def row_key(row) -> tuple:
    """The key of a result row: :data:`KEY` (subject and fold as int, the rest as str), :data:`CALIBRATION`,
    then :data:`CONTENT_KEY`."""
    return (str(row["evaluation"]), str(row["dataset"]), str(row["pipeline"]), int(row["subject"]),
            str(row["session"]), int(row["fold"]), calibration_of(row), *content_key(row))


def calibration_of(row) -> str:
    """A row's :data:`CALIBRATION` as str ("" where absent, None or NaN)."""
    value = row.get(CALIBRATION)
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def content_key(row) -> tuple:
    """The :data:`CONTENT_KEY` values of a row, as str ("" where absent, None or NaN)."""
    values = (row.get(k) for k in CONTENT_KEY)
    return tuple("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values)


def _check_row(row, path: Path, line_no: int) -> dict:
    """``row`` if it is a result row, else :class:`CorruptResultsError` naming the file and line."""
    if not isinstance(row, dict):
        problem = f"a JSON {type(row).__name__}, not an object"
    else:
        missing = [k for k in KEY if k not in row]
        problem = f"no {missing} field(s)" if missing else None
        if problem is None:
            try:
                row_key(row)
            except (TypeError, ValueError) as err:
                problem = f"a bad subject or fold ({err})"
    if problem is None:
        return row
    raise CorruptResultsError(f"{path}, line {line_no}: not a result row ({problem}); every line must be a JSON "
                              f"object with {list(KEY)}: remove or move that line, then rerun")


def _plain(value):
    """JSON-ready value: numpy scalars and arrays to Python, non-finite floats to None."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (no half-written file)."""
    write_atomically(path, text.encode(), mode=0o644)


class ResultStore:
    """Append-only JSON-lines table of fold results in a folder, safe for concurrent runs.

    Parameters
    ----------
    root : str or Path
        The results folder; created if missing.
    """

    def __init__(self, root):
        self.root = Path(root)

    @property
    def results_path(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def errors_path(self) -> Path:
        return self.root / "errors.jsonl"

    @contextlib.contextmanager
    def lock(self):
        """Hold the folder's exclusive lock (blocks until the other writer releases it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _read_lines(path: Path, *, results: bool = False) -> list[dict]:
        if not path.is_file():
            return []
        rows = []
        with open(path, "rb") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.endswith(b"\n"):
                    break  # the partial tail of a killed writer
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    # Not JSON at all: what a crash can leave (a NUL-filled block after a power loss);
                    # skipping it only means that fold is computed again.
                    continue
                rows.append(_check_row(row, path, line_no) if results else row)
        return rows

    @staticmethod
    def _cut_partial_tail(path: Path) -> None:
        """Drop a last line without its newline (left by a writer killed mid-line)."""
        if not path.is_file() or path.stat().st_size == 0:
            return
        with open(path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            data = fh.read()
            fh.truncate(data.rfind(b"\n") + 1)

    def _append(self, path: Path, rows: list[dict], *, dedupe: bool) -> int:
        with self.lock():
            self._cut_partial_tail(path)
            if dedupe:
                have = {row_key(r) for r in self._read_lines(path, results=True)}
                rows = [r for r in rows if row_key(r) not in have]
            if not rows:
                return 0
            payload = "".join(json.dumps({k: _plain(v) for k, v in r.items()}) + "\n" for r in rows).encode()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            return len(rows)

    def append(self, rows: list[dict]) -> int:
        """Append result rows (all of one fold, say) unless their keys are already stored.

        Parameters
        ----------
        rows : list of dict
            Each holds at least the :data:`KEY` columns and ``score``.

        Returns
        -------
        n_written : int
            Rows written (0 when another run stored them first).
        """
        missing = [k for r in rows for k in KEY if k not in r]
        if missing:
            raise ValueError(f"result rows lack key column(s) {sorted(set(missing))}; every row needs {list(KEY)}")
        return self._append(self.results_path, rows, dedupe=True)

    def append_error(self, row: dict) -> None:
        """Record a fold that raised (``errors.jsonl``; not a result, so a rerun retries it)."""
        self._append(self.errors_path, [row], dedupe=False)

    def rows(self) -> list[dict]:
        """Every complete result row, in file order.

        Raises
        ------
        CorruptResultsError
            A complete line is valid JSON but not a result row.
        """
        return self._read_lines(self.results_path, results=True)

    def errors(self) -> list[dict]:
        return self._read_lines(self.errors_path)

    def done_keys(self) -> set:
        """Keys (:func:`row_key`) of the results stored so far."""
        return {row_key(r) for r in self.rows()}

    def to_frame(self) -> pd.DataFrame:
        """The results as a DataFrame (one row per fold and session), empty if none yet."""
        return pd.DataFrame(self.rows())

    def record_run(self, config: dict) -> None:
        """Store a run's configuration: appended to ``runs.jsonl``, and as ``config.json``."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._append(self.root / "runs.jsonl", [config], dedupe=False)
        atomic_write_text(self.root / "config.json", json.dumps(_plain(config), indent=2, default=str) + "\n")


def latest_version(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of one version per pipeline: the version written last, so a report never mixes them.

    For each (evaluation, calibration, dataset, pipeline), keep the rows whose pipeline hash and package
    version are those of its last row in file order; then, per subject, those whose data key
    is that of the subject's last row. Rows without these columns (older files) form one version.

    Parameters
    ----------
    frame : DataFrame
        Result rows in file order (as :meth:`ResultStore.to_frame` gives them).

    Returns
    -------
    DataFrame
        A subset of ``frame``, in its order.
    """
    if frame.empty:
        return frame
    keys = pd.DataFrame({k: frame[k].fillna("").astype(str) if k in frame.columns else "" for k in CONTENT_KEY},
                        index=frame.index)
    version = keys["pipeline_hash"] + "|" + keys["neurodecode_version"]
    calibration = (frame[CALIBRATION].fillna("").astype(str) if CALIBRATION in frame.columns
                   else pd.Series("", index=frame.index))
    group = [frame["evaluation"], calibration, *(frame[c] for c in ("dataset", "pipeline"))]
    keep = version.eq(version.groupby(group).transform("last"))
    data = keys["data_key"].where(keep)
    last_data = data.groupby([*group, frame["subject"]]).transform("last")
    keep &= keys["data_key"].eq(last_data)
    return frame[keep]


__all__ = ["CALIBRATION", "CONTENT_KEY", "KEY", "CorruptResultsError", "ResultStore", "atomic_write_text",
           "calibration_of", "content_key", "latest_version", "row_key"]
