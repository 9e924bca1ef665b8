"""A dataset described by a card alone: the user's own recordings, in any format MNE reads.

A card (TOML, the schema of the package's cards, ``datasets/*.toml``) names the files, and for
each one the subject it belongs to; an ``[events]`` table says which annotation (or trigger
code) is which class, and a ``[paradigm]`` table what the classes mean for decoding. Nothing
else is needed: :class:`CardDataset` turns such a card into a
:class:`~neurodecode.data.dataset.Dataset`, so ``neurodecode benchmark --datasets card.toml``
runs on it like on a package dataset.

Schema (keys beyond the card's usual ``name``, ``title``, ``modality``, ``folder``, ...)::

    stim_channel = "STI 014"          # optional: read events from this trigger channel

    [[files]]
    path = "sub7/run1.edf"            # relative to ``folder``
    sha256 = "..."                    # optional in a user's card; checked when given
    subject = 7                       # required (int) for every recording
    session = "0"                     # optional, default "0"
    run = "0"                         # optional, default: index among the subject's session's
                                      # files, in the order the card lists them

    [events]                          # description (or trigger code as a string) -> class
    T1 = "left_hand"
    T2 = "right_hand"
    "2" = "target"

    [paradigm]                        # see neurodecode.data.dataset.Paradigm.from_table
    name = "imagery"
    classes = ["left_hand", "right_hand"]
    interval = [0.0, 3.0]
    band = [8.0, 32.0]

A ``[[files]]`` entry without ``subject`` is a companion file (BrainVision ``.eeg``/``.vmrk``,
EEGLAB ``.fdt``, ...): verified by ``neurodecode datasets`` but never opened as a recording.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

import mne
import numpy as np

from ..cards import DatasetCard, cards_dir, get_card, sha256_of
from ..dataset import Dataset, Paradigm, Recording
from ..errors import DataNotFoundError, InvalidDataError, PartialLoadError, UnknownEventError
from .recordings import read_raw

# Extensions MNE opens as a recording by themselves; an entry with one of them and no subject is
# almost certainly a forgotten ``subject`` rather than a companion file.
_RECORDING_SUFFIXES = {".edf", ".bdf", ".gdf", ".fif", ".vhdr", ".set", ".cnt", ".mff", ".nxe", ".snirf", ".xdf"}


class _NoMappedEvent(UnknownEventError):
    """A file holds none of the names of the card's ``[events]`` table (gathered into one error by load)."""


def _entries(card: DatasetCard) -> list[dict]:
    """The ``[[files]]`` tables of the card's TOML, with the keys ``DatasetCard`` drops (subject, session, run)."""
    if card.card_file is None:
        raise InvalidDataError(f"dataset {card.name!r}: the card was not read from a file, so its [[files]] "
                               "subjects are unknown; build it with DatasetCard.from_toml or get_card")
    with open(card.card_file, "rb") as fh:
        files = tomllib.load(fh).get("files", [])
    return [f for f in files if isinstance(f, dict)]


def _subject(value, where: str) -> int:
    # bool is an int in Python; "subject = true" is a typo, not subject 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidDataError(f"{where}: subject = {value!r}; expected an integer (subject = 7)")
    return value


