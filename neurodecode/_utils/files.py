"""Output files: atomic writes (no reader ever sees half a file), private folders and modes, a folder lock."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
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


#: Permission bits of every output folder of the applications that write health data (``batch``, ``predict``).
PRIVATE_DIR_MODE = 0o700


def make_private_dir(path) -> Path:
    """Create ``path`` (and missing parents) if needed; a folder created here gets mode 0700.

    A folder that already exists keeps its mode (it is the user's). Raises what ``mkdir`` raises:
    ``FileExistsError`` when ``path`` is a file, ``PermissionError`` or ``OSError`` (read-only
    file system) when it cannot be created.
    """
    path = Path(path)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


@contextlib.contextmanager
def private_umask():
    """Files and folders created meanwhile by this process (and processes it starts) are the user's alone.

    The umask is set to 077 (files at most 0600, folders 0700) and restored on exit. Meant for a
    command's whole run (``neurodecode batch``, ``predict``), where every output is health data,
    including what libraries create on their own (figures, caches).
    """
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


class FolderLockedError(RuntimeError):
    """The folder is locked by another live run; ``holder`` is what its lock file says (pid, host...)."""

    def __init__(self, message: str, holder: dict):
        super().__init__(message)
        self.holder = holder


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read_lock(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


class FolderLock:
    """An exclusive, non-blocking lock on a folder: a lock file created with ``O_CREAT | O_EXCL``.

    The lock file holds JSON: ``pid``, ``host`` and whatever ``info`` adds (a batch run puts the
    model's sha256 there), so that a refused run can say who holds the folder. A lock left by a
    process that no longer runs on this host (a run killed with SIGKILL, a power cut) is stale
    and reclaimed; a lock of a live process, or of another host (whose processes cannot be
    checked from here), is not: :meth:`acquire` raises :class:`FolderLockedError`.

    Reclaiming is race-free between several would-be reclaimers: the stale file is renamed to a
    name of the reclaimer's own before it is deleted, so only one of them can remove it, and a
    lock created meanwhile by a third run is never the one removed (it is put back).

    Parameters
    ----------
    folder : path-like
        Must exist.
    name : str
        The lock file's name inside ``folder``.
    info : dict
        Written into the lock file with ``pid`` and ``host``.
    """

    def __init__(self, folder, name: str = ".lock", info=None):
        self.folder = Path(folder)
        self.name = name
        self.info = dict(info or {})
        self.path = self.folder / name
        self._held = False

    def _holder_text(self) -> bytes:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), **self.info}
        return (json.dumps(holder, sort_keys=True) + "\n").encode()

    def acquire(self) -> "FolderLock":
        """Take the lock, reclaiming a stale one; raise :class:`FolderLockedError` if another run holds it."""
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                if self._reclaim():
                    continue
                holder = _read_lock(self.path) or {}
                raise FolderLockedError(f"{self.folder} is in use by another run ({_describe(holder)}); wait for it "
                                        f"to end, or remove {self.path} if that run is gone", holder) from None
            try:
                os.write(fd, self._holder_text())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._held = True
            return self
        raise FolderLockedError(f"{self.folder}: could not take the lock {self.path} (it keeps changing hands)", {})

    def _reclaim(self) -> bool:
        """Remove the lock file if it is stale; True when the caller may try again."""
        holder = _read_lock(self.path)
        if holder is None:
            try:  # being written by its creator this instant, or left empty by a crash between open and write
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return True
            if age < 10:
                return False
        elif holder.get("host") != socket.gethostname() or _pid_alive(holder.get("pid")):
            return False
        aside = self.path.with_name(f"{self.name}.stale.{os.getpid()}.{time.monotonic_ns()}")
        try:
            os.rename(self.path, aside)  # atomic: of several reclaimers, one gets the file
        except FileNotFoundError:
            return True
        if _read_lock(aside) != holder:  # a live run's lock, created after we read the stale one: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def release(self) -> None:
        """Remove the lock file, if this object holds it."""
        if self._held:
            if (_read_lock(self.path) or {}).get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _describe(holder: dict) -> str:
    parts = [f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"]
    parts += [f"{k} {str(v)[:16]}" for k, v in sorted(holder.items()) if k not in ("pid", "host")]
    return ", ".join(parts)
