"""A BIDS dataset (EEG, MEG, iEEG) read with mne-bids, as a :class:`~neurodecode.data.dataset.Dataset`.

Subjects, sessions and runs come from the BIDS entities of the data files, the cues from each
recording's ``*_events.tsv`` (its ``trial_type`` column, which mne-bids sets as the annotations).
What the cues mean for decoding is the dataset's :class:`~neurodecode.data.dataset.Paradigm`:

1. the ``paradigm`` argument, when given;
2. else the ``[paradigm]`` table of a ``neurodecode.toml`` file at the BIDS root;
3. else inferred from the events files (see :class:`BIDSDataset`): rest and idle trial types are
   never classes, and the dataset says, in one logged line, which classes it chose and why.

``neurodecode.toml`` (optional, at the BIDS root)::

    name = "my_study"                 # optional: the dataset's name (default: the folder's name)

    [paradigm]                        # as in a dataset card
    name = "imagery"
    classes = ["left_hand", "right_hand"]
    interval = [0.0, 3.0]
    band = [8.0, 32.0]

    [events]                          # optional: trial_type -> class name
    "imagine left" = "left_hand"
"""

from __future__ import annotations

import functools
import hashlib
import logging
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..cards import sha256_of
from ..dataset import Dataset, Paradigm, Recording
from ..errors import CorruptFileError, DataNotFoundError, InvalidDataError, NeurodecodeDataError

#: The file at a BIDS root that says what the cues mean (optional).
CONFIG_FILE = "neurodecode.toml"
#: Trial window inferred when no events file gives a trial a positive duration, in seconds.
DEFAULT_TRIAL_SECONDS = 3.0
#: Band of an inferred (imagery) paradigm: MOABB's motor-imagery default, in Hz.
INFERRED_BAND = (8.0, 32.0)
#: Trial types (any case) that mark rest between cues: an inferred paradigm's idle marker, never a class.
REST_TRIAL_TYPES = ("rest", "resting", "idle")

_log = logging.getLogger(__name__)

# mne-bids' data-file extensions per datatype (config.ALLOWED_DATATYPE_EXTENSIONS), restricted to
# what mne-bids can read back as a Raw.
_EXTENSIONS = {"eeg": (".vhdr", ".edf", ".bdf", ".set"), "meg": (".fif", ".con", ".sqd", ".pdf", ".ds"),
               "ieeg": (".vhdr", ".edf", ".set")}


def _is_number(label: str) -> bool:
    return label.isdigit()


def _trial_column(events: pd.DataFrame) -> pd.Series | None:
    """The column mne-bids names annotations from: ``trial_type``, else ``value``."""
    for column in ("trial_type", "value"):
        if column in events.columns:
            return events[column]
    return None


