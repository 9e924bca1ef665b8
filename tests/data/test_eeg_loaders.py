"""Dataset loaders for the SSVEP exoskeleton (Kalunga 2016) and Muse visual P300 recordings."""

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest

from neurodecode.data import (ChecksumMismatchError, CorruptFileError, DataNotFoundError, EmptySelectionError,
                              InvalidDataError, PartialLoadError, get_card)
from neurodecode.data.datasets.kalunga2016 import DATASET as KALUNGA, load_kalunga2016
from neurodecode.data.datasets.muse_p300 import DATASET as MUSE, load_muse_p300, read_muse_csv

KALUNGA_CHANNELS = ("Oz", "O1", "O2", "PO3", "POz", "PO7", "PO8", "PO4")
# (subject, run) -> (non-targets, targets) epochs; the CSVs hold one more non-target in subject 1's
# first run, 20 samples (78 ms) after the start: too early for the 0.1 s before the stimulus.
MUSE_COUNTS = {(1, "0"): (164, 32), (1, "1"): (163, 28), (1, "2"): (155, 38),
               (2, "0"): (170, 24), (2, "1"): (159, 35), (2, "2"): (163, 28),
               (3, "0"): (164, 32), (3, "1"): (169, 26), (3, "2"): (165, 32),
               (5, "0"): (159, 38), (5, "1"): (167, 30), (5, "2"): (169, 28)}
MUSE_S1_RUN0 = "visual/P300/subject1/session1/data_2017-02-04-15_45_13.csv"
MUSE_S3_RUN0 = "visual/P300/subject3/session1/data_2018-04-15-17.31.22.csv"


@pytest.fixture(scope="module")
def kalunga(data_root):
    return load_kalunga2016()


@pytest.fixture(scope="module")
def muse(data_root):
    return load_muse_p300()


def _mirror(card, root, relpaths):
    """A NEURODECODE_DATA folder at ``root`` with links to some of a card's real files."""
    for relpath in relpaths:
        link = root / card.folder / relpath
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(card.path(relpath, verify=False))


def _damage(path):
    """Replace a link by a copy of its target with one byte flipped in the middle."""
    source = path.resolve()
    path.unlink()
    shutil.copy(source, path)
    with open(path, "r+b") as fh:
        middle = path.stat().st_size // 2
        fh.seek(middle)
        byte = fh.read(1)[0]
        fh.seek(middle)
        fh.write(bytes([byte ^ 0xFF]))


# -- Kalunga 2016 -----------------------------------------------------------------------------
def test_kalunga_shapes_classes_and_metadata(kalunga):
    # 4 subjects x 2 recordings x 32 cues; 2-4 s after the cue at 256 Hz, both ends included.
    assert kalunga.shape == (256, 8, 513)
    assert kalunga.info.class_names == ("rest", "13Hz", "17Hz", "21Hz")
    assert kalunga.info.ch_names == KALUNGA_CHANNELS and kalunga.info.sfreq == 256.0
    assert kalunga.info.tmin == 2.0 and kalunga.info.modality == "eeg"
    table = pd.crosstab([kalunga.metadata["subject"], kalunga.metadata["session"]], kalunga.labels)
    assert table.index.tolist() == [(s, r) for s in (1, 2, 3, 4) for r in ("0", "1")]
    assert (table.to_numpy() == 8).all()
    first = kalunga.metadata.iloc[0]
    assert (first["recording"], first["run"], first["dataset"]) == ("2012.07.06-19.02.16", "0", KALUNGA)
    assert first["onset"] == pytest.approx(3965 / 256)  # first cue of subject 1's first -eve.fif
    # The authors stored positions in mm; Oz sits 11.5 cm behind the head centre.
    assert kalunga.info.positions[0] == pytest.approx([0.000108, -0.114892, 0.014657], abs=1e-6)


