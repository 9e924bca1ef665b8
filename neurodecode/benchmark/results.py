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

The lock is POSIX ``fcntl.flock`` (Linux, macOS), advisory, on a local or NFSv4 filesystem.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

#: Columns that identify one result (one fold of one pipeline on one subject's session).
KEY = ("evaluation", "dataset", "pipeline", "subject", "session", "fold")


def row_key(row) -> tuple:
    """The key of a result row: its values for :data:`KEY`, subject as int, the rest as str."""
    return (str(row["evaluation"]), str(row["dataset"]), str(row["pipeline"]), int(row["subject"]),
            str(row["session"]), int(row["fold"]))


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
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
    def _read_lines(path: Path) -> list[dict]:
        if not path.is_file():
            return []
        rows = []
        with open(path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # the partial tail of a killed writer
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
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
                have = {row_key(r) for r in self._read_lines(path)}
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
        """Every complete result row, in file order."""
        return self._read_lines(self.results_path)

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


__all__ = ["KEY", "ResultStore", "atomic_write_text", "row_key"]
