"""Any MOABB dataset class as a :class:`~neurodecode.data.dataset.Dataset`, read offline.

MOABB's datasets find their files through MNE's configuration (``MNE_DATA``, or a
``MNE_DATASETS_<SIGN>_PATH`` per dataset family) and download whatever is missing. Here nothing
is downloaded unless asked (``download=True`` or ``NEURODECODE_ALLOW_DOWNLOAD=1``): every call
into MOABB runs inside :func:`refuse_downloads`, which refuses connections beyond the loopback, and a
refused attempt becomes one :class:`~neurodecode.data.errors.DataNotFoundError` naming the
dataset, the subject and MNE's data folder.

Only MOABB's public API is used: the class from ``moabb.datasets``, its ``subject_list``,
``event_id``, ``interval``, ``paradigm``, ``data_path(subject)`` and ``get_data(subjects)``, and
(to find files MOABB keeps in its local copy of NEMAR) ``moabb.utils.get_download_provider``,
``moabb.datasets.download.nemar_store`` and ``active_sourcedata_store``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import ipaddress
import json
import logging
import os
import socket
import warnings
from pathlib import Path

import numpy as np

from ..cards import sha256_of
from ..dataset import Dataset, Paradigm, Recording
from ..errors import DataNotFoundError, EmptySelectionError, InvalidDataError, NeurodecodeDataError

#: Default band-pass per MOABB paradigm family, in Hz (MOABB's paradigms' own defaults:
#: MotorImagery 8-32 Hz, SSVEP's usual 7-45 Hz span, P300 1-24 Hz).
BANDS = {"imagery": (8.0, 32.0), "ssvep": (7.0, 45.0), "p300": (1.0, 24.0)}


class NetworkRefused(ValueError):
    """A connection beyond the loopback was attempted inside :func:`refuse_downloads`.

    A ValueError, not an OSError, on purpose: HTTP clients (urllib3, httpx and nemar-py's retry
    loop) treat OSErrors as transient and retry them with backoff sleeps, whereas a ValueError
    passes through at once; and MOABB's NEMAR step catches ValueError and falls back to the
    dataset's own files, which is the right thing offline when those are present.
    """


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if host in (None, "", "localhost") or isinstance(host, bytes) or str(host).startswith("/"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def refuse_downloads(attempts: list | None = None, *, tidy: bool = True):
    """Refuse, for the duration of the block, every connection and name lookup beyond the loopback.

    Parameters
    ----------
    attempts : list or None
        Each refused address is appended to it, so the caller can tell a refusal from other
        errors even when a library wrapped or swallowed the exception.
    tidy : bool
        When the block ends, remove the folders created inside it that are still empty,
        deepest first. MOABB's downloaders create the target folder before they connect, so a
        refused download would otherwise leave empty folders in the data folder. Folders that
        received files (MOABB linking files from its local NEMAR store into place) stay.

    Notes
    -----
    ``socket.socket.connect``, ``connect_ex``, ``socket.create_connection``,
    ``socket.getaddrinfo`` and (with ``tidy``) ``os.mkdir`` (which ``os.makedirs`` and
    ``Path.mkdir`` call) are patched process-wide while the block runs (other threads see the
    refusal too) and restored afterwards, whatever happened. The functions in place when the
    block starts are the ones called for what is allowed, so a guard installed by a test suite
    keeps working.
    """
    attempts = [] if attempts is None else attempts
    created: list[str] = []
    real = (socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo, os.mkdir)

    def refuse(what):
        attempts.append(what)
        raise NetworkRefused(f"neurodecode is offline: refused to {what}")

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            refuse(f"connect to {address}")
        return real[0](self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            refuse(f"connect to {address}")
        return real[1](self, address)

    def create_connection(address, *args, **kwargs):
        if not _is_loopback(address):
            refuse(f"connect to {address}")
        return real[2](address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback((host,)):
            refuse(f"look up {host}")
        return real[3](host, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        real[4](path, *args, **kwargs)
        if kwargs.get("dir_fd") is None:
            created.append(os.path.abspath(os.fspath(path)))

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.create_connection, socket.getaddrinfo = create_connection, getaddrinfo
    if tidy:
        os.mkdir = mkdir
    try:
        yield attempts
    finally:
        (socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo,
         os.mkdir) = real
        for folder in reversed(created):
            with contextlib.suppress(OSError):  # not empty (something was written): keep it
                os.rmdir(folder)


def _refused(err: BaseException) -> bool:
    """Whether ``err`` is, or was raised while handling, a refusal of :func:`refuse_downloads`."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, NetworkRefused):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def mne_data_folder() -> Path:
    """Where MNE (and MOABB) keep downloaded datasets: ``MNE_DATA``, else ``~/mne_data``."""
    import mne

    value = mne.get_config("MNE_DATA")
    return Path(value).expanduser() if value else Path.home() / "mne_data"