class BIDSDataset(Dataset):
    """Every recording of one datatype in a BIDS folder.

    Parameters
    ----------
    root : path-like
        The BIDS root (the folder holding ``dataset_description.json``).
    task : str or None
        Only this task's recordings; None: every task.
    classes : list of str or None
        The classes, in label order, replacing those of the paradigm (whatever its source).
    paradigm : Paradigm, dict or None
        What the cues mean; a dict is a ``[paradigm]`` table (``name``, ``classes``,
        ``interval``, ``band``, ``idle``). None: ``neurodecode.toml`` at the root, else inferred.
    datatype : {"eeg", "meg", "ieeg"}
        Which data files to read.

    Notes
    -----
    *Subjects* are the ``sub-`` labels: integers when every label is a number (``sub-01`` is
    subject 1), otherwise numbered 1..n in the labels' sorted order. The label is kept in the
    metadata column ``bids_subject`` either way, and the task in ``bids_task``.

    *Sessions* are the ``ses-`` labels (``"0"`` where there is none). *Runs* are the ``run-``
    labels (prefixed with the task, ``"<task>_<run>"``, when several tasks are read); a
    recording without a run label is numbered by its position in time order within its
    session. Recordings are in time order: the ``acq_time`` of the ``scans.tsv`` files when
    every recording of the session has one, then the run number, then the file name.

    *Inferred paradigm* (no ``paradigm`` argument and no ``neurodecode.toml``): kind
    ``"imagery"``; classes the distinct ``trial_type`` values of all the events files read
    (sorted; ``n/a`` and ``BAD``/``EDGE`` annotations left out, and rest trial types,
    :data:`REST_TRIAL_TYPES`, which become the paradigm's ``idle`` marker instead of a class);
    interval ``(0, d)`` with ``d`` the shortest positive duration of those trials, or 3 s when
    none has one; band 8-32 Hz (MOABB's motor-imagery default). Inferring reads every
    ``events.tsv`` (small text files) once, when the dataset is built. Unless ``classes`` is
    given, the chosen classes, what was left out and how to choose others are logged as one
    warning line (logger ``neurodecode.data.io.bids``; on stderr when logging is not configured).

    Attributes
    ----------
    paradigm_source : str
        Where the classes came from: ``"argument"`` (``paradigm`` or ``classes``),
        ``"neurodecode.toml"`` or ``"inferred"``.

    The recording's ``key`` (for result keys) is the sha256 of every file of the recording
    (data, events, channels and sidecars sharing its name), cached in neurodecode's checksum
    cache.
    """

    def __init__(self, root, *, task: str | None = None, classes=None, paradigm=None, datatype: str = "eeg"):
        import mne_bids

        self.root = Path(root).expanduser().resolve()
        if not (self.root / "dataset_description.json").is_file():
            raise DataNotFoundError(f"{self.root} is not a BIDS dataset: it has no dataset_description.json")
        if datatype not in _EXTENSIONS:
            raise InvalidDataError(f"BIDS datatype {datatype!r} is not read here; expected one of {list(_EXTENSIONS)}")
        self.task, self.datatype = task, datatype
        config = self._config()
        self.events = dict(config.get("events", {}))
        paths = mne_bids.find_matching_paths(self.root, tasks=task, datatypes=datatype, suffixes=datatype,
                                             extensions=list(_EXTENSIONS[datatype]), ignore_json=True)
        # A recording split over several FIF files is read from its first part.
        paths = [p for p in paths if p.split in (None, "01")
                 and "derivatives" not in p.fpath.relative_to(self.root).parts]
        if not paths:
            raise DataNotFoundError(f"BIDS dataset {self.root}: no {datatype} recording"
                                    f"{f' of task {task!r}' if task else ''} (files sub-*/[ses-*/]{datatype}/"
                                    f"*_{datatype}{{{','.join(_EXTENSIONS[datatype])}}})")
        self._recs = self._index(paths)

        where = f"BIDS dataset {self.root}"
        if paradigm is not None:
            paradigm = paradigm if isinstance(paradigm, Paradigm) else Paradigm.from_table(dict(paradigm), where=where)
            self.paradigm_source = "argument"
        elif "paradigm" in config:
            paradigm = Paradigm.from_table(config["paradigm"], where=f"{self.root / CONFIG_FILE}")
            self.paradigm_source = CONFIG_FILE
        else:
            paradigm, left_out = self._infer_paradigm()
            self.paradigm_source = "inferred"
            if classes is None:
                # The user declared nothing: say what was chosen, so that a class is never added silently.
                _log.warning(f"{where}: no {CONFIG_FILE}, so the classes are the events files' trial types "
                             f"{list(paradigm.classes)}{left_out}; declare them in {CONFIG_FILE} [paradigm] "
                             "classes (or pass classes=) to choose others")
        if classes is not None:
            paradigm = replace(paradigm, classes=tuple(classes))
            self.paradigm_source = "argument"
        name = config.get("name") or self.root.name
        modality = "meg" if datatype == "meg" else "eeg"
        picks = {"eeg": "eeg", "meg": "meg", "ieeg": ["seeg", "ecog", "dbs"]}[datatype]
        super().__init__(str(name), paradigm, modality=modality, picks=picks)

    # -- what is in the folder ---------------------------------------------------------------------
    def _config(self) -> dict:
        path = self.root / CONFIG_FILE
        if not path.is_file():
            return {}
        try:
            with open(path, "rb") as fh:
                config = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise InvalidDataError(f"{path} is not valid TOML: {err}") from None
        events = config.get("events", {})
        if not isinstance(events, dict) or not all(isinstance(v, str) for v in events.values()):
            raise InvalidDataError(f"{path}: [events] must map trial_type values to class names; got {events!r}")
        return config

    def _index(self, paths) -> list[dict]:
        """One dict per recording: subject number and label, session, run, task, paths; in time order."""
        labels = sorted({p.subject for p in paths})
        numeric = all(_is_number(s) for s in labels) and len({int(s) for s in labels}) == len(labels)
        number = {s: int(s) for s in labels} if numeric else {s: i + 1 for i, s in enumerate(labels)}
        several_tasks = len({p.task for p in paths}) > 1
        acq = self._acquisition_times(paths)
        groups: dict[tuple, list] = {}
        for p in paths:
            groups.setdefault((p.subject, p.session), []).append(p)
        out = []
        for (subject, session), group in sorted(groups.items(), key=lambda kv: (number[kv[0][0]], kv[0][1] or "")):
            times = [acq.get(p.fpath.name) for p in group]
            use_time = all(t is not None for t in times)

            def order(p, use_time=use_time):
                run = p.run or ""
                return (acq[p.fpath.name] if use_time else "", int(run) if run.isdigit() else -1, run, p.fpath.name)

            for index, p in enumerate(sorted(group, key=order)):
                run = p.run if p.run is not None else str(index)
                out.append({"path": p, "subject": number[subject], "label": subject, "session": session or "0",
                            "run": f"{p.task}_{run}" if several_tasks else run, "task": p.task})
        return out

    def _acquisition_times(self, paths) -> dict:
        """``{data file name: acq_time}`` from the subjects' (and sessions') ``scans.tsv`` files."""
        times = {}
        for scans in {p.fpath.parent.parent for p in paths}:
            for tsv in scans.glob("*_scans.tsv"):
                try:
                    table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
                except (OSError, ValueError, pd.errors.ParserError):
                    continue  # acquisition times only order recordings; run numbers are the fallback
                if {"filename", "acq_time"} <= set(table.columns):
                    for name, when in zip(table["filename"], table["acq_time"]):
                        if when and when != "n/a":
                            times[Path(name).name] = when
        return times

    def _events_file(self, bids_path) -> Path:
        return bids_path.copy().update(suffix="events", extension=".tsv", split=None).fpath

    def _infer_paradigm(self) -> tuple:
        """The paradigm the events files imply, and what was left out of its classes (for the log line)."""
        found, rest, durations = set(), set(), []
        for rec in self._recs:
            tsv = self._events_file(rec["path"])
            if not tsv.is_file():
                continue
            try:
                table = pd.read_csv(tsv, sep="\t", dtype={"trial_type": str, "value": str}, keep_default_na=False)
            except (OSError, ValueError, pd.errors.ParserError) as err:
                raise CorruptFileError(f"cannot read {tsv}: {type(err).__name__}: {err}") from err
            column = _trial_column(table)
            if column is None:
                continue
            names = column.astype(str).map(lambda v: self.events.get(v, v))
            keep = (names != "n/a") & (names != "") & ~names.str.upper().str.startswith(("BAD", "EDGE"))
            is_rest = names.str.lower().isin(REST_TRIAL_TYPES)
            rest |= set(names[keep & is_rest])
            keep &= ~is_rest
            found |= set(names[keep])
            if "duration" in table.columns:
                d = pd.to_numeric(table.loc[keep, "duration"], errors="coerce").to_numpy(dtype=float)
                durations += [x for x in d if np.isfinite(x) and x > 0]
        rest_note = f" (rest trial types {sorted(rest)} are not classes)" if rest else ""
        if len(found) < 2:
            raise InvalidDataError(
                f"BIDS dataset {self.root}: cannot infer a paradigm: the events files hold {sorted(found)} as task "
                f"trial types{rest_note}, two or more are needed; write a {CONFIG_FILE} with a [paradigm] table at "
                "the root or pass paradigm=")
        end = min(durations) if durations else DEFAULT_TRIAL_SECONDS
        idle = min(rest) if rest else None
        left_out = f" ({', '.join(map(repr, sorted(rest)))} left out: rest, used as the idle marker)" if rest else ""
        return Paradigm(kind="imagery", classes=tuple(sorted(found)), interval=(0.0, float(end)), band=INFERRED_BAND,
                        idle=idle), left_out

    # -- the Dataset interface ---------------------------------------------------------------------
    def subjects(self) -> tuple:
        return tuple(sorted({r["subject"] for r in self._recs}))

    def recordings(self, subject) -> list:
        return [Recording(r["subject"], r["session"], r["run"], functools.partial(self._read, r["path"]),
                          key=self._key(r["path"]), extra={"bids_subject": r["label"], "bids_task": r["task"]})
                for r in self._recs if r["subject"] == subject]

    def _key(self, bids_path) -> str:
        """sha256 of the recording's files (data, sidecars, events: all files sharing its name)."""
        fpath = bids_path.fpath
        prefix = fpath.name[: fpath.name.rindex("_") + 1]
        digest = hashlib.sha256()
        for f in sorted(fpath.parent.glob(prefix + "*")):
            if f.is_file():
                digest.update(f"{f.name}:{sha256_of(f)}\n".encode())
        return digest.hexdigest()

    def _read(self, bids_path):
        """The recording, preloaded, with its events.tsv trial types (mapped by ``[events]``) as annotations."""
        import mne_bids

        try:
            raw = mne_bids.read_raw_bids(bids_path, verbose="error")
            raw.load_data(verbose="error")
        except NeurodecodeDataError:
            raise
        except (ValueError, RuntimeError, OSError, KeyError, IndexError, TypeError) as err:
            raise CorruptFileError(f"cannot read {bids_path.fpath}: {type(err).__name__}: {err}") from err
        present = set(raw.annotations.description)
        rename = {k: v for k, v in self.events.items() if k in present}
        if rename:
            raw.annotations.rename(rename)
        return raw

    def __repr__(self) -> str:
        return (f"<BIDSDataset {self.name!r} ({self.root}): {len(self._recs)} {self.datatype} recordings, "
                f"{self.paradigm.kind}, classes {list(self.paradigm.classes)}>")


__all__ = ["BIDSDataset", "CONFIG_FILE", "REST_TRIAL_TYPES"]