def test_kalunga_labels_follow_the_flicker(kalunga):
    """Each flicker class has the most occipital power at its own frequency.

    This pins the 17/21 Hz code swap (codes 3 = 21 Hz, 4 = 17 Hz) that MOABB corrected in 1.7.
    """
    X = kalunga.X - kalunga.X.mean(axis=-1, keepdims=True)
    freqs = np.fft.rfftfreq(X.shape[-1], 1 / kalunga.info.sfreq)
    power = np.abs(np.fft.rfft(X * np.hanning(X.shape[-1]), axis=-1)) ** 2
    relative = power / power[..., (freqs > 5) & (freqs < 30)].mean(axis=-1, keepdims=True)
    for hz in (13, 17, 21):
        at_hz = relative[..., np.argmin(np.abs(freqs - hz))].mean(axis=1)
        by_class = {c: at_hz[kalunga.labels == c].mean() for c in kalunga.info.class_names}
        assert max(by_class, key=by_class.get) == f"{hz}Hz", (hz, by_class)
        assert by_class[f"{hz}Hz"] > 1.5 * by_class["rest"]


def test_kalunga_window_filter_and_subject_choice(data_root, isolated_cache, kalunga):
    whole = load_kalunga2016(2, tmin=0.0, tmax=5.0, l_freq=5.0, h_freq=45.0)
    assert whole.shape == (64, 8, 1281) and set(whole.metadata["subject"]) == {2}
    assert whole.class_counts() == {"rest": 16, "13Hz": 16, "17Hz": 16, "21Hz": 16}
    # The 5 Hz high-pass removes the amplifier's offsets (tens of uV on PO3 in the raw data).
    offsets = np.abs(kalunga.X.mean(axis=-1)).max()
    assert offsets > 1e-5 and np.abs(whole.X.mean(axis=-1)).max() < 0.01 * offsets
    np.testing.assert_array_equal(whole.metadata["onset"], kalunga.select(subject=2).metadata["onset"])


def test_kalunga_recordings_are_read_in_volts_at_a_physiological_scale(data_root, kalunga):
    # The files hold millivolts under a volt label: read as stored, the median channel's 1-40 Hz
    # standard deviation is 5.5-12.7 "V". Corrected, it is 5.5-12.7 uV (scalp EEG: a few to some
    # tens of uV), and no sample exceeds the amplifier's +-500 uV input range.
    from neurodecode.data.datasets.kalunga2016 import FILE_UNIT_IN_VOLTS, Kalunga2016

    assert FILE_UNIT_IN_VOLTS == 1e-3 and "millivolts" in get_card(KALUNGA).notes
    dataset = Kalunga2016()
    spreads = []
    for subject in dataset.subjects():
        for recording in dataset.recordings(subject):
            raw = recording.read()
            assert all(ch["unit"] == 107 for ch in raw.info["chs"])  # FIFF_UNIT_V: volts, as MNE says
            assert np.abs(raw.get_data()).max() < 500e-6
            spreads.append(np.median(raw.filter(1.0, 40.0, verbose="error").get_data().std(axis=1)))
    assert len(spreads) == 8
    assert 2e-6 < min(spreads) and max(spreads) < 50e-6, spreads
    # The epochs of load_kalunga2016 come from the same corrected samples.
    assert 1e-6 < np.median(kalunga.X.std(axis=-1)) < 200e-6


def test_kalunga_unknown_subject():
    with pytest.raises(EmptySelectionError, match=r"subject\(s\) \[7\] not available.*\[1, 2, 3, 4\]"):
        load_kalunga2016([1, 7])


