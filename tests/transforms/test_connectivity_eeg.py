"""EEGConnectivity: equal to mne-connectivity, hand-computed cases, output shapes, errors, real eegmmidb."""

import warnings

import numpy as np
import pandas as pd
import pytest
from mne_connectivity import spectral_connectivity_epochs, spectral_connectivity_time
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from neurodecode.data import DecodingData, SignalInfo
from neurodecode.transforms import bind_signal_info
from neurodecode.transforms.connectivity_eeg import METHODS, EEGConnectivity

SFREQ = 160.0
N_TIMES = 481
TIMES = np.arange(N_TIMES) / SFREQ


def _mixed_noise(n_trials=3, n_channels=6, seed=0):
    """Noise channels that share sources with random lags, so every measure is away from 0 and 1."""
    rng = np.random.default_rng(seed)
    sources = rng.standard_normal((n_trials, 3, N_TIMES + 10))
    X = np.zeros((n_trials, n_channels, N_TIMES))
    for c in range(n_channels):
        for s in range(3):
            lag = rng.integers(0, 10)
            X[:, c] += rng.normal() * sources[:, s, lag:lag + N_TIMES]
    return X + 0.5 * rng.standard_normal(X.shape)


def _mne_time(X, est):
    """mne-connectivity's per-trial matrices, averaged over each band's frequencies."""
    con = spectral_connectivity_time(X, freqs=est.freqs_, method=est.method, sfreq=SFREQ, mode=est.mode,
                                     n_cycles=est.n_cycles, verbose="error")
    data = con.get_data().reshape(X.shape[0], X.shape[1], X.shape[1], -1)
    return np.stack([data[..., (est.freqs_ >= lo) & (est.freqs_ <= hi)].mean(-1) for lo, hi in est.bands_.values()], 1)


