"""SSVEP exoskeleton dataset (Kalunga et al. 2016), subjects 1-4, from the authors' repository.

Eight occipital EEG channels (Oz, O1, O2, PO3, POz, PO7, PO8, PO4) at 256 Hz. Each recording
holds 32 cued trials, 8 per class: rest (look at a fixation point) or attend a LED flickering at
13, 17 or 21 Hz. A trial lasts 5 s from the cue.

The files are the authors' own (card ``ssvep_exo_kalunga2016``), not the re-encoded copies
MOABB downloads from Zenodo: the ``*_raw.fif`` files carry no stim channel, and each has its
events in a separate ``*-eve.fif`` file. File names contain ``[`` and ``]``, so they are taken
from the card as literal paths, never globbed.

Unit quirk (stated in the card): the files declare volts but hold millivolts, so every recording
is read back multiplied by :data:`FILE_UNIT_IN_VOLTS` (1e-3) to be in volts like every other
dataset. Measured on the 8 recordings: the median channel standard deviation after a 1-40 Hz
band-pass is 5.5-12.7 "V" as stored (thousands of times any scalp EEG; eegmmidb's is tens of uV),
and no sample exceeds 0.498 in magnitude, the g.Mobilab+ amplifier's +-500 uV input range read
in millivolts (the two recordings that reach it saturate there).

:func:`load_kalunga2016` is the generic :meth:`~neurodecode.data.dataset.Dataset.load` of the
:class:`Kalunga2016` view (the one epoching path of every dataset), with this loader's own
choices: MNE's default FIR filter, samples in volts, the two recordings named sessions.
"""

from __future__ import annotations

import functools
import re

import mne
import numpy as np

from ..cards import get_card
from ..container import DecodingData
from ..dataset import Dataset, Paradigm, Recording
from ..errors import CorruptFileError, InvalidDataError
from ..io.recordings import read_raw, select_subjects

DATASET = "ssvep_exo_kalunga2016"

#: Event codes of the ``-eve.fif`` files (MOABB: ``{"rest": 1, "13": 2, "21": 3, "17": 4}``;
#: 17 and 21 Hz are not in frequency order).
EVENT_ID = {"rest": 1, "13Hz": 2, "21Hz": 3, "17Hz": 4}

_RAW_FILE = re.compile(r"^subject(\d+)/record-\[(.+)\]_raw\.fif$")

#: Volts per unit of the files' samples: they are millivolts, although the files say volts.
FILE_UNIT_IN_VOLTS = 1e-3


def _read_events(path, raw: mne.io.BaseRaw) -> np.ndarray:
    """The ``-eve.fif`` events of one recording, checked against the recording's length."""
    try:
        events = mne.read_events(path, verbose="error")
    except (ValueError, RuntimeError, OSError, EOFError, IndexError, KeyError, TypeError) as err:
        raise CorruptFileError(f"cannot read the events file {path}: {type(err).__name__}: {err}") from err
    if not np.isin(events[:, 2], list(EVENT_ID.values())).any():
        raise InvalidDataError(f"{path}: none of the cue codes {EVENT_ID} occurs among its "
                               f"{len(events)} event(s); the events file does not match its recording")
    last = raw.first_samp + raw.n_times - 1
    outside = (events[:, 0] < raw.first_samp) | (events[:, 0] > last)
    if outside.any():
        raise InvalidDataError(
            f"{path}: {int(outside.sum())} event(s) at samples {events[outside, 0][:5].tolist()} lie outside "
            f"the recording's samples {raw.first_samp}..{last}; the events file does not match its recording")
    return events


def _read_recording(card, relpath: str):
    """One recording, checksum-verified, in volts, with positions in metres, and its ``-eve.fif`` events."""
    raw = read_raw(card.path(relpath))
    # The files' samples are millivolts under a volt label (see the module docstring and the card).
    raw.apply_function(lambda x: x * FILE_UNIT_IN_VOLTS, picks="all", channel_wise=False)
    events = _read_events(card.path(relpath.replace("_raw.fif", "-eve.fif")), raw)
    # The authors stored the sensor positions in millimetres; MNE and SignalInfo use metres.
    positions = {ch["ch_name"]: ch["loc"][:3] / 1000.0 for ch in raw.info["chs"]}
    raw.set_montage(mne.channels.make_dig_montage(ch_pos=positions, coord_frame="head"), verbose="error")
    return raw, events


