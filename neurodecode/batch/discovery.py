"""Which files of a folder are recordings, and the id each is known by in the outputs.

Every file under the input folder, recursively, in a supported format (:data:`SUPPORTED_SUFFIXES`),
except hidden files and folders, FIF files that are not continuous recordings (MNE's ``-eve.fif``,
``-epo.fif``, ...), the continuations of a split FIF recording (read through its first part) and
anything under an excluded folder (the output folder, when it lies inside the input).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import BatchError

__all__ = ["SUPPORTED_SUFFIXES", "find_recordings", "recording_id", "suffix"]

#: File endings read as recordings (case-insensitive) and the format named in the outputs.
SUPPORTED_SUFFIXES = {".edf": "EDF", ".bdf": "BDF", ".gdf": "GDF", ".vhdr": "BrainVision", ".set": "EEGLAB",
                      ".fif": "FIF", ".fif.gz": "FIF"}
# FIF files that hold something other than a continuous recording (MNE's naming conventions).
_NOT_RAW_FIF = re.compile(r"[-_](eve|epo|ave|cov|fwd|inv|trans|proj|sol|src|bem|annot|dip|ica|tfr|csd|morph)"
                          r"\.fif(\.gz)?$", re.IGNORECASE)
# Continuations of a split FIF recording (name-1.fif): read through their first part.
_SPLIT_FIF = re.compile(r"-\d+\.fif(\.gz)?$", re.IGNORECASE)


def suffix(path: Path) -> str:
    """A file's ending as :data:`SUPPORTED_SUFFIXES` knows it, lower case (``".fif.gz"`` counted as one)."""
    name = path.name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else path.suffix.lower()


def find_recordings(input_dir, *, exclude=()) -> list:
    """Every supported recording under ``input_dir`` (recursively), sorted by relative path.

    Hidden files and folders, FIF files that are not continuous recordings (``-eve.fif``,
    ``-epo.fif``, ...) and the continuations of split FIF files are left out, as is anything
    under a folder of ``exclude`` (the output folder, when it lies inside the input).
    """
    root = Path(input_dir)
    # Compared both as written and with links followed: a folder of links may link to files anywhere.
    excluded = [p for e in exclude for p in (Path(os.path.abspath(e)), Path(e).resolve())]
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        kind = suffix(path)
        if kind not in SUPPORTED_SUFFIXES:
            continue
        if kind in (".fif", ".fif.gz") and (_NOT_RAW_FIF.search(path.name) or _is_split_part(path)):
            continue
        where = Path(os.path.abspath(path))
        if any(where.is_relative_to(e) for e in excluded):
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _is_split_part(path: Path) -> bool:
    if not _SPLIT_FIF.search(path.name):
        return False
    first = re.sub(r"-\d+(\.fif(\.gz)?)$", r"\1", path.name, flags=re.IGNORECASE)
    return (path.parent / first).is_file()


def recording_id(relpath, ids: str = "hash") -> str:
    """The id a recording is known by in every output.

    Parameters
    ----------
    relpath : str or Path
        Path relative to the input folder.
    ids : {"hash", "name"}
        ``"hash"``: the first 12 hex digits of the sha256 of the relative path (POSIX form). It
        is a pseudonym: someone who can guess a file's path can recompute it. ``"name"``: the
        relative path, with ``/`` as ``__`` and characters outside ``[A-Za-z0-9._-]`` as ``_``.
    """
    posix = Path(relpath).as_posix()
    if ids == "hash":
        return hashlib.sha256(posix.encode()).hexdigest()[:12]
    if ids == "name":
        return re.sub(r"[^A-Za-z0-9._-]", "_", posix.replace("/", "__"))
    raise BatchError(f"ids must be 'hash' or 'name', got {ids!r}")