def test_kalunga_checksum_mismatch_names_file_and_both_hashes(data_root, tmp_path, monkeypatch, isolated_cache):
    card = get_card(KALUNGA)
    subject1 = [f.path for f in card.files if f.path.startswith("subject01/")]
    _mirror(card, tmp_path, subject1)
    damaged_rel = "subject01/record-[2012.07.06-19.06.14]_raw.fif"
    damaged = tmp_path / card.folder / damaged_rel
    _damage(damaged)
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))

    with pytest.raises(PartialLoadError) as err:
        load_kalunga2016(1)
    assert list(err.value.failures) == [damaged_rel]
    failure = err.value.failures[damaged_rel]
    assert isinstance(failure, ChecksumMismatchError)
    assert str(damaged) in str(failure) and card.entry(damaged_rel).sha256 in str(failure)
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() in str(failure)
    # The intact first recording still loads, and skipping returns it.
    assert err.value.loaded.shape == (32, 8, 513) and set(err.value.loaded.metadata["session"]) == {"0"}
    with pytest.warns(UserWarning, match="ChecksumMismatchError"):
        assert len(load_kalunga2016(1, on_error="skip")) == 32


# -- Muse visual P300 -------------------------------------------------------------------------
def test_muse_shapes_classes_and_counts(muse):
    assert muse.shape == (2338, 4, 232)  # -0.1..0.8 s at 256 Hz
    assert muse.info.class_names == ("non_target", "target")
    assert muse.info.ch_names == ("TP9", "AF7", "AF8", "TP10") and muse.info.sfreq == 256.0
    assert muse.info.tmin == pytest.approx(-26 / 256)
    table = pd.crosstab([muse.metadata["subject"], muse.metadata["run"]], muse.labels)
    assert {k: tuple(v) for k, v in zip(table.index, table.to_numpy().tolist())} == MUSE_COUNTS
    assert set(muse.metadata["session"]) == {"1"}
    assert muse.metadata["recording"].iloc[0] == "data_2017-02-04-15_45_13"
    # Volts after a 1-30 Hz band-pass: a few tens of microvolts, not the CSV's microvolt numbers.
    spread = muse.X.std(axis=(0, 2))
    assert np.all((spread > 5e-6) & (spread < 1e-4)), spread
    # Standard 10-05 positions: TP9 on the left, AF8 front right.
    tp9, af8 = muse.info.positions[0], muse.info.positions[2]
    assert tp9[0] < -0.05 and af8[0] > 0 and af8[1] > 0.05


@pytest.mark.parametrize("relpath, marker, counts", [(MUSE_S1_RUN0, "Marker", {1: 165, 2: 32}),
                                                     (MUSE_S3_RUN0, "Marker0", {1: 164, 2: 32})])
def test_muse_csv_samples_and_events_follow_the_file(data_root, isolated_cache, relpath, marker, counts):
    path = get_card(MUSE).path(relpath)
    table = pd.read_csv(path)
    raw, events = read_muse_csv(path)
    assert raw.ch_names == ["TP9", "AF7", "AF8", "TP10"] and raw.n_times == len(table)
    # Sample index, not the jittered LSL timestamp, places each sample and event.
    np.testing.assert_array_equal(events[:, 0], np.nonzero(table[marker].to_numpy())[0])
    codes, n = np.unique(events[:, 2], return_counts=True)
    assert dict(zip(codes.tolist(), n.tolist())) == counts
    np.testing.assert_allclose(raw.get_data(), table[["TP9", "AF7", "AF8", "TP10"]].to_numpy().T * 1e-6)
    with_aux, _ = read_muse_csv(path, keep_aux=True)
    assert with_aux.ch_names[-1] == "Right AUX"
    np.testing.assert_allclose(with_aux.get_data()[-1], table["Right AUX"].to_numpy() * 1e-6)


def test_muse_keep_aux_and_unfiltered_window(data_root, isolated_cache):
    data = load_muse_p300(5, tmin=0.0, tmax=0.5, l_freq=None, h_freq=None, keep_aux=True)
    assert data.shape == (591, 5, 129) and data.info.ch_names[-1] == "Right AUX"
    assert data.class_counts() == {"non_target": 495, "target": 96}


