"""The one data container: views not copies, metadata, selection, MNE round trip, validation."""

import numpy as np
import pandas as pd
import pytest

from neurodecode.data import (DecodingData, EmptySelectionError, InvalidDataError, SignalInfo,
                              load_recording)


def make(n=6, n_ch=3, n_t=20, subject=1, sfreq=100.0, classes=("a", "b"), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_ch, n_t))
    y = np.arange(n) % len(classes)
    meta = pd.DataFrame({"subject": subject, "session": "0", "run": [str(i // 3) for i in range(n)],
                         "onset": np.arange(n) * 2.0, "dataset": "toy"})
    info = SignalInfo(sfreq=sfreq, ch_names=[f"C{i}" for i in range(n_ch)], ch_types=["eeg"] * n_ch,
                      modality="eeg", class_names=classes)
    return DecodingData(X, y, meta, info)


def test_X_y_groups_are_views_not_copies():
    data = make()
    X = data._X
    assert data.X is X
    assert np.shares_memory(data.X, X) and np.shares_memory(data.y, data._y)
    assert np.shares_memory(data.groups("subject"), data.metadata["subject"].to_numpy())
    assert data.groups(["subject", "run"]).tolist() == ["1/0"] * 3 + ["1/1"] * 3


def test_select_and_index():
    data = make(n=8)
    sub = data.select(run="1")
    assert len(sub) == 3 and set(sub.metadata["run"]) == {"1"}
    assert data.select(classes=["b"]).labels.tolist() == ["b"] * 4
    assert len(data[np.array([True, False] * 4)]) == 4
    with pytest.raises(EmptySelectionError, match="no trial matches"):
        data.select(run="9")
    with pytest.raises(EmptySelectionError, match="unknown class name.*'zzz'.*available"):
        data.select(classes=["zzz"])
    with pytest.raises(InvalidDataError, match="no metadata column 'site'"):
        data.select(site="x")


def test_concatenate_merges_class_names_and_checks_rates():
    a = make(classes=("a", "b"))
    b = make(classes=("b", "c"), subject=2)
    both = DecodingData.concatenate([a, b])
    assert both.info.class_names == ("a", "b", "c")
    assert both.labels.tolist() == a.labels.tolist() + b.labels.tolist()
    with pytest.raises(InvalidDataError, match=r"100.0 Hz and 160.0 Hz"):
        DecodingData.concatenate([a, make(sfreq=160.0)])
    with pytest.raises(InvalidDataError, match="different channels"):
        DecodingData.concatenate([a, make(n_ch=4)])


@pytest.mark.parametrize("bad, message", [
    (np.nan, "NaN or infinite values in 1 trial"),
    (np.inf, "NaN or infinite values in 1 trial"),
])
def test_non_finite_rejected(bad, message):
    data = make()
    X = data.X.copy()
    X[2, 1, 5] = bad
    with pytest.raises(InvalidDataError, match=message):
        DecodingData(X, data.y, data.metadata, data.info)


def test_shape_and_metadata_validation():
    data = make()
    with pytest.raises(InvalidDataError, match=r"y must have shape \(6,\)"):
        DecodingData(data.X, data.y[:-1], data.metadata, data.info)
    with pytest.raises(InvalidDataError, match="lacks the column"):
        DecodingData(data.X, data.y, data.metadata.drop(columns="onset"), data.info)
    with pytest.raises(InvalidDataError, match="X has 3 channels but info names 4"):
        DecodingData(data.X, data.y, data.metadata,
                     SignalInfo(100.0, list("abcd"), ["eeg"] * 4, "eeg", class_names=("a", "b")))
    with pytest.raises(InvalidDataError, match="labels must lie in 0..1"):
        DecodingData(data.X, data.y + 1, data.metadata, data.info)
    with pytest.raises(InvalidDataError, match=r"got \(6,\)"):
        DecodingData(np.zeros(6), data.y, data.metadata, data.info)


def test_ragged_trials():
    info = SignalInfo(0.5, ["r0", "r1"], ["misc", "misc"], "fmri", class_names=("c", "d"))
    meta = pd.DataFrame({"subject": [1, 2, 3], "session": "0", "run": "0", "onset": 0.0, "dataset": "toy"})
    data = DecodingData([np.ones((2, 5)), np.ones((2, 7)), np.ones((2, 5))], np.array([0, 1, 0]), meta, info)
    assert data.X.dtype == object and data.shape == (3, 2, None)
    assert [t.shape[1] for t in data.select(subject=[2, 3]).X] == [7, 5]
    both = DecodingData.concatenate([data, data])
    assert len(both) == 6 and both.X[1].shape == (2, 7)
    with pytest.raises(InvalidDataError, match="one n_channels"):
        DecodingData([np.ones((2, 5)), np.ones((3, 7)), np.ones((2, 5))], np.array([0, 1, 0]), meta, info)
    with pytest.raises(InvalidDataError, match="only .* converts to Epochs"):
        data.to_epochs()


def test_epochs_round_trip_keeps_everything():
    data = make(n=6)
    epochs = data.to_epochs()
    assert epochs.get_data().shape == data.shape
    assert set(epochs.event_id) == {"a", "b"}
    back = DecodingData.from_epochs(epochs)
    np.testing.assert_array_equal(back.X, data.X)
    assert back.labels.tolist() == data.labels.tolist()
    pd.testing.assert_frame_equal(back.metadata[list(data.metadata.columns)], data.metadata)
    assert back.info.ch_names == data.info.ch_names and back.info.sfreq == data.info.sfreq


def test_real_meg_round_trip(dataset_dir, isolated_cache):
    path = dataset_dir("meg_elekta_triux_3ch_mne_testing") / "test_elekta_3ch_raw.fif"
    data = load_recording(path, tmin=-0.1, tmax=0.4, dataset="triux")
    epochs = data.to_epochs()
    assert epochs.get_channel_types() == ["mag", "grad", "grad"]
    assert epochs.tmin == pytest.approx(-0.1)
    back = DecodingData.from_epochs(epochs, dataset="triux")
    np.testing.assert_array_equal(back.X, data.X)
    assert back.class_counts() == data.class_counts()
    assert back.info.modality == "meg" and back.info.tmin == pytest.approx(-0.1)


def test_microvolt_data_convert_to_volts_for_mne():
    data = make()
    uv = DecodingData(data.X, data.y, data.metadata, SignalInfo(**{**data.info.__dict__, "unit": "uV"}))
    np.testing.assert_allclose(uv.to_epochs().get_data(), data.X * 1e-6)
    with pytest.raises(InvalidDataError, match="unit 'mV' is not one of"):
        SignalInfo(100.0, ["a"], ["eeg"], "eeg", unit="mV")