class CardDataset(Dataset):
    """The recordings a card names, as a :class:`~neurodecode.data.dataset.Dataset`.

    Parameters
    ----------
    card : DatasetCard or path-like
        The card, or the path of its TOML file (a user's card unless it lies in the package's
        card folder). A card outside the package's folder that was read as a package card
        (``DatasetCard.from_toml(path)`` without ``user=True``) is read again as a user's card,
        so that its ``folder`` is relative to the card file.

    Attributes
    ----------
    card : DatasetCard
    events : dict of str to str
        Annotation description or trigger code (as a string) -> class name. Without an
        ``[events]`` table: each paradigm class (and the idle marker) maps to itself, for files
        whose annotations already carry the class names.
    stim_channel : str or None

    Notes
    -----
    A file is read with :func:`~neurodecode.data.io.recordings.read_raw` (EDF, BDF, GDF, FIF,
    BrainVision, EEGLAB...), after its sha256 is checked when the card gives one. Its
    annotations named in ``[events]`` are renamed to their class; trigger codes named there are
    read from the stim channel (``stim_channel``, else the file's first stim channel, consulted
    only for names that are not annotations) and added as class-named annotations at each
    trigger onset. Other annotations (``BAD_...`` segments, unmapped markers) stay as they are.
    """

    def __init__(self, card):
        if not isinstance(card, DatasetCard):
            card = get_card(Path(card))
        elif not card.user and card.card_file is not None and Path(card.card_file).resolve().parent != cards_dir():
            card = get_card(Path(card.card_file))
        self.card = card
        where = f"dataset card {card.card_file or card.name}"
        table = card.extra.get("paradigm")
        if not isinstance(table, dict):
            raise InvalidDataError(f"{where} has no [paradigm] table; add one with name (imagery, ssvep or p300), "
                                   "classes, interval and band")
        paradigm = Paradigm.from_table(table, where=where)
        if card.modality not in ("eeg", "meg"):
            raise InvalidDataError(f"{where}: modality {card.modality!r} cannot be read as recordings; expected "
                                   "'eeg' or 'meg'")
        events = card.extra.get("events")
        if events is None:
            events = {c: c for c in (*paradigm.classes, *([paradigm.idle] if paradigm.idle else []))}
        elif not isinstance(events, dict) or not all(isinstance(v, str) for v in events.values()):
            raise InvalidDataError(f"{where}: [events] must map each annotation description or trigger code to a "
                                   f"class name (T1 = \"left_hand\"); got {events!r}")
        else:
            unmapped = [c for c in paradigm.classes if c not in events.values()]
            if unmapped:
                raise InvalidDataError(f"{where}: class(es) {unmapped} of [paradigm] have no [events] entry mapping "
                                       f"to them; [events] maps {dict(events)}")
        stim = card.extra.get("stim_channel")
        if stim is not None and not isinstance(stim, str):
            raise InvalidDataError(f"{where}: stim_channel = {stim!r}; expected a channel name")
        self.events, self.stim_channel = dict(events), stim
        self._where = where
        self._files = self._recording_entries()
        self._seen: dict[str, set] = {}
        # EEG channels for an EEG card, magnetometers and gradiometers for a MEG one.
        super().__init__(card.name, paradigm, modality=card.modality, picks=card.modality)

    # -- the card's files ------------------------------------------------------------------------
    def _recording_entries(self) -> list[dict]:
        """``[{path, sha256, subject, session, run}]`` for the entries that have a subject, checked."""
        listed = {f.path for f in self.card.files}
        out, counters = [], {}
        for raw in _entries(self.card):
            path = raw.get("path")
            if path not in listed:
                continue  # DatasetCard.from_toml already refused entries without a path
            where = f"{self._where}, file {path!r}"
            if "subject" not in raw:
                if Path(path).suffix.lower() in _RECORDING_SUFFIXES:
                    raise InvalidDataError(f"{where} has no subject; every recording needs subject = <int> "
                                           "(only companion files such as .eeg/.vmrk/.fdt may omit it)")
                continue
            subject = _subject(raw["subject"], where)
            session = str(raw.get("session", "0"))
            index = counters.get((subject, session), 0)
            counters[(subject, session)] = index + 1
            out.append({"path": path, "subject": subject, "session": session,
                        "run": str(raw.get("run", index)), "sha256": self.card.entry(path).sha256})
        if not out:
            raise InvalidDataError(f"{self._where} names no recording: give each [[files]] entry that is a "
                                   "recording a subject = <int>")
        seen = {}
        for e in out:
            key = (e["subject"], e["session"], e["run"])
            if key in seen:
                raise InvalidDataError(f"{self._where}: files {seen[key]!r} and {e['path']!r} are both subject "
                                       f"{key[0]}, session {key[1]!r}, run {key[2]!r}; expected one file per run")
            seen[key] = e["path"]
        return out

    def _missing(self, entries) -> list:
        root = self.card.root()
        return [e["path"] for e in entries if not (root / e["path"]).is_file()]

    def subjects(self) -> tuple:
        """Subjects every one of whose recordings is present (file exists; checksums are checked on read)."""
        by_subject: dict[int, list] = {}
        for e in self._files:
            by_subject.setdefault(e["subject"], []).append(e)
        return tuple(s for s in sorted(by_subject) if not self._missing(by_subject[s]))

    def select_subjects(self, subjects=None) -> list:
        """As :meth:`Dataset.select_subjects`, but a missing file of a wanted subject is named.

        A user's card names files its author has, so with ``subjects=None`` any missing file
        is an error; a card marked ``partial = true`` lists files that may be absent, and then
        only the subjects with all their files are selected.

        Raises
        ------
        DataNotFoundError
            A file of a selected subject is missing (the message names it and the expected path).
        """
        if subjects is None:
            wanted = None if self.card.extra.get("partial") else sorted({e["subject"] for e in self._files})
        else:
            wanted = [subjects] if np.isscalar(subjects) else list(subjects)
        if wanted is not None:
            missing = self._missing([e for e in self._files if e["subject"] in wanted])
            if missing:
                raise DataNotFoundError(self.card.missing_message(missing[0], self.card.root() / missing[0])
                                        + (f" ({len(missing) - 1} more file(s) missing)" if len(missing) > 1 else ""))
        return super().select_subjects(subjects)

    def recordings(self, subject) -> list:
        """The subject's recordings, sessions in card order, each session's files in card order."""
        root = self.card.root()
        out = []
        for e in self._files:
            if e["subject"] != subject:
                continue
            key = e["sha256"]
            if key is None and (root / e["path"]).is_file():
                # No checksum in the card: the file's own (cached) sha256 still identifies its content.
                key = sha256_of(root / e["path"])
            out.append(Recording(e["subject"], e["session"], e["run"], functools.partial(self._read, e["path"]),
                                 key=key or "", extra={"recording": e["path"]}))
        order = list(dict.fromkeys(r.session for r in out))
        return sorted(out, key=lambda r: order.index(r.session))

    # -- reading -------------------------------------------------------------------------------
    def _read(self, relpath: str) -> mne.io.BaseRaw:
        """One recording, checksum-verified, with its cues renamed to class names."""
        path = self.card.path(relpath)  # DataNotFoundError / ChecksumMismatchError name the file
        raw = read_raw(path)
        descriptions = set(raw.annotations.description)
        codes, events, channel = set(), None, None
        stim_picks = mne.pick_types(raw.info, stim=True, exclude=())
        wants_codes = any(k not in descriptions for k in self.events)
        if self.stim_channel is not None:
            if self.stim_channel not in raw.ch_names:
                raise InvalidDataError(f"{path}: no channel {self.stim_channel!r} (the card's stim_channel); its "
                                       f"channels: {raw.ch_names[:20]}{'...' if len(raw.ch_names) > 20 else ''}")
            channel = self.stim_channel
        elif wants_codes and len(stim_picks):
            channel = raw.ch_names[stim_picks[0]]
        if channel is not None:
            events = mne.find_events(raw, stim_channel=channel, shortest_event=1, verbose="error")
            codes = {str(int(c)) for c in np.unique(events[:, 2])}
        available = descriptions | codes
        self._seen[str(path)] = available
        used = [k for k in self.events if k in available]
        if not used:
            found = sorted(descriptions) + ([f"{channel} codes {sorted(codes, key=int)}"] if channel else [])
            raise _NoMappedEvent(f"{path}: none of the [events] names {list(self.events)} of {self._where} occurs "
                                 f"in this file; it has {found}")
        raw.annotations.rename({k: self.events[k] for k in used if k in descriptions})
        from_stim = {int(k): self.events[k] for k in used if k not in descriptions}
        if from_stim:
            keep = events[np.isin(events[:, 2], list(from_stim))]
            raw.set_annotations(raw.annotations + mne.annotations_from_events(
                keep, raw.info["sfreq"], event_desc=from_stim, first_samp=raw.first_samp,
                orig_time=raw.annotations.orig_time, verbose="error"))
        return raw

    def _check_events(self, read_all: bool, failure: PartialLoadError | None = None) -> None:
        """One error for ``[events]`` names that no file read holds.

        A name missing from every file of the card is a typo or a wrong card (checked only when
        every recording was read, since others may hold it). When every file failed because it
        holds none of the names, one line replaces the per-file list.
        """
        found = set().union(*self._seen.values()) if self._seen else set()
        unseen = [k for k in self.events if k not in found]
        all_unmapped = failure is not None and failure.loaded is None and failure.failures and all(
            isinstance(e, _NoMappedEvent) for e in failure.failures.values())
        if unseen and (read_all or all_unmapped) and self._seen:
            example, names = next(iter(self._seen.items()))
            raise UnknownEventError(
                f"{self._where}: [events] name(s) {unseen} occur in none of the {len(self._seen)} file(s) read "
                f"(e.g. {example} has {sorted(names)}); fix the [events] table or the files")

    def _checked(self, method, subjects, **kwargs):
        self._seen = {}
        selected = self.select_subjects(subjects)
        read_all = set(selected) == {e["subject"] for e in self._files}
        try:
            out = method(subjects, **kwargs)
        except PartialLoadError as err:
            self._check_events(read_all, err)
            raise
        self._check_events(read_all)
        return out

    def load(self, subjects=None, **kwargs):
        """Epochs, as :meth:`Dataset.load`; also checks that every ``[events]`` name occurs in some file.

        Raises
        ------
        UnknownEventError
            When every recording was read and a name of ``[events]`` occurs in none of them,
            or when no file holds any of the names.
        """
        return self._checked(super().load, subjects, **kwargs)

    def streams(self, subjects=None, **kwargs):
        """Labelled streams, as :meth:`Dataset.streams`, with the same ``[events]`` check as :meth:`load`."""
        return self._checked(super().streams, subjects, **kwargs)