def _edited_copy(data_root, tmp_path, edit):
    """A copy of subject 1's first run, its text passed through ``edit``."""
    source = data_root / get_card(MUSE).folder / MUSE_S1_RUN0
    target = tmp_path / "run.csv"
    target.write_text(edit(source.read_text()))
    return target


def _set_line(text, index, line):
    lines = text.splitlines(keepends=True)
    lines[index] = line
    return "".join(lines)


@pytest.mark.parametrize("edit, error, problem", [
    (lambda t: t.replace(",Marker\n", ",Stim\n", 1), CorruptFileError,
     r"lacks the column\(s\) \['Marker or Marker0'\]"),
    (lambda t: t.replace("TP9,", "", 1), CorruptFileError, r"lacks the column\(s\) \['TP9'\]"),
    (lambda t: t[: len(t) // 2 + 7], CorruptFileError, "is truncated"),
    (lambda t: _set_line(t, 101, "1486223115.875,-44.922,,32.715,58.105,82.031,0\n"), InvalidDataError,
     r"NaN values in 1 row\(s\) \(first data rows \[100\]\), column\(s\) \['AF7'\]"),
    (lambda t: _set_line(t, 501, "1486223100.000,-44.922,27.832,32.715,58.105,82.031,0\n"), InvalidDataError,
     r"timestamps must increase, but data row 500 \(t=1486223100.000 s\) does not follow row 499"),
    (lambda t: _set_line(t, 11, "1486223115.522,-44.922,27.832,32.715,58.105,82.031,stim\n"), CorruptFileError,
     r"column 'Marker' holds non-numeric text, first at data row 10 \('stim'\)"),
    (lambda t: _set_line(t, 11, "1486223115.522,-44.922,27.832,32.715,58.105,82.031,1.5\n"), InvalidDataError,
     r"marker column 'Marker' must hold whole numbers; data row 10 has 1.5"),
    (lambda t: "".join(t.splitlines(keepends=True)[::2]), InvalidDataError, r"imply 128.0 Hz"),
    (lambda t: "", CorruptFileError, r"is empty \(0 bytes\)"),
    (lambda t: t.splitlines(keepends=True)[0], CorruptFileError, "has a header but no sample"),
])
def test_muse_damaged_csv_names_file_and_problem(data_root, tmp_path, edit, error, problem):
    path = _edited_copy(data_root, tmp_path, edit)
    with pytest.raises(error, match=problem) as err:
        read_muse_csv(path)
    assert str(path) in str(err.value)


def test_muse_missing_run_is_reported_and_the_others_kept(data_root, tmp_path, monkeypatch, isolated_cache):
    card = get_card(MUSE)
    runs = [f.path for f in card.files if f.path.startswith("visual/P300/subject1/")]
    _mirror(card, tmp_path, runs[1:])
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))
    with pytest.warns(UserWarning, match="1 file.s. failed") as caught:
        data = load_muse_p300(1, on_error="skip")
    assert data.metadata["run"].unique().tolist() == ["1", "2"]
    assert data.class_counts() == {"non_target": 163 + 155, "target": 28 + 38}
    message = str(caught[0].message)
    expected = tmp_path / card.folder / runs[0]
    assert f"{runs[0]}: DataNotFoundError" in message and str(expected) in message
    assert card.source in message

    with pytest.raises(PartialLoadError) as err:
        load_muse_p300(1)
    assert isinstance(err.value.failures[runs[0]], DataNotFoundError)


# -- One epoching path: both loaders are the generic Dataset.load ---------------------------------
def _digests(data) -> dict:
    """sha256 (16 hex digits) of each part of a load: X's exact bytes, y, metadata, signal info."""
    def sha(payload: bytes) -> str:
        return hashlib.sha256(payload).hexdigest()[:16]

    info = data.info
    positions = b"none" if info.positions is None else np.ascontiguousarray(info.positions, dtype=float).tobytes()
    return {"X": sha(repr((data.X.dtype.str, data.X.shape)).encode() + np.ascontiguousarray(data.X).tobytes()),
            "y": sha(data.y.astype(np.int64).tobytes()),
            "metadata": sha((repr(data.metadata.dtypes.astype(str).to_dict())
                             + data.metadata.to_csv(index=False)).encode()),
            "info": sha(repr((info.sfreq, info.ch_names, info.ch_types, info.modality, info.class_names, info.tmin,
                              info.unit)).encode() + positions)}


