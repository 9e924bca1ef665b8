"""Generic recordings (any format MNE reads, EEG and MEG): events, formats, damaged input, batches."""

import shutil
import warnings

import mne
import numpy as np
import pytest

from neurodecode.data import (CorruptFileError, DecodingData, EmptySelectionError, InvalidDataError,
                              PartialLoadError, UnknownEventError, find_events, get_card, load_many,
                              load_recording, read_raw)
from neurodecode.data.io.recordings import epochs_to_data, select_event_id

TRIUX = ("meg_elekta_triux_3ch_mne_testing", "test_elekta_3ch_raw.fif")
EEGMMIDB_R04 = "MNE-eegbci-data/files/eegmmidb/1.0.0/S001/S001R04.edf"
# Trigger values of the TRIUX file and how often each occurs (MNE's own test suite finds the same).
TRIUX_CODES = {1: 26, 2: 25, 4: 18, 8: 16, 16: 19, 32: 22, 64: 17, 128: 19}


@pytest.fixture
def triux(data_root, isolated_cache):
    return get_card(TRIUX[0]).path(TRIUX[1])


@pytest.fixture
def edf_path(data_root, isolated_cache):
    """Motor imagery run 4 of eegmmidb subject 1: 64 EEG channels, 160 Hz, 125 s, T0/T1/T2 annotations."""
    return get_card("eegmmidb").path(EEGMMIDB_R04)


@pytest.fixture
def eeg_raw(edf_path):
    """The first 40 s of that run: 10 annotations (T0 x5, T2 x3, T1 x2)."""
    return read_raw(edf_path).crop(0, 40, include_tmax=False)


# -- MEG: the real TRIUX recording ------------------------------------------------------------
def test_triux_meg_keeps_channel_types_and_triggers(triux):
    raw = read_raw(triux)
    events, event_id = find_events(raw)
    codes, counts = np.unique(events[:, 2], return_counts=True)
    assert dict(zip(codes.tolist(), counts.tolist())) == TRIUX_CODES
    assert event_id == {str(c): c for c in TRIUX_CODES}

    data = load_recording(triux, tmin=-0.1, tmax=0.4)
    assert data.shape == (161, 3, 501)
    assert data.info.ch_names == ("MEG0111", "MEG2643", "MEG1622")
    assert data.info.ch_types == ("mag", "grad", "grad")
    assert data.info.modality == "meg" and data.info.sfreq == 1000.0 and data.info.tmin == pytest.approx(-0.1)
    # The last event (code 4, 162 ms before the end) has no room for its 0.4 s epoch.
    assert data.class_counts() == {**{str(c): n for c, n in TRIUX_CODES.items()}, "4": 17}
    # The first trigger is at sample 3483 of a recording that starts at sample 3000.
    assert data.metadata["onset"].iloc[0] == pytest.approx(0.483)
    # Field values in tesla (magnetometer) and T/m (gradiometers), not in fT or arbitrary units.
    peak = np.abs(data.X).max(axis=(0, 2))
    assert np.all((peak > 1e-12) & (peak < 1e-9)), peak


def test_triux_round_trips_through_mne_epochs(triux):
    data = load_recording(triux, tmin=-0.1, tmax=0.4, dataset="triux", subject="s1")
    epochs = data.to_epochs()
    assert epochs.get_channel_types() == ["mag", "grad", "grad"]
    assert len(epochs) == 161 and set(epochs.event_id) == {str(c) for c in TRIUX_CODES}
    back = DecodingData.from_epochs(epochs)
    np.testing.assert_array_equal(back.X, data.X)
    assert back.info == data.info
    assert back.labels.tolist() == data.labels.tolist()
    assert back.metadata[["subject", "onset", "dataset"]].equals(data.metadata[["subject", "onset", "dataset"]])


def test_event_selection_by_name_and_mapping(triux):
    two = load_recording(triux, events=["1", "128"], tmin=-0.1, tmax=0.4)
    assert two.info.class_names == ("1", "128") and two.class_counts() == {"1": 26, "128": 19}

    renamed = load_recording(triux, events={"128": "high", "1": "low"}, tmin=-0.1, tmax=0.4)
    assert renamed.info.class_names == ("high", "low")
    assert renamed.class_counts() == {"high": 19, "low": 26}
    np.testing.assert_array_equal(renamed.select(classes=["low"]).X, two.select(classes=["1"]).X)