def _download_allowed(download: bool | None) -> bool:
    return bool(download) if download is not None else os.environ.get("NEURODECODE_ALLOW_DOWNLOAD") == "1"


def _moabb_class(name: str):
    import moabb.datasets

    cls = getattr(moabb.datasets, name, None)
    from moabb.datasets.base import BaseDataset

    if not (isinstance(cls, type) and issubclass(cls, BaseDataset)):
        known = sorted(n for n in dir(moabb.datasets) if isinstance(getattr(moabb.datasets, n), type)
                       and issubclass(getattr(moabb.datasets, n), BaseDataset) and not n.startswith(("Base", "Fake")))
        raise NeurodecodeDataError(f"moabb:{name}: no dataset class {name!r} in moabb.datasets; known: "
                                   f"{known[:12]}... ({len(known)} in all)")
    return cls


def _missing_message(class_name: str, kwargs: dict, subject) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return (f"MOABB dataset {class_name} needs files for subject {subject} that are not in MNE's data folder "
            f"({mne_data_folder()}, or the dataset's MNE_DATASETS_<SIGN>_PATH); download them once with "
            f"`python -c \"from moabb.datasets import {class_name}; "
            f"{class_name}({args}).download(subject_list=[{subject}])\"`, or pass download=True "
            "(or set NEURODECODE_ALLOW_DOWNLOAD=1)")


class _GuardedGetData:
    """``get_data`` of a MOABB dataset object, run offline (set on the instance; picklable for workers)."""

    def __init__(self, owner, describe):
        self.owner, self.describe = owner, describe

    def __call__(self, subjects=None, *args, **kwargs):
        subject = subjects[0] if isinstance(subjects, list) and len(subjects) == 1 else subjects
        return _run_offline(lambda: type(self.owner).get_data(self.owner, subjects, *args, **kwargs),
                            self.describe, subject)


def _run_offline(call, describe, subject):
    """``call()`` inside :func:`refuse_downloads`; a refused download becomes one DataNotFoundError."""
    import mne
    import pooch

    attempts: list = []
    # pooch announces "Downloading data from ..." before the refused connection: misleading offline.
    pooch_log = pooch.get_logger()
    level = pooch_log.level
    pooch_log.setLevel(logging.WARNING)
    with refuse_downloads(attempts), warnings.catch_warnings(), mne.utils.use_log_level("error"):
        # Offline, MOABB's NEMAR step always fails and falls back to the local files: not news.
        warnings.filterwarnings("ignore", message=r".*NEMAR.*", category=RuntimeWarning)
        try:
            return call()
        except NeurodecodeDataError:
            raise
        except Exception as err:
            if attempts or _refused(err):
                raise DataNotFoundError(describe(subject)) from err
            if isinstance(err, PermissionError):
                # pooch writes its temporary file next to the missing one before connecting: in a
                # read-only data folder that fails first.
                raise DataNotFoundError(f"{describe(subject)} [{type(err).__name__}: {err}]") from err
            raise
        finally:
            pooch_log.setLevel(level)