# The old code's output: digests of what load_kalunga2016 and load_muse_p300 returned when each epoched
# on its own (select_recordings + epochs_to_data + load_many; Kalunga with the FILE_UNIT_IN_VOLTS fix),
# computed on that tree before both moved onto Dataset.load. The one path gives the same bytes.
_BEFORE_ONE_PATH = {
    ("kalunga", "default"): ({}, {"X": "4b37397805459559", "y": "8423b609cd549800",
                                  "metadata": "14af02a2c5a5f099", "info": "e2bbb4c19417e991"}),
    ("kalunga", "subset_window_band"): (
        {"subjects": [2, 4], "tmin": 0.5, "tmax": 4.5, "l_freq": 5.0, "h_freq": 45.0},
        {"X": "03d39a16e8827a39", "y": "6339efb0e0953dd3", "metadata": "6123de8384bf4138", "info": "c85d745e6dd92101"}),
    ("kalunga", "one_subject_highpass"): (
        {"subjects": 3, "tmin": 1.0, "tmax": 3.0, "l_freq": 1.0},
        {"X": "c8e2b4c1f01ae68d", "y": "b40aab83cdff03e2", "metadata": "d27919052547a567", "info": "1dc7877b45b599cd"}),
    ("muse", "default"): ({}, {"X": "a251d68fa4c46520", "y": "5f0f898f45c03def",
                               "metadata": "6a044667b5d4e9a0", "info": "79b2346fcb592d80"}),
    ("muse", "aux_unfiltered"): (
        {"subjects": 5, "tmin": 0.0, "tmax": 0.5, "l_freq": None, "h_freq": None, "keep_aux": True},
        {"X": "ca26972d84183971", "y": "b9021817918f1e2e", "metadata": "0813a1125e1fdcce", "info": "3ed49d2422d33725"}),
    ("muse", "subset_band"): (
        {"subjects": [1, 3], "tmin": -0.2, "tmax": 1.0, "l_freq": 0.5, "h_freq": 40.0},
        {"X": "aed793cad0060913", "y": "8b8e343128ca1354", "metadata": "d18ddc71bf2a66e3", "info": "97391217a45e6e10"}),
}


@pytest.mark.parametrize("dataset, case", sorted(_BEFORE_ONE_PATH))
def test_the_one_epoching_path_gives_the_epochs_of_the_old_one(data_root, monkeypatch, dataset, case):
    from neurodecode.data.dataset import Dataset

    kwargs, expected = _BEFORE_ONE_PATH[(dataset, case)]
    calls = []
    real_load = Dataset.load
    monkeypatch.setattr(Dataset, "load", lambda self, *a, **k: calls.append(self.name) or real_load(self, *a, **k))
    data = {"kalunga": load_kalunga2016, "muse": load_muse_p300}[dataset](progress=False, **kwargs)
    assert calls == [{"kalunga": KALUNGA, "muse": MUSE}[dataset]]  # through the generic path, once
    assert _digests(data) == expected


def test_the_views_give_the_loaders_epochs_in_microvolts_and_moabb_runs(data_root, kalunga):
    from neurodecode.data.datasets.kalunga2016 import Kalunga2016

    view = Kalunga2016().load([1], fmin=None, fmax=None)
    ref = kalunga.select(subject=1)
    assert view.info.unit == "uV" and ref.info.unit == "SI"
    np.testing.assert_array_equal(view.X, ref.X * 1e6)
    assert view.labels.tolist() == ref.labels.tolist()
    # The view follows MOABB (two runs of session "0"); load_kalunga2016 keeps its two sessions.
    assert view.metadata["run"].tolist() == ref.metadata["session"].tolist()
    assert set(view.metadata["session"]) == {"0"} and set(ref.metadata["run"]) == {"0"}