def test_stim_channel_by_name_gives_the_same_events(triux):
    assert load_recording(triux, stim_channel="STI101", tmin=0, tmax=0.1).class_counts() == \
        load_recording(triux, tmin=0, tmax=0.1).class_counts()


# -- EEG formats: write real data, read it back ----------------------------------------------
def _write(raw, folder, fmt):
    if fmt == "fif":
        path = folder / "run_raw.fif"
        raw.save(path, verbose="error")
        return path
    suffix = {"edf": ".edf", "bdf": ".bdf", "brainvision": ".vhdr", "eeglab": ".set"}[fmt]
    path = folder / f"run{suffix}"
    mne.export.export_raw(path, raw, fmt=fmt, verbose="error")
    return path


# Largest sample error in volts each encoding may add to these +-600 uV signals: EDF stores 16
# bits over each channel's range, BDF 24 bits; pybv's BrainVision, EEGLAB and FIF store float32.
# pybv writes annotations as BrainVision "Comment" markers, which MNE reads back as "Comment/<name>".
@pytest.mark.parametrize("fmt, atol, prefix", [("edf", 1e-8, ""), ("bdf", 1e-10, ""),
                                               ("brainvision", 1e-10, "Comment/"), ("fif", 1e-10, ""),
                                               ("eeglab", 1e-10, "")])
def test_formats_round_trip_with_annotation_events(eeg_raw, tmp_path, fmt, atol, prefix):
    found, available = find_events(eeg_raw)
    expected = epochs_to_data(eeg_raw, found, select_event_id(available, {"T1": "left", "T2": "right"}, where="x"),
                              tmin=0.0, tmax=2.0, dataset="eegmmidb", subject=1, class_names=["left", "right"])
    assert expected.shape == (5, 64, 321) and expected.class_counts() == {"left": 2, "right": 3}

    path = _write(eeg_raw, tmp_path, fmt)
    data = load_recording(path, events={f"{prefix}T1": "left", f"{prefix}T2": "right"}, tmin=0.0, tmax=2.0,
                          subject=1)
    assert data.shape == expected.shape and data.info.sfreq == 160.0
    assert data.info.ch_names == expected.info.ch_names and set(data.info.ch_types) == {"eeg"}
    assert data.labels.tolist() == expected.labels.tolist()
    np.testing.assert_allclose(data.metadata["onset"], expected.metadata["onset"], atol=1 / 160)
    np.testing.assert_allclose(data.X, expected.X, rtol=0, atol=atol)
    assert np.abs(data.X).max() > 1e-4  # the comparison is not between two near-zero arrays


def test_band_pass_is_applied_before_epoching(edf_path):
    raw = load_recording(edf_path, events=["T1", "T2"], tmin=0, tmax=4)
    filtered = load_recording(edf_path, events=["T1", "T2"], tmin=0, tmax=4, l_freq=8.0, h_freq=30.0)
    assert raw.shape == filtered.shape == (15, 64, 641)
    # Drifts and line noise removed: the trial means are near zero and the variance shrinks.
    assert np.abs(filtered.X.mean(axis=-1)).max() < 0.2 * np.abs(raw.X.mean(axis=-1)).max()
    assert filtered.X.std() < raw.X.std()


# -- damaged or unusable input ---------------------------------------------------------------
def _truncate(source, target, size):
    shutil.copy(source, target)
    with open(target, "r+b") as fh:
        fh.truncate(size)
    return target


def test_edf_cut_inside_its_header_is_corrupt(edf_path, tmp_path):
    bad = _truncate(edf_path, tmp_path / "cut.edf", 10_000)  # the header alone is 16 896 bytes
    with pytest.raises(CorruptFileError, match="truncated inside its header") as err:
        load_recording(bad)
    assert str(bad) in str(err.value)


def test_edf_cut_inside_its_data_is_corrupt(edf_path, tmp_path):
    # MNE alone would read the first half and only warn; the loader must refuse it.
    bad = _truncate(edf_path, tmp_path / "cut.edf", edf_path.stat().st_size // 2)
    with pytest.raises(CorruptFileError, match="is truncated: its header declares 125 records") as err:
        read_raw(bad)
    assert str(bad) in str(err.value)


def test_fif_of_garbage_bytes_is_corrupt(triux, tmp_path):
    bad = tmp_path / "garbage_raw.fif"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptFileError) as err:
        load_recording(bad)
    assert f"cannot read {bad}" in str(err.value)


def test_empty_file_is_corrupt(tmp_path):
    bad = tmp_path / "empty.edf"
    bad.touch()
    with pytest.raises(CorruptFileError, match="is empty") as err:
        load_recording(bad)
    assert str(bad) in str(err.value)