__all__ = ["CardDataset"]


#: The description a folder of recordings carries (no file list: the folder is scanned).
FOLDER_CARD = "neurodecode.toml"


def folder_card(folder) -> Path:
    """The card a folder of recordings implies: every recording in it, subjects from the file names.

    The folder holds recordings (any format MNE reads) and a ``neurodecode.toml`` with the card's
    ``[paradigm]`` and ``[events]`` tables, optionally ``name``, ``modality``, ``stim_channel`` and
    ``subject_pattern``: a regular expression searched in each file's path relative to the folder,
    whose first group (or a group named ``subject``) is the subject number; optional groups named
    ``session`` and ``run`` give those (default: every file is session "0", runs in name order).
    The default pattern is the first number in the path (``patient07_run2.edf`` -> subject 7).

    The card is written to the checksum cache folder (``$NEURODECODE_CACHE``), never into the
    recordings' folder, and made anew on each call, so added files are picked up.

    Returns
    -------
    path : Path
        The generated card file.
    """
    import hashlib
    import json
    import re

    from ..cards import cache_dir

    folder = Path(folder).expanduser().resolve()
    described = folder / FOLDER_CARD
    try:
        with open(described, "rb") as fh:
            table = tomllib.load(fh)
    except FileNotFoundError:
        raise DataNotFoundError(f"{folder} has no {FOLDER_CARD}: a folder of recordings needs one with [paradigm] "
                                "and [events] tables (see docs/own_data.md)") from None
    except tomllib.TOMLDecodeError as err:
        raise InvalidDataError(f"{described} is not valid TOML: {err}") from None
    try:
        pattern = re.compile(table.pop("subject_pattern", r"(\d+)"))
    except re.error as err:
        raise InvalidDataError(f"{described}: subject_pattern is not a regular expression: {err}") from None
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in _RECORDING_SUFFIXES and p.is_file()):
        relative = path.relative_to(folder).as_posix()
        match = pattern.search(relative)
        if match is None:
            raise InvalidDataError(f"{described}: subject_pattern {pattern.pattern!r} finds no subject in {relative!r}")
        groups = match.groupdict()
        entry = {"path": relative, "subject": int(groups.get("subject") or match.group(1))}
        for key in ("session", "run"):
            if groups.get(key) is not None:
                entry[key] = groups[key]
        entries.append(entry)
    if not entries:
        raise DataNotFoundError(f"{folder} holds no recording MNE reads ({', '.join(sorted(_RECORDING_SUFFIXES))})")
    card = {"name": table.pop("name", folder.name), "folder": str(folder), **table}
    lines = [f"{key} = {json.dumps(value)}" for key, value in card.items() if not isinstance(value, dict)]
    for key, value in card.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines += [f"{json.dumps(str(k))} = {json.dumps(v)}" for k, v in value.items()]
    for entry in entries:
        lines.append("\n[[files]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
    out = cache_dir() / "folder_cards" / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:16]}.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out