class MoabbDataset(Dataset):
    """A MOABB dataset (any class of ``moabb.datasets``) read through MOABB, offline by default.

    Parameters
    ----------
    dataset : str or moabb.datasets.base.BaseDataset
        The class name in ``moabb.datasets`` (``"BNCI2014_001"``, ``"PhysionetMI"``...), or a
        MOABB dataset object already configured (then ``kwargs`` must be empty).
    download : bool or None
        Let MOABB download missing files. None: only when ``NEURODECODE_ALLOW_DOWNLOAD=1``.
    **kwargs
        Passed to the MOABB class (e.g. ``imagined=True`` for ``PhysionetMI``).

    Notes
    -----
    The paradigm is MOABB's: kind ``dataset.paradigm``, classes the keys of
    ``dataset.event_id`` sorted (the order of the labels MOABB's paradigms encode), interval
    ``dataset.interval`` and band 8-32 Hz (imagery), 7-45 Hz (ssvep) or 1-24 Hz (p300).

    Each run's stim-channel events whose codes are in ``event_id`` become annotations named by
    class, at the cue (as MOABB's paradigms find them: ``mne.find_events(raw,
    shortest_event=0)``); a dataset without a stim channel keeps MOABB's class annotations,
    moved back from the task start to the cue as MOABB's paradigms do. Other annotations
    (bad segments) are kept.

    Cost: :meth:`subjects` asks ``data_path(subject)`` of every subject of MOABB's
    ``subject_list`` offline, once per object. For a subject whose files are present that is
    local work (MOABB hashes each present file, so reading them once); for one whose files are
    absent the first refused connection ends it. :meth:`recordings` reads the subject through
    ``get_data`` to learn its sessions and runs (MOABB has no cheaper listing); the raws of the
    last subject read stay in memory for its runs' ``read``.
    """

    def __init__(self, dataset, *, download: bool | None = None, **kwargs):
        if isinstance(dataset, str):
            name = dataset
            self._template = _moabb_class(dataset)(**kwargs)
        else:
            if kwargs:
                raise InvalidDataError(f"MoabbDataset: keyword arguments {sorted(kwargs)} apply to a class name, "
                                       "not to a MOABB dataset object")
            name, self._template = type(dataset).__name__, dataset
        self.class_name, self.kwargs, self.download = name, dict(kwargs), download
        kind = getattr(self._template, "paradigm", None)
        if kind not in BANDS:
            raise InvalidDataError(f"moabb:{name}: paradigm {kind!r} is not one neurodecode decodes; expected one of "
                                   f"{list(BANDS)}")
        self.event_id = dict(self._template.event_id)
        paradigm = Paradigm(kind=kind, classes=tuple(sorted(self.event_id)),
                            interval=tuple(float(t) for t in self._template.interval), band=BANDS[kind])
        super().__init__(f"moabb:{name}", paradigm, modality="eeg", picks="eeg")
        self._present: tuple | None = None
        self._structure: dict = {}
        self._cached: tuple | None = None  # (subject, {session: {run: raw}})
        # Picklable (no reference to this object and its cached raws), for MOABB objects sent to workers.
        self._missing_message = functools.partial(_missing_message, name, dict(kwargs))

    # -- MOABB's object ------------------------------------------------------------------------------
    def moabb_dataset(self):
        """A fresh MOABB dataset object (for MOABB's own evaluations), whose ``get_data`` runs offline.

        Offline (the default), its ``get_data`` runs inside :func:`refuse_downloads` and turns a
        refused download into :class:`DataNotFoundError`.
        """
        dataset = copy.deepcopy(self._template)
        if not _download_allowed(self.download):
            dataset.get_data = _GuardedGetData(dataset, self._missing_message)
        return dataset

    @contextlib.contextmanager
    def offline(self):
        """The network guard for MOABB's own evaluations of this dataset (the benchmark runs them inside it).

        Connections beyond the loopback are refused while the block runs, unless downloads are
        allowed. MOABB reads MNE's real data folder, and :meth:`moabb_dataset`'s ``get_data``
        turns a refused download into :class:`DataNotFoundError`.
        """
        if _download_allowed(self.download):
            yield
            return
        with refuse_downloads(tidy=False):
            yield

    def _call(self, call, subject):
        if _download_allowed(self.download):
            return call()
        return _run_offline(call, self._missing_message, subject)

    # -- which subjects ------------------------------------------------------------------------------
    def _data_path(self, subject):
        """MOABB's ``data_path(subject)``, finding files in MOABB's local NEMAR store as ``get_data`` does.

        With a download provider other than ``"upstream"``, ``download()`` puts the files of
        most datasets in a local copy of NEMAR's ``sourcedata/`` and ``get_data`` links them
        into place from there; ``data_path`` alone does not look there, so it runs with that
        store declared (public pieces of ``moabb.datasets.download`` and ``moabb.utils``).
        """
        from moabb.datasets.download import active_sourcedata_store, nemar_store
        from moabb.utils import get_download_provider

        dataset = self._template
        store = None
        if getattr(dataset, "nemar_id", None) is not None and get_download_provider() != "upstream":
            store = nemar_store(dataset.code, dataset.nemar_id) / "sourcedata"
        with active_sourcedata_store(store):
            return dataset.data_path(subject, update_path=False)

    def _has_files(self, subject) -> bool:
        try:
            self._call(lambda: self._data_path(subject), subject)
        except Exception:  # a refusal, a missing file, a licence not accepted: not readable offline
            return False
        return True

    def subjects(self) -> tuple:
        """Subjects of MOABB's ``subject_list`` whose files are present (all of them when downloads are allowed)."""
        if _download_allowed(self.download):
            return tuple(self._template.subject_list)
        if self._present is None:
            self._present = tuple(s for s in self._template.subject_list if self._has_files(s))
        return self._present

    def select_subjects(self, subjects=None) -> list:
        """The subjects asked for; named subjects are checked one by one, without scanning every subject.

        Raises
        ------
        EmptySelectionError
            A subject MOABB does not know.
        DataNotFoundError
            A subject whose files are not in MNE's data folder (offline).
        """
        if subjects is None:
            return super().select_subjects(None)
        wanted = [subjects] if np.isscalar(subjects) else list(subjects)
        unknown = [s for s in wanted if s not in self._template.subject_list]
        if unknown or not wanted:
            raise EmptySelectionError(f"MOABB dataset {self.class_name} has no subject(s) {unknown or wanted}; its "
                                      f"subjects: {list(self._template.subject_list)}")
        if not _download_allowed(self.download):
            for s in wanted:
                if not (self._present and s in self._present) and not self._has_files(s):
                    raise DataNotFoundError(self._missing_message(s))
        return wanted

    # -- recordings --------------------------------------------------------------------------------
    def _subject_data(self, subject) -> dict:
        if self._cached is None or self._cached[0] != subject:
            self._cached = None  # free the previous subject before reading the next
            data = self._call(lambda: self._template.get_data(subjects=[subject]), subject)
            self._cached = (subject, data[subject])
        return self._cached[1]

    def _key(self, subject) -> str:
        """sha256 of the subject's files (as ``data_path`` lists them), the class and its arguments."""
        import moabb

        paths = self._call(lambda: self._data_path(subject), subject)
        files, stack = [], [paths]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, tuple)):
                stack.extend(item)
            elif item is not None and Path(item).is_file():
                files.append(Path(item))
        parts = [moabb.__version__, self.class_name, repr(sorted(self.kwargs.items()))]
        parts += [f"{f.name}:{sha256_of(f)}" for f in sorted(files)]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def recordings(self, subject) -> list:
        """The subject's runs, session by session, as MOABB's ``get_data`` orders them."""
        if subject not in self._structure:
            data = self._subject_data(subject)
            self._structure[subject] = ([(str(ses), str(run)) for ses, runs in data.items() for run in runs],
                                        self._key(subject))
        runs, key = self._structure[subject]
        return [Recording(int(subject), ses, run, functools.partial(self._read, subject, ses, run), key=key,
                          extra={"moabb_dataset": self.class_name}) for ses, run in runs]

    def _read(self, subject, session: str, run: str):
        import mne

        sessions = {str(k): v for k, v in self._subject_data(subject).items()}
        runs = {str(k): v for k, v in sessions[session].items()}
        raw = runs[run].copy()  # Dataset.load filters in place; the cached raw must stay raw
        raw.load_data(verbose="error")
        code_to_name = {int(c): name for name, codes in self.event_id.items() for c in np.atleast_1d(codes)}
        ann = raw.annotations
        keep = ~np.isin(ann.description, list(self.event_id))
        others = ann[np.nonzero(keep)[0]] if len(ann) else ann
        if len(mne.pick_types(raw.info, stim=True, exclude=())):
            with mne.utils.use_log_level("error"):
                events = mne.find_events(raw, shortest_event=0, verbose="error")
            events = events[np.isin(events[:, 2], list(code_to_name))]
            cues = mne.annotations_from_events(events, raw.info["sfreq"], event_desc=code_to_name,
                                               first_samp=raw.first_samp, orig_time=ann.orig_time, verbose="error")
        else:
            # MOABB put its class annotations at cue + interval[0]; its paradigms subtract that offset
            # (in whole samples) to find the cue again, and so does this.
            shift = int(self._template.interval[0] * raw.info["sfreq"]) / raw.info["sfreq"]
            cues = ann[np.nonzero(~keep)[0]] if len(ann) else ann
            cues = mne.Annotations(cues.onset - shift, np.zeros(len(cues)), cues.description, orig_time=cues.orig_time)
        raw.set_annotations(others + cues)
        return raw


__all__ = ["BANDS", "MoabbDataset", "NetworkRefused", "mne_data_folder", "refuse_downloads"]