def test_nan_samples_are_refused_with_file_and_channel(eeg_raw, tmp_path):
    samples = eeg_raw.get_data()
    samples[5, 100:200] = np.nan  # a dropout in channel Fc4.
    path = tmp_path / "nan_raw.fif"
    mne.io.RawArray(samples, eeg_raw.info, verbose="error").save(path, verbose="error")
    with pytest.raises(InvalidDataError) as err:
        load_recording(path)
    assert str(path) in str(err.value) and "NaN" in str(err.value) and "['Fc4.']" in str(err.value)


def test_runs_at_different_rates_do_not_concatenate(eeg_raw, tmp_path):
    path_160 = tmp_path / "rate160_raw.fif"
    path_100 = tmp_path / "rate100_raw.fif"
    eeg_raw.save(path_160, verbose="error")
    eeg_raw.copy().resample(100.0, verbose="error").save(path_100, verbose="error")
    runs = [load_recording(p, events=["T0"], tmin=0, tmax=1) for p in (path_160, path_100)]
    assert [r.info.sfreq for r in runs] == [160.0, 100.0]
    with pytest.raises(InvalidDataError, match=r"160.0 Hz and 100.0 Hz") as err:
        DecodingData.concatenate(runs)
    assert "rate100_raw" in str(err.value)  # load_recording names the dataset after the file


def test_unknown_event_names_list_the_available_ones(edf_path):
    with pytest.raises(UnknownEventError) as err:
        load_recording(edf_path, events={"T1": "left", "left_hand": "left"})
    message = str(err.value)
    assert str(edf_path) in message and "['left_hand']" in message and "['T0', 'T1', 'T2']" in message


def test_empty_event_selection(edf_path):
    with pytest.raises(EmptySelectionError, match="no event selected") as err:
        load_recording(edf_path, events=[])
    assert str(edf_path) in str(err.value)


def test_recording_without_any_event(eeg_raw, tmp_path):
    path = tmp_path / "no_events_raw.fif"
    eeg_raw.copy().set_annotations(None).save(path, verbose="error")
    with pytest.raises(EmptySelectionError, match="no events") as err:
        load_recording(path)
    assert str(path) in str(err.value)


def test_epoch_window_outside_every_run_is_empty(edf_path):
    with pytest.raises(EmptySelectionError, match=r"every epoch \[200.0, 201.0\] s fell outside"):
        load_recording(edf_path, tmin=200.0, tmax=201.0)


@pytest.fixture
def three_runs(eeg_raw, tmp_path):
    """Two good FIF runs around a truncated one, as a batch would meet them."""
    good_a, good_b = tmp_path / "a_raw.fif", tmp_path / "c_raw.fif"
    eeg_raw.save(good_a, verbose="error")
    eeg_raw.save(good_b, verbose="error")
    bad = _truncate(good_a, tmp_path / "b_raw.fif", good_a.stat().st_size // 3)
    return [good_a, bad, good_b]


def _load_run(path):
    return load_recording(path, events={"T1": "left", "T2": "right"}, tmin=0, tmax=2, subject=path.stem)


def test_load_many_reports_the_bad_file_and_keeps_the_others(three_runs):
    good_a, bad, good_b = three_runs
    with pytest.raises(PartialLoadError) as err:
        load_many(three_runs, _load_run)
    assert list(err.value.failures) == [str(bad)]
    assert isinstance(err.value.failures[str(bad)], CorruptFileError)
    assert f"{bad}: CorruptFileError" in str(err.value) and "10 trials from the others" in str(err.value)
    assert err.value.loaded.metadata["subject"].unique().tolist() == ["a_raw", "c_raw"]

    with pytest.warns(UserWarning, match="1 file.s. failed") as caught:
        kept = load_many(three_runs, _load_run, on_error="skip")
    assert str(bad) in str(caught[0].message)
    assert len(kept) == 10 and kept.class_counts() == {"left": 4, "right": 6}


def test_load_many_with_every_file_bad_raises_even_when_skipping(tmp_path):
    paths = [tmp_path / "x.edf", tmp_path / "y.edf"]
    for p in paths:
        p.touch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing loaded: an error, never a warning and None
        with pytest.raises(PartialLoadError, match="nothing loaded") as err:
            load_many(paths, load_recording, on_error="skip")
    assert set(err.value.failures) == {str(p) for p in paths} and err.value.loaded is None
