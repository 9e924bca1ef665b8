"""What may not leave a batch worker: paths, the identity words of a recording's header, dates.

Messages about a recording (why it is unreadable, why it does not match the model) are cleaned
by a :class:`Scrubber` before they are stored or printed: the file's path and name become
``<recording ID>``, the words of an EDF/BDF header's patient and recording fields and of a FIF's
subject names and id become ``<redacted>``, and anything shaped like a date or a clock time
becomes ``<date>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .discovery import suffix

__all__ = ["Scrubber", "header_tokens", "subject_tokens"]

_DATE_PATTERNS = (
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[T ]\d{1,2}[:.]\d{2}(?:[:.]\d{2}(?:\.\d+)?)?)?\b",  # 1961-02-03 16:15
    r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",  # 03.02.61, 03/02/1961
    r"\b\d{1,2}[-/. ]?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*[-/. ]?\d{2,4}\b",  # 03-FEB-1961
    r"\b\d{1,2}[:.]\d{2}[:.]\d{2}\b",  # 16.15.00 (an EDF start time)
)
_DATE_RE = re.compile("|".join(_DATE_PATTERNS), re.IGNORECASE)


def header_tokens(path: Path) -> set:
    """Words of an EDF/BDF header's patient and recording fields (which carry names and dates).

    Read from the raw bytes, so that they are known even when MNE cannot parse the file.
    """
    if suffix(path) not in (".edf", ".bdf"):
        return set()
    try:
        with open(path, "rb") as fh:
            head = fh.read(184)
    except OSError:
        return set()
    text = head[8:184].decode("latin-1", errors="replace")
    return {t for t in re.split(r"[\s_]+", text) if len(t) >= 2 and t.upper() not in _EDF_KEYWORDS}


# Words of the EDF+ header grammar and placeholders, which say nothing about anyone.
_EDF_KEYWORDS = {"X", "M", "F", "STARTDATE", "EDF+C", "EDF+D"}


def subject_tokens(raw) -> set:
    """Values of a read recording's subject_info (names, ids, birthday) and its measurement date."""
    out = set()
    info = getattr(raw, "info", None)
    if info is None:
        return out
    subject = info.get("subject_info") or {}
    for key in ("first_name", "middle_name", "last_name", "his_id"):
        value = subject.get(key)
        if isinstance(value, str):
            out |= {t for t in re.split(r"[\s_]+", value) if len(t) >= 2}
    return out


class Scrubber:
    """Removes paths, header identity words and dates from a message before it leaves the worker."""

    def __init__(self, path: Path, root: Path, rec_id: str):
        rel = path.relative_to(root)
        # Paths as messages quote them (read_raw: the path; match_recording: the file name). Bare stems and
        # folder names are not searched: "header" or "data" would then vanish from every message.
        self.literal = sorted({str(path), os.path.abspath(path), str(path.resolve()), rel.as_posix(), path.name,
                               str(root), os.path.abspath(root)}, key=len, reverse=True)
        self.tokens = header_tokens(path)
        self.label = f"<recording {rec_id}>"

    def add(self, tokens) -> None:
        self.tokens |= set(tokens)

    def __call__(self, text: str) -> str:
        text = " ".join(str(text).split())  # one line
        for literal in self.literal:
            if literal and len(literal) >= 2:  # whole words only: a file "trunc.edf" leaves "truncated" alone
                text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(literal)}(?![A-Za-z0-9])", self.label, text)
        for token in sorted(self.tokens, key=len, reverse=True):
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", "<redacted>", text,
                          flags=re.IGNORECASE)
        return _DATE_RE.sub("<date>", text)

