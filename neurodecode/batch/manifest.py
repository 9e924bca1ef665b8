"""What a batch run has finished, so that a rerun does only what is left: a JSON-lines manifest and atomic writes.

Rules (``docs/batch.md``, "Manifest and resume"):

* A recording's result is **keyed** by what determines it: the sha256 and size of every file of
  the recording (a BrainVision header with its data and marker files, an EEGLAB ``.set`` with its
  ``.fdt``), the model file's sha256, the neurodecode version and the options that change a
  result (``resample``, ``score_flagged``). Nothing about a file's name or date enters the key.
* A recording is **finished** when the manifest holds a completion record with its id and that
  exact key, and every result file the record names exists with the sha256 it records. Anything
  else is redone: no completion record (a run killed half way through writing), another key (the
  input changed, the model changed, another version), a result file missing or altered.
* Result files are written to a temporary name in the same folder and renamed over the final
  name (:func:`write_atomic`), so a reader sees the old file or the new one, never half of one;
  the completion record is appended only after both files are in place.
* The manifest is appended to during a run; a line cut short by a kill is ignored when read, and
  the next append starts on a fresh line. When a run completes, the manifest is rewritten
  (atomically) to the run's record and the completion records of the results the folder holds
  (:meth:`Manifest.compact`), so a run finished after interruptions leaves the same bytes as one
  that was never interrupted.
* The key holds the model file's sha256, and one output folder holds one model's results: see
  :mod:`neurodecode.batch.runner` (the folder's lock, results of another model replaced).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .._utils import files as _files

__all__ = ["MANIFEST_NAME", "Manifest", "file_digest", "recording_files", "recording_digest", "write_atomic"]

MANIFEST_NAME = "manifest.jsonl"
_CHUNK = 1 << 20


def file_digest(path) -> tuple[str, int]:
    """sha256 (hex) and size in bytes of one file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _vhdr_companions(path: Path) -> list:
    """The data and marker files a BrainVision header names (``DataFile=``, ``MarkerFile=``)."""
    out = []
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError:
        return out
    for key in ("DataFile", "MarkerFile"):
        match = re.search(rf"^\s*{key}\s*=\s*(.+?)\s*$", text, flags=re.MULTILINE)
        if match:
            companion = path.parent / match.group(1)
            if companion.is_file():
                out.append(companion)
    return out


def recording_files(path) -> list:
    """Every file whose bytes make up one recording, the given one first.

    A BrainVision ``.vhdr`` brings the data and marker files it names; an EEGLAB ``.set`` its
    ``.fdt`` of the same stem when there is one; a FIF file its split continuations
    (``name-1.fif``, ``name-2.fif``...). A change in any of them changes the recording's key.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    files = [path]
    if suffix == ".vhdr":
        files += _vhdr_companions(path)
    elif suffix == ".set":
        files += [p for p in (path.with_suffix(".fdt"), path.with_suffix(".FDT")) if p.is_file()][:1]
    elif suffix == ".fif":
        n = 1
        while (split := path.with_name(f"{path.stem}-{n}.fif")).is_file():
            files.append(split)
            n += 1
    return files


def recording_digest(path) -> tuple[str, int]:
    """sha256 and total size of a recording's files (:func:`recording_files`), as one key.

    A single file's digest is its own sha256; several files' is the sha256 of their digests and
    sizes, in order, so that moving bytes from one file to another still changes the key.
    """
    files = recording_files(path)
    digests = [file_digest(f) for f in files]
    if len(digests) == 1:
        return digests[0]
    combined = hashlib.sha256(json.dumps([[d, s] for d, s in digests]).encode()).hexdigest()
    return combined, sum(s for _, s in digests)


def write_atomic(path, data: bytes) -> str:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename; return its sha256.

    The temporary file is flushed to disk before the rename, so after a crash ``path`` holds
    either its previous content or all of ``data``.
    """
    _files.write_atomically(path, data)  # looked up on each call: one place to simulate a full disk in tests
    return hashlib.sha256(data).hexdigest()


def remove_stale_temporaries(folder) -> int:
    """Delete the temporary files a killed run left in ``folder`` (:func:`write_atomic`'s ``.NAME.*.tmp``)."""
    n = 0
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            n += 1
    return n


def _line(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"


class Manifest:
    """The append-only record of finished recordings in ``out_dir/manifest.jsonl``.

    Only the main process of a run writes to it (workers return their results to it), so
    appends never interleave.

    Parameters
    ----------
    out_dir : path-like
        The batch's output folder.
    """

    def __init__(self, out_dir):
        self.path = Path(out_dir) / MANIFEST_NAME

    def records(self) -> list:
        """Every complete, well-formed line (a line cut by a kill, or garbage, is skipped)."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def completed(self) -> dict:
        """The last completion record of each recording id."""
        return {r["id"]: r for r in self.records() if r.get("event") == "done" and "id" in r}

    def append(self, record: dict) -> None:
        """Add one record as one line, flushed to disk before returning (a new manifest is created 0600)."""
        line = _line(record)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with open(fd, "ab+") as fh:
            # A kill during a previous append may have left a line without its newline: start a new one.
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())

    def compact(self, run_record: dict, out_dir) -> None:
        """Rewrite the manifest, atomically, as what the folder holds once a run is complete.

        ``run_record`` (the run's model, version, options), then the last completion record of
        each recording whose result files are intact, sorted by id. So the manifest of a run
        completed over several interrupted attempts has the same bytes as an uninterrupted run's,
        and records of results that no longer exist are dropped.
        """
        finished = [r for _, r in sorted(self.completed().items()) if self.is_finished(r, r.get("key"), out_dir)]
        write_atomic(self.path, "".join(_line(r) for r in [run_record, *finished]).encode())

    @staticmethod
    def is_finished(record: dict | None, key: dict, out_dir) -> bool:
        """Whether ``record`` (a completion record) is for ``key`` and its result files are intact."""
        if not record or record.get("key") != key:
            return False
        files = record.get("files") or {}
        if not files:
            return False
        for relpath, digest in files.items():
            path = Path(out_dir) / relpath
            if not path.is_file() or file_digest(path)[0] != digest:
                return False
        return True
