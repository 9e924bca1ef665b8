"""The session log of a live decoding session: JSON lines written as they happen, and read back as tables.

Records, one JSON object a line, each flushed as it is written (a crash loses at most the line
being written): ``session`` first (stream, model, settings), then ``decision``, ``marker``,
``dropout``, ``resumed`` and ``warning`` records in the order they happen, and an ``end`` record
with the summary. Every string in them (a stream's name, a marker, a class name) is written by
:func:`json.dumps`, which escapes quotes and control characters: a record is one line whatever
the stream sends.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import LSLError

__all__ = ["DECISION_FIELDS", "SessionLog", "read_session_log", "utc_now"]

#: Fields of a ``decision`` record (those of :class:`~neurodecode.online.LiveDecision`).
DECISION_FIELDS = ("index", "segment", "lsl_time", "time_s", "window_start_s", "label", "class_name", "proba",
                   "true", "latency_ms", "processing_ms")


def utc_now() -> str:
    """The time now in UTC, ISO 8601 to the millisecond, as the records stamp it."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class SessionLog:
    """A new session log: JSON lines written and flushed one by one.

    Parameters
    ----------
    path : path-like
        The file to create (its folder too); an existing file is refused.

    Raises
    ------
    LSLError
        The file exists.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fh = open(self.path, "x", encoding="utf-8")
        except FileExistsError:
            raise LSLError(f"session log {self.path} already exists; choose another file") from None

    def write(self, record: dict) -> None:
        """Append one record (a dict of JSON values; NaN written as ``NaN``) and flush it."""
        self._fh.write(json.dumps(record, allow_nan=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_session_log(path) -> dict:
    """A session log as tables, ready for :func:`~neurodecode.reports.plot_timeline`.

    Parameters
    ----------
    path : path-like
        A log written by :class:`~neurodecode.online.LSLDecoder` (``log=``) or
        ``neurodecode online --log``.

    Returns
    -------
    log : dict
        ``session`` (the first record: stream, model, settings), ``decisions`` (DataFrame, one
        row per decision: the fields of :class:`~neurodecode.online.LiveDecision`,
        ``proba_<class>`` columns in place of ``proba``), ``markers`` (DataFrame: ``lsl_time``,
        ``time_s``, ``marker``, ``label``), ``events`` (DataFrame of the other records:
        dropouts, resumptions, warnings) and ``summary`` (the last record's summary, or None if
        the session did not end cleanly). ``class_names`` as in the session record. For a
        timeline of the scored decisions: ``d = log["decisions"].dropna(subset=["true"])``, then
        ``plot_timeline(d.time_s, d.true.astype(int), d.label, log["class_names"])``.

    Raises
    ------
    LSLError
        Not a session log, or a line other than the last that is not JSON.
    """
    import pandas as pd

    records = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            # Only the last line can be cut short (a session killed mid-write); anything else is damage.
            if number < len(lines):
                raise LSLError(f"{path}: line {number} is not JSON") from None
    if not records or records[0].get("type") != "session":
        raise LSLError(f"{path} is not a neurodecode live session log (no session record first)")
    session = records[0]
    class_names = session["class_names"]
    decisions = pd.DataFrame([r for r in records if r.get("type") == "decision"], columns=list(DECISION_FIELDS))
    proba = np.array([list(p) for p in decisions["proba"]], dtype=float).reshape(len(decisions), len(class_names))
    for k, name in enumerate(class_names):
        decisions[f"proba_{name}"] = proba[:, k]
    decisions = decisions.drop(columns="proba")
    decisions["true"] = decisions["true"].astype("Int64")
    markers = pd.DataFrame([r for r in records if r.get("type") == "marker"],
                           columns=["lsl_time", "time_s", "marker", "label"])
    markers["label"] = markers["label"].astype("Int64")
    events = pd.DataFrame([r for r in records if r.get("type") not in ("session", "decision", "marker", "end")])
    ends = [r for r in records if r.get("type") == "end"]
    return {"session": session, "class_names": class_names, "decisions": decisions, "markers": markers,
            "events": events, "summary": ends[-1]["summary"] if ends else None}
