"""Output files: atomic writes (no reader ever sees half a file), private folders and modes, a folder lock."""

from __future__ import annotations

import contextlib
import errno
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


def writable_folder(path, *, private: bool = False) -> Path:
    """Create ``path`` if needed and prove a file can be created in it, before any work is done.

    Parameters
    ----------
    path : path-like
    private : bool
        Create it with mode 0700 (:func:`make_private_dir`), for folders of health data.

    Returns
    -------
    path : Path

    Raises
    ------
    OSError
        ``path`` is a file (``FileExistsError``), or it cannot be created or written (read-only,
        no permission, a full disk): what the first write would have raised, hours later.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(errno.EEXIST, "it is a file, not a folder", str(path))
    if private:
        make_private_dir(path)
    else:
        path.mkdir(parents=True, exist_ok=True)
    # Write permission is what matters (a folder may exist and be read-only, or sit on a full disk).
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
        pass
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


def _read_lock(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


class FolderLock:
    """An exclusive, non-blocking lock on a folder: an ``flock`` on a lock file inside it.

    The kernel holds the lock for as long as the run's process keeps the file open, so a run
    killed with SIGKILL or by a power cut leaves no lock behind, only the file, which the next run
    takes over; there is no staleness to guess and no race between would-be reclaimers (each open
    is its own, so two threads of one process exclude each other too). The file holds JSON:
    ``pid``, ``host`` and whatever ``info`` adds (a batch run puts the model's sha256 there), so
    that a refused run can say who holds the folder. A file that names another host is not taken
    over: that host's lock may not be visible from here (a shared network folder), so
    :meth:`acquire` refuses it as if it were held, and says which host to check.

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
        self._fd = None

    def _holder_text(self) -> bytes:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), **self.info}
        return (json.dumps(holder, sort_keys=True) + "\n").encode()

    def _refused(self, holder: dict) -> FolderLockedError:
        return FolderLockedError(f"{self.folder} is in use by another run ({_describe(holder)}); wait for it to end, "
                                 f"or remove {self.path} if that run is gone", holder)

    def _holder(self) -> dict:
        # The holder writes its line just after it takes the lock: wait a moment for it to appear.
        for _ in range(40):
            holder = _read_lock(self.path)
            if holder:
                return holder
            time.sleep(0.025)
        return {}

    def acquire(self) -> "FolderLock":
        """Take the lock; raise :class:`FolderLockedError` if another run holds it."""
        import fcntl

        for _ in range(5):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._refused(self._holder()) from None
            try:
                # The holder before us removes the file as it releases: a file opened just before
                # that is no longer the lock, so open the path again.
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if not current:
                os.close(fd)
                continue
            previous = _read_lock(self.path) or {}
            if previous.get("host") not in (None, socket.gethostname()):
                os.close(fd)
                raise self._refused(previous)
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._holder_text(), 0)
            os.fsync(fd)
            self._fd = fd
            return self
        raise FolderLockedError(f"{self.folder}: could not take the lock {self.path} (it keeps changing hands)", {})

    def release(self) -> None:
        """Remove the lock file and let the lock go, if this object holds it."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: no other run holds this file now
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _describe(holder: dict) -> str:
    parts = [f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"]
    parts += [f"{k} {str(v)[:16]}" for k, v in sorted(holder.items()) if k not in ("pid", "host")]
    return ", ".join(parts)