def test_dataset_load_filter_method_and_unit_are_honoured_and_checked(data_root):
    from neurodecode.data.datasets.kalunga2016 import Kalunga2016

    view = Kalunga2016()
    fir = view.load([1], fmin=5.0, fmax=45.0, filter_method="fir", unit="SI", progress=False)
    iir = view.load([1], fmin=5.0, fmax=45.0, filter_method="iir", unit="SI", progress=False)
    assert fir.info.unit == iir.info.unit == "SI" and fir.shape == iir.shape
    # Two filters of the same band: close trial by trial, yet not the same samples.
    assert not np.array_equal(fir.X, iir.X)
    assert np.corrcoef(fir.X.ravel(), iir.X.ravel())[0, 1] > 0.9
    with pytest.raises(InvalidDataError, match="filter_method must be 'iir' or 'fir', got 'fft'"):
        view.load([1], filter_method="fft")
    with pytest.raises(InvalidDataError, match=r"unit must be one of \['uV', 'SI'\] for eeg, got 'mV'"):
        view.load([1], unit="mV")


def test_a_listed_subject_with_a_missing_file_is_named_by_the_view(data_root, tmp_path, monkeypatch, isolated_cache):
    # The generic selection accepts a subject the card lists though one of its files is absent, so that the
    # missing file is named and the others load (it used to say only "not present").
    from neurodecode.data.datasets.muse_p300 import MuseP300

    card = get_card(MUSE)
    runs = [f.path for f in card.files if f.path.startswith("visual/P300/subject2/")]
    _mirror(card, tmp_path, runs[:2])
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))
    view = MuseP300()
    assert view.subjects() == () and 2 in view.listed_subjects()
    with pytest.raises(PartialLoadError) as err:
        view.load(2, progress=False)
    assert list(err.value.failures) == [runs[2]] and isinstance(err.value.failures[runs[2]], DataNotFoundError)
    assert err.value.loaded.metadata["run"].unique().tolist() == ["0", "1"]
    with pytest.raises(EmptySelectionError, match=r"subject\(s\) \[4\] not present"):
        view.load(4)


def test_a_muse_run_without_stimuli_is_a_failure_not_skipped(data_root, monkeypatch):
    # Dataset.load skips a recording holding none of the classes (a run of another task); every Muse run has
    # stimuli, so one without any is damaged and must be reported, as the old loader's epoching did.
    from neurodecode.data.datasets import muse_p300

    real = muse_p300.read_muse_csv

    def without_stimuli(path, **kwargs):
        raw, events = real(path, **kwargs)
        return raw, events[:0] if str(path).endswith(MUSE_S3_RUN0) else events

    monkeypatch.setattr(muse_p300, "read_muse_csv", without_stimuli)
    with pytest.raises(PartialLoadError) as err:
        load_muse_p300(3, progress=False)
    assert list(err.value.failures) == [MUSE_S3_RUN0]
    assert "none of the stimulus markers" in str(err.value.failures[MUSE_S3_RUN0])
    assert err.value.loaded.metadata["run"].unique().tolist() == ["1", "2"]


def test_a_kalunga_events_file_without_cues_is_refused(tmp_path):
    import mne

    from neurodecode.data.datasets.kalunga2016 import _read_events

    raw = mne.io.RawArray(np.zeros((1, 1000)), mne.create_info(["Oz"], 256.0, "eeg"), verbose="error")
    path = tmp_path / "record-eve.fif"
    mne.write_events(path, np.array([[100, 0, 9], [300, 0, 7]]), verbose="error")
    with pytest.raises(InvalidDataError, match=r"none of the cue codes .* among its 2 event\(s\)"):
        _read_events(path, raw)