def load_kalunga2016(subjects=None, *, tmin: float = 2.0, tmax: float = 4.0, l_freq: float | None = None,
                     h_freq: float | None = None, on_error: str = "raise",
                     progress: bool | None = None) -> DecodingData:
    """Trials of the SSVEP exoskeleton dataset.

    Parameters
    ----------
    subjects : int, list of int or None
        Subjects to load (1-4); None loads all.
    tmin, tmax : float
        Trial window in seconds after the cue, both ends included. The default 2-4 s is
        MOABB 1.7.2's ``Kalunga2016.interval`` (of the 5 s a trial lasts); at 256 Hz it gives
        513 samples.
    l_freq, h_freq : float or None
        Band-pass of the continuous recording before epoching (MNE's default FIR); None
        leaves that edge open. MOABB's SSVEP paradigm instead filters one band per frequency.
    on_error : {"raise", "skip"}
        What to do when some recordings fail, as in :func:`~neurodecode.data.io.recordings.load_many`.
    progress : bool or None
        Progress bar over recordings; by default only on a terminal.

    Returns
    -------
    data : DecodingData
        ``X`` of shape (64 * n_subjects, 8, n_times) in volts (the files' millivolts times
        :data:`FILE_UNIT_IN_VOLTS`: a 1-40 Hz standard deviation of 5-13 uV), labels indexing
        ``("rest", "13Hz", "17Hz", "21Hz")`` (16 trials of each per subject). Metadata:
        ``session`` is the recording index ``"0"`` / ``"1"`` in time order (MOABB calls these
        two same-day recordings runs of one session), ``run`` is ``"0"``, ``recording`` is the
        date-time stamp of the file name, ``onset`` is the cue time in seconds.

    Raises
    ------
    PartialLoadError
        With ``on_error="raise"``, when any recording fails (missing file, checksum mismatch,
        unreadable file); ``.loaded`` holds the recordings that did load.
    EmptySelectionError
        A requested subject is not in the dataset.
    """
    card = get_card(DATASET)
    # Every subject the card lists, present or not: a missing file is a failure that names it.
    subjects = select_subjects(subjects, card.files_by_subject(_RAW_FILE), dataset=card.name)
    # The one epoching path (the Dataset view's load), with this loader's historic choices: MNE's default FIR
    # filter, samples in volts.
    data = Kalunga2016().load(subjects, tmin=tmin, tmax=tmax, fmin=l_freq, fmax=h_freq, filter_method="fir",
                              unit="SI", on_error=on_error, progress=progress)
    # The view names the two recordings runs of one session, as MOABB; this loader has always called them
    # sessions "0"/"1" (see Returns).
    return DecodingData(data.X, data.y, data.metadata.assign(session=data.metadata["run"], run="0"), data.info)


def _read_annotated(relpath: str):
    """One recording with its ``-eve.fif`` events as class-named annotations and positions in metres."""
    raw, events = _read_recording(get_card(DATASET), relpath)
    names = {code: name for name, code in EVENT_ID.items()}
    raw.set_annotations(mne.annotations_from_events(events, raw.info["sfreq"], event_desc=names,
                                                    first_samp=raw.first_samp, orig_time=raw.annotations.orig_time,
                                                    verbose="error"))
    return raw


class Kalunga2016(Dataset):
    """The SSVEP exoskeleton recordings as a :class:`~neurodecode.data.dataset.Dataset`.

    As MOABB's ``Kalunga2016``: one session ``"0"`` per subject, its two recordings as runs
    ``"0"`` and ``"1"`` in time order.
    """

    def __init__(self):
        card = get_card(DATASET)
        super().__init__(DATASET, Paradigm.from_table(card.extra["paradigm"], where=f"card {DATASET}"),
                         modality="eeg", picks="eeg")

    def subjects(self) -> tuple:
        return get_card(DATASET).subjects_present(_RAW_FILE)

    def listed_subjects(self) -> tuple:
        return tuple(get_card(DATASET).files_by_subject(_RAW_FILE))

    def recordings(self, subject) -> list:
        card = get_card(DATASET)
        paths = card.files_by_subject(_RAW_FILE).get(int(subject), [])
        return [Recording(int(subject), "0", str(i), functools.partial(_read_annotated, p), key=card.entry(p).sha256,
                          extra={"recording": _RAW_FILE.match(p).group(2)}, source=p) for i, p in enumerate(paths)]


def dataset(spec: str = "") -> Kalunga2016:
    return Kalunga2016()


def summarize(card=None) -> list:
    data = load_kalunga2016()
    return [("SSVEP trials", data.shape, data.class_counts())]
