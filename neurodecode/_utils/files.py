"""Atomic file writes: the one helper every stage uses so that no reader ever sees a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomically(path, content: bytes | Callable, *, mode: int | None = None, sync_folder: bool = False) -> Path:
    """Write ``content`` to ``path`` through a temporary file in the same folder and a rename.

    The temporary file is flushed to disk before the rename (atomic within one file system), so
    after a crash ``path`` holds either its previous content or all of the new one. A killed
    writer leaves at most a ``.NAME.*.tmp`` file behind.

    Parameters
    ----------
    path : path-like
    content : bytes or callable
        The bytes, or ``write(fileobj)`` that writes them to a binary file object.
    mode : int or None
        Permission bits of the new file (None: ``mkstemp``'s private 0o600).
    sync_folder : bool
        Also flush the folder entry, so that the rename itself survives a power loss.

    Returns
    -------
    path : Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_folder:
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY)
        except OSError:
            return path
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
    return path