@pytest.mark.parametrize("mode", ["cwt_morlet", "multitaper"])
@pytest.mark.parametrize("method", METHODS)
def test_equals_mne_connectivity_time(method, mode):
    X = _mixed_noise()
    est = EEGConnectivity(method=method, sfreq=SFREQ, output="matrix", mode=mode).fit(X)
    ours = est.transform(X)
    ref = _mne_time(X, est)
    rows, cols = np.tril_indices(X.shape[1], k=-1)  # where mne-connectivity writes its values
    assert np.abs(ref[:, :, rows, cols]).max() > 0.1
    np.testing.assert_allclose(ours[:, :, rows, cols], ref[:, :, rows, cols], rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_fourier_mode_equals_mne_connectivity_epochs_over_segments(method):
    X = _mixed_noise(n_trials=2)
    est = EEGConnectivity(method=method, sfreq=SFREQ, output="matrix", mode="fourier").fit(X)
    ours = est.transform(X)
    rows, cols = np.tril_indices(X.shape[1], k=-1)
    for trial, x in enumerate(X):
        segments = np.stack([x[:, s:s + 160] for s in range(0, N_TIMES - 160 + 1, 80)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mne-connectivity warns that 4 Hz is < 5 cycles of 1 s
            con = spectral_connectivity_epochs(segments, method=method, sfreq=SFREQ, mode="fourier",
                                               fmin=0, fmax=80, verbose="error")
        freqs = np.asarray(con.freqs)
        data = con.get_data().reshape(x.shape[0], x.shape[0], -1)
        ref = np.stack([data[..., (freqs >= lo) & (freqs <= hi)].mean(-1) for lo, hi in est.bands_.values()])
        np.testing.assert_allclose(ours[trial][:, rows, cols], ref[:, rows, cols], rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode", ["cwt_morlet", "multitaper", "fourier"])
def test_identical_and_phase_shifted_sinusoids(mode):
    rng = np.random.default_rng(4)
    phase_lag = np.pi / 4
    X = np.zeros((4, 4, N_TIMES))
    for trial, phase in enumerate(rng.uniform(0, 2 * np.pi, 4)):
        X[trial, 0] = np.sin(2 * np.pi * 10 * TIMES + phase)
        X[trial, 1] = X[trial, 0]
        X[trial, 2] = np.sin(2 * np.pi * 10 * TIMES + phase - phase_lag)  # lags channel 0
        X[trial, 3] = rng.standard_normal(N_TIMES)
    bands = {"alpha": (9, 11)}
    conn = {m: EEGConnectivity(method=m, bands=bands, sfreq=SFREQ, output="matrix", mode=mode).fit(X).transform(X)[:, 0]
            for m in METHODS}
    # Identical channels: coherence and PLV 1, no imaginary part, no lag (wPLI's 0/0 reads 0).
    np.testing.assert_allclose(conn["coh"][:, 0, 1], 1.0, atol=1e-12)
    np.testing.assert_allclose(conn["plv"][:, 0, 1], 1.0, atol=1e-12)
    np.testing.assert_allclose(conn["imcoh"][:, 0, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(conn["wpli"][:, 0, 1], 0.0, atol=1e-12)
    # A constant lag phi: coherence 1, imcoh sin(phi) (sign: which channel leads), wPLI 1.
    np.testing.assert_allclose(conn["coh"][:, 0, 2], 1.0, atol=1e-3)
    np.testing.assert_allclose(conn["imcoh"][:, 0, 2], np.sin(phase_lag), atol=2e-3)
    np.testing.assert_allclose(conn["imcoh"][:, 2, 0], -np.sin(phase_lag), atol=2e-3)
    np.testing.assert_allclose(conn["plv"][:, 0, 2], 1.0, atol=1e-3)
    np.testing.assert_allclose(conn["wpli"][:, 0, 2], 1.0, atol=1e-9)
    for m in METHODS:
        np.testing.assert_array_equal(np.diagonal(conn[m], axis1=-2, axis2=-1), 0.0)
        sign = -1 if m == "imcoh" else 1
        np.testing.assert_allclose(conn[m], sign * np.swapaxes(conn[m], -1, -2), atol=1e-15)


def test_independent_noise_is_far_below_coupled_channels():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((10, 8, N_TIMES))
    rows, cols = np.triu_indices(8, k=1)
    for method in METHODS:
        est = EEGConnectivity(method=method, bands={"beta": (13, 30)}, sfreq=SFREQ, output="matrix")
        conn = est.fit(X).transform(X)
        values = np.abs(conn[:, 0, rows, cols])
        # 3 s of white noise leaves a small-sample bias, not coupling: far below the 1 of the cases above.
        assert values.mean() < 0.3, (method, values.mean())


def test_output_shapes_and_consistency():
    X = _mixed_noise(n_trials=3, n_channels=5)
    kwargs = dict(method="imcoh", sfreq=SFREQ)
    matrix = EEGConnectivity(output="matrix", **kwargs).fit(X).transform(X)
    strength_est = EEGConnectivity(output="node_strength", **kwargs).fit(X)
    vector_est = EEGConnectivity(output="vector", **kwargs).fit(X)
    strength, vector = strength_est.transform(X), vector_est.transform(X)
    assert matrix.shape == (3, 3, 5, 5)
    assert strength.shape == (3, 3 * 5)
    assert vector.shape == (3, 3 * 10)
    np.testing.assert_allclose(strength.reshape(3, 3, 5), np.abs(matrix).sum(-1))
    rows, cols = np.triu_indices(5, k=1)
    np.testing.assert_allclose(vector.reshape(3, 3, 10), matrix[:, :, rows, cols])
    names = strength_est.get_feature_names_out()
    assert len(names) == 15 and names[0] == "theta_ch0" and names[5] == "alpha_ch0"
    names = vector_est.get_feature_names_out(["a", "b", "c", "d", "e"])
    assert len(names) == 30 and names[0] == "theta_a-b" and names[10] == "alpha_a-b"


def test_batches_do_not_change_values(monkeypatch):
    X = _mixed_noise(n_trials=5, n_channels=4)
    est = EEGConnectivity(method="wpli", sfreq=SFREQ, output="matrix").fit(X)
    whole = est.transform(X)
    from neurodecode.transforms import connectivity_eeg

    monkeypatch.setattr(connectivity_eeg, "_BATCH_COEFFICIENTS", 1)  # one trial per batch
    np.testing.assert_array_equal(est.transform(X), whole)


def test_errors_are_clear():
    X = _mixed_noise(n_trials=2, n_channels=3)
    with pytest.raises(ValueError, match="sfreq is None and X is a plain array: pass sfreq=... .* or a DecodingData"):
        EEGConnectivity().fit(X)
    with pytest.raises(ValueError, match=r"band 'high' = \(30, 90\) Hz exceeds the Nyquist frequency 80 Hz"):
        EEGConnectivity(sfreq=SFREQ, bands={"high": (30, 90)}).fit(X)
    with pytest.raises(ValueError, match="method must be one of"):
        EEGConnectivity(method="pli", sfreq=SFREQ).fit(X)
    with pytest.raises(ValueError, match="output must be one of"):
        EEGConnectivity(output="graph", sfreq=SFREQ).fit(X)
    with pytest.raises(ValueError, match=r"shape \(n_trials, n_channels, n_times\); got 2-D shape \(3, 481\)"):
        EEGConnectivity(sfreq=SFREQ).fit(X[0])
    with pytest.raises(ValueError, match="at least 2 channels"):
        EEGConnectivity(sfreq=SFREQ).fit(X[:, :1])
    bad = X.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        EEGConnectivity(sfreq=SFREQ).fit(bad)
    est = EEGConnectivity(sfreq=SFREQ)
    with pytest.raises(NotFittedError):
        est.transform(X)
    est.fit(X)
    with pytest.raises(ValueError, match="X has 4 channels but the estimator was fitted on 3"):
        est.transform(np.concatenate([X, X[:, :1]], axis=1))
    with pytest.raises(ValueError, match="NaN or infinite"):
        est.transform(bad)
    with pytest.raises(ValueError, match="at 4 Hz the 7-cycle cwt_morlet wavelet spans 445 samples, more than "
                                         "the trials' 400"):
        est.transform(X[:, :, :400])
    with pytest.raises(ValueError, match="at 4 Hz the 7-cycle multitaper wavelet spans 280 samples, more than "
                                         "the trials' 200"):
        EEGConnectivity(sfreq=SFREQ, mode="multitaper").fit(X).transform(X[:, :, :200])


def test_parameters_are_stored_unchanged():
    bands = [(8, 12), (18, 26)]
    est = EEGConnectivity(method="wpli", bands=bands, sfreq=SFREQ, output="vector", mode="multitaper")
    assert est.bands is bands and clone(est).get_params() == est.get_params()
    est.fit(_mixed_noise(n_trials=1, n_channels=2))
    assert list(est.bands_) == ["8-12", "18-26"]


@pytest.mark.slow
def test_real_eegmmidb_equals_mne_and_node_strength_decodes(eegmmidb_two_subjects):
    data = eegmmidb_two_subjects
    assert data.info.sfreq == SFREQ and data.X.shape[1:] == (64, N_TIMES)
    # Equality with mne-connectivity on a few real trials and channels (µV input).
    few = data.X[:3, :12]
    for method in ("coh", "wpli"):
        est = EEGConnectivity(method=method, sfreq=SFREQ, output="matrix").fit(few)
        rows, cols = np.tril_indices(12, k=-1)
        np.testing.assert_allclose(est.transform(few)[:, :, rows, cols], _mne_time(few, est)[:, :, rows, cols],
                                   rtol=0, atol=1e-10)
    # The HappyFeat feature on all 64 channels, mu and beta bands.
    est = EEGConnectivity(method="coh", bands={"mu": (8, 13), "beta": (13, 30)}, sfreq=SFREQ).fit(data.X)
    features = est.transform(data.X)
    assert features.shape == (len(data.X), 2 * 64) and np.isfinite(features).all()
    assert (features > 0).all() and (features < 63).all()  # 63 other channels, coherence in [0, 1]
    # Per-trial features leak nothing across folds, so they are computed once.
    groups = data.metadata["subject"].to_numpy()
    scores = []
    for subject in (1, 2):
        mask = groups == subject
        cv = StratifiedKFold(5, shuffle=True, random_state=42)
        model = make_pipeline(StandardScaler(), SVC(kernel="linear"))
        scores.append(cross_val_score(model, features[mask], data.y[mask], cv=cv, scoring="roc_auc").mean())
    assert np.mean(scores) > 0.55, scores


def test_moabb_loads_the_yaml_pipelines(tmp_path):
    import shutil
    from pathlib import Path

    from moabb.pipelines.utils import parse_pipelines_from_directory

    folder = Path(__file__).resolve().parents[2] / "pipelines"
    for name in ("CONN_SVM.yml", "BANDPOWER_LDA.yml"):  # others' files in pipelines/ are theirs to test
        shutil.copy(folder / name, tmp_path / name)
    configs = {c["name"]: c for c in parse_pipelines_from_directory(str(tmp_path))}
    assert set(configs) == {"CONN+SVM", "BandPower+LDA"}
    assert "LeftRightImagery" in configs["CONN+SVM"]["paradigms"]
    X = _mixed_noise(n_trials=8, n_channels=4)
    y = np.repeat([0, 1], 4)
    info = SignalInfo(SFREQ, ("C3", "C4", "Cz", "Pz"), ("eeg",) * 4, "eeg", class_names=("left", "right"))
    meta = pd.DataFrame({"subject": 1, "session": "0", "run": "0", "onset": np.arange(8) * 4.0, "dataset": "noise"})
    data = DecodingData(X, y, meta, info)
    for config in configs.values():
        pipeline = config["pipeline"]
        # No rate pinned in the file: it comes from the data, or is bound for plain arrays.
        assert pipeline.steps[0][1].sfreq is None
        with pytest.raises(ValueError, match="sfreq is None and X is a plain array"):
            clone(pipeline).fit(X, y)
        predicted = clone(pipeline).fit(data, data.y).predict(data)
        assert predicted.shape == (8,)
        bound = bind_signal_info(pipeline, info)
        assert bound.steps[0][1].sfreq == SFREQ and pipeline.steps[0][1].sfreq is None
        np.testing.assert_array_equal(bound.fit(X, y).predict(X), predicted)
