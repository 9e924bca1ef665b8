"""BandPower: hand-computed powers of sinusoids, scipy's Welch, feature order, errors, real eegmmidb."""

import numpy as np
import pytest
import scipy.signal
from sklearn.base import clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import StratifiedKFold, cross_val_score

from neurodecode.transforms.spectral import DEFAULT_BANDS, BandPower

SFREQ = 160.0
N_TIMES = 481
TIMES = np.arange(N_TIMES) / SFREQ


def _sinusoids(amplitudes_freqs, n_trials=3, seed=0):
    """Trials whose channel c is sum of A sin(2 pi f t + phase) over that channel's (A, f) list."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n_trials, len(amplitudes_freqs), N_TIMES))
    for trial in range(n_trials):
        for channel, parts in enumerate(amplitudes_freqs):
            for amplitude, freq in parts:
                X[trial, channel] += amplitude * np.sin(2 * np.pi * freq * TIMES + rng.uniform(0, 2 * np.pi))
    return X


def test_welch_power_of_a_sinusoid_is_half_its_squared_amplitude():
    X = _sinusoids([[(3.0, 10.0)], [(2.0, 20.0)], [(1.5, 6.0), (0.5, 25.0)]])
    power = BandPower(sfreq=SFREQ, log=False).fit(X).transform(X).reshape(3, 3, 3)  # trials, bands, channels
    expected = np.array([[0.0, 0.0, 1.5 ** 2 / 2],          # theta (4-8)
                         [3.0 ** 2 / 2, 0.0, 0.0],          # alpha (8-13)
                         [0.0, 2.0 ** 2 / 2, 0.5 ** 2 / 2]])  # beta (13-30)
    np.testing.assert_allclose(power, np.broadcast_to(expected, power.shape), rtol=1e-9, atol=1e-9)


def test_multitaper_power_of_a_sinusoid_is_close_to_half_its_squared_amplitude():
    X = _sinusoids([[(3.0, 10.0)], [(2.0, 20.0)]])
    power = BandPower(sfreq=SFREQ, method="multitaper", log=False).fit(X).transform(X).reshape(3, 3, 2)
    np.testing.assert_allclose(power[:, 1, 0], 4.5, rtol=0.01)
    np.testing.assert_allclose(power[:, 2, 1], 2.0, rtol=0.01)
    assert (power[:, 0] < 0.01).all() and power[:, 2, 0].max() < 0.01 and power[:, 1, 1].max() < 0.01


def test_welch_equals_scipy_on_noise():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 5, N_TIMES))
    bands = {"a": (4.0, 8.0), "b": (8.5, 21.0)}
    ours = BandPower(bands=bands, sfreq=SFREQ).fit(X).transform(X)
    freqs, psd = scipy.signal.welch(X, fs=SFREQ, window="hann", nperseg=160, noverlap=80, detrend="constant")
    df = freqs[1] - freqs[0]
    hand = np.concatenate([psd[..., (freqs >= lo) & (freqs <= hi)].sum(-1) * df for lo, hi in bands.values()], axis=1)
    np.testing.assert_allclose(ours, np.log(hand), rtol=1e-10)


def test_log_and_relative():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((3, 4, N_TIMES))
    raw = BandPower(sfreq=SFREQ, log=False).fit(X).transform(X)
    np.testing.assert_allclose(BandPower(sfreq=SFREQ).fit(X).transform(X), np.log(raw))
    # A pure alpha sinusoid holds all the power of the 4-30 Hz span.
    S = _sinusoids([[(1.0, 10.0)]])
    relative = BandPower(sfreq=SFREQ, log=False, relative=True).fit(S).transform(S)
    np.testing.assert_allclose(relative[:, 1], 1.0, rtol=1e-9)
    assert (relative[:, [0, 2]] < 1e-9).all()


def test_feature_order_is_band_major():
    X = _sinusoids([[(0.1, 20.0)], [(5.0, 10.0)], [(0.1, 20.0)]])
    est = BandPower(sfreq=SFREQ).fit(X)
    features = est.transform(X)
    names = list(est.get_feature_names_out(["Fz", "C3", "C4"]))
    assert names == [f"{band}_{ch}" for band in DEFAULT_BANDS for ch in ["Fz", "C3", "C4"]]
    assert np.argmax(features[0]) == names.index("alpha_C3")


def test_errors_are_clear():
    X = np.random.default_rng(3).standard_normal((2, 3, N_TIMES))
    with pytest.raises(ValueError, match="sfreq is None and X is a plain array: pass sfreq=... .* or a DecodingData"):
        BandPower().fit(X)
    with pytest.raises(ValueError, match="Nyquist"):
        BandPower(sfreq=SFREQ, bands={"gamma": (30, 90)}).fit(X)
    with pytest.raises(ValueError, match="method must be"):
        BandPower(sfreq=SFREQ, method="fft").fit(X)
    with pytest.raises(ValueError, match=r"shape \(n_trials, n_channels, n_times\); got 2-D shape \(3, 481\)"):
        BandPower(sfreq=SFREQ).fit(X[0])
    bad = X.copy()
    bad[1, 0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values in 1 trial"):
        BandPower(sfreq=SFREQ).fit(bad)
    est = BandPower(sfreq=SFREQ)
    with pytest.raises(NotFittedError):
        est.transform(X)
    est.fit(X)
    with pytest.raises(ValueError, match="X has 2 channels but the estimator was fitted on 3"):
        est.transform(X[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        est.transform(bad)
    flat = X.copy()
    flat[0, 1] = 0.0
    with pytest.raises(ValueError, match="zero power.*trial 0.*channel 1"):
        est.transform(flat)


def test_parameters_are_stored_unchanged():
    bands = {"mu": (8, 12)}
    est = BandPower(bands=bands, sfreq=SFREQ, method="multitaper", relative=True)
    assert est.bands is bands and clone(est).get_params() == est.get_params()


@pytest.mark.slow
def test_real_eegmmidb_band_power(eegmmidb_two_subjects):
    data = eegmmidb_two_subjects
    assert data.info.sfreq == SFREQ
    est = BandPower(bands={"mu": (8, 13), "beta": (13, 30)}, sfreq=data.info.sfreq).fit(data.X)
    features = est.transform(data.X)
    assert features.shape == (len(data.X), 2 * 64) and np.isfinite(features).all()
    # µV input: log power of 8-32 Hz filtered EEG lies around log(1..1000 µV²), not at log(1e-12 V²).
    assert -5 < np.median(features) < 10
    hand = np.log(scipy.signal.welch(data.X[:2], fs=SFREQ, window="hann", nperseg=160, noverlap=80)[1][..., 8:14]
                  .sum(-1))
    np.testing.assert_allclose(features[:2, :64], hand, rtol=1e-10)
    # Per-subject 5-fold cross-validation of LDA on the features (band power is per trial, so
    # computing it before the split leaks nothing).
    groups = data.metadata["subject"].to_numpy()
    scores = []
    for subject in (1, 2):
        mask = groups == subject
        cv = StratifiedKFold(5, shuffle=True, random_state=42)
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        scores.append(cross_val_score(lda, features[mask], data.y[mask], cv=cv, scoring="roc_auc").mean())
    assert np.mean(scores) > 0.6, scores
