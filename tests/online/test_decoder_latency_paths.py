"""The streaming decoder's fast paths: whitened running sums, one eigendecomposition, mixed precision.

Every path must give the labels of the fitted pipeline's own ``predict`` on the same filtered
windows. Timings are never asserted here (``benchmarks/online_latency.py`` measures them).
"""

import numpy as np
import pytest
from pyriemann.estimation import Covariances
from pyriemann.tangentspace import TangentSpace
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from neurodecode.data.stream import CausalBandpass
from neurodecode.online import StreamingDecoder, decode_stream
from neurodecode.online.decoder import _TangentDecider
from neurodecode.transforms import AugmentedCovariance

SFREQ = 160.0


def offline_labels(pipe, signal, n_window, n_step, fmin=8.0, fmax=32.0):
    """``pipe.predict`` on the windows the decoder decides, filtered by the same causal filter."""
    x = CausalBandpass(SFREQ, fmin, fmax).process(signal)
    ends = np.arange(n_window, x.shape[1] + 1, n_step)
    return pipe.predict(np.stack([x[:, e - n_window:e] for e in ends]))


def synthetic(n_channels=8, n_classes=3, seconds=40, seed=0):
    """Signals whose spatial covariance switches between classes every second, with labels per window."""
    rng = np.random.default_rng(seed)
    mixing = [np.eye(n_channels) + 0.6 * rng.normal(size=(n_channels, n_channels)) for _ in range(n_classes)]
    blocks = [mixing[k % n_classes] @ rng.normal(size=(n_channels, int(SFREQ))) for k in range(seconds)]
    return np.concatenate(blocks, axis=1), np.arange(seconds) % n_classes


def fitted(first_step, signal, labels, classifier=None):
    """A pipeline fitted on the 1 s blocks of a (band-passed) synthetic signal."""
    x = CausalBandpass(SFREQ).process(signal)
    X = x.reshape(x.shape[0], -1, int(SFREQ)).transpose(1, 0, 2)
    pipe = make_pipeline(first_step, TangentSpace(metric={"mean": "logeuclid", "map": "riemann"}),
                         classifier or LogisticRegression(max_iter=500))
    return pipe.fit(X, labels)


@pytest.mark.parametrize("estimator", ["oas", "scm", "cov", "lwf"])
@pytest.mark.parametrize("precision", ["mixed", "float64"])
def test_whitened_sums_give_the_pipeline_labels(estimator, precision):
    signal, labels = synthetic()
    first = Covariances(estimator) if estimator == "cov" else AugmentedCovariance(2, 3, estimator)
    pipe = fitted(first, signal, labels)
    decoder = StreamingDecoder(pipe, sfreq=SFREQ, window_s=1.0, step_s=0.0625, precision=precision)
    decisions = decode_stream(decoder, signal, 7)  # chunks that do not align with the step
    assert decoder.mode_ == "incremental" and decoder._tangent is not None
    assert (decoder._tangent.linear is not None) == (precision == "mixed")
    np.testing.assert_array_equal([d.label for d in decisions], offline_labels(pipe, signal, 160, 10))
    # The whitened sums still describe the current window after hundreds of rank updates.
    moments, tangent = decoder._moments, decoder._tangent
    expected = tangent.W @ moments.covariance() @ tangent.W
    np.testing.assert_allclose(moments.whitened_covariance(tangent.Winv2), expected, rtol=0,
                               atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize("n_classes", [2, 3])
def test_every_float32_decision_redone_in_float64_gives_the_same_labels(monkeypatch, n_classes):
    signal, labels = synthetic(n_classes=n_classes, seconds=30)
    pipe = fitted(AugmentedCovariance(3, 2, "oas"), signal, labels)
    expected = offline_labels(pipe, signal, 160, 10)
    # An error bound so large that no float32 decision is trusted: the float64 retry path alone.
    monkeypatch.setattr(_TangentDecider, "_SAFETY", 1e12)
    decoder = StreamingDecoder(pipe, sfreq=SFREQ, window_s=1.0, step_s=0.0625)
    decisions = decode_stream(decoder, signal, 10)
    assert decoder.n_float64_retries_ == len(decisions) == len(expected)
    np.testing.assert_array_equal([d.label for d in decisions], expected)
    # With the real bound almost every decision is kept from float32 (same labels all the same).
    monkeypatch.undo()
    decisions = decode_stream(decoder, signal, 10)
    assert decoder.n_float64_retries_ < 0.1 * len(decisions)
    np.testing.assert_array_equal([d.label for d in decisions], expected)


def test_float32_error_bound_covers_the_measured_error():
    signal, labels = synthetic(seconds=30)
    pipe = fitted(AugmentedCovariance(3, 3, "oas"), signal, labels)
    decoder = StreamingDecoder(pipe, sfreq=SFREQ, window_s=1.0, step_s=0.5)
    decode_stream(decoder, signal, 80)
    tangent, moments = decoder._tangent, decoder._moments
    A = moments.whitened_covariance(tangent.Winv2)
    # The bound predict_mixed uses, recomputed here, against the float32 tangent matrix's true error.
    lam, U = np.linalg.eigh(A.astype(np.float32))
    lam, U = lam.astype(np.float64), U.astype(np.float64)
    L32 = (U * np.log(lam)) @ U.T
    E, F = A - (U * lam) @ U.T, U.T @ U - np.eye(len(A))
    bound = (np.linalg.norm(E) / lam[0]
             + np.linalg.norm(F) * (np.abs(np.log(lam)).max() + 1 + 0.5 * np.log(lam[-1] / lam[0])))
    error = np.linalg.norm(L32 - tangent.log64(A))
    assert 0 < error < bound


def test_other_classifiers_take_the_float64_path():
    signal, labels = synthetic(seconds=24)
    pipe = fitted(AugmentedCovariance(2, 2, "oas"), signal, labels, classifier=SVC(kernel="rbf"))
    decoder = StreamingDecoder(pipe, sfreq=SFREQ, window_s=1.0, step_s=0.25)
    decisions = decode_stream(decoder, signal, 40)
    assert decoder._tangent is not None and decoder._tangent.linear is None
    assert decoder.n_float64_retries_ == 0
    np.testing.assert_array_equal([d.label for d in decisions], offline_labels(pipe, signal, 160, 40))


def test_precision_is_checked():
    signal, labels = synthetic(seconds=6)
    pipe = fitted(Covariances("oas"), signal, labels)
    with pytest.raises(ValueError, match="precision"):
        StreamingDecoder(pipe, sfreq=SFREQ, precision="float32").reset()


@pytest.fixture(scope="module")
def eegmmidb_subject1(dataset_dir):
    from neurodecode.data import read_eegmmidb_run
    from neurodecode.data.registry import get_dataset
    from neurodecode.data.stream import sliding_windows

    dataset_dir("eegmmidb")
    train = sliding_windows(get_dataset("eegmmidb").streams([1])[:2], 1.0, 1.0)
    raw = read_eegmmidb_run(1, 12).get_data(picks="eeg")[:, :12 * 160] * 1e6
    return train, raw


@pytest.mark.slow
@pytest.mark.parametrize("order", [2, 3, 4])
def test_acm_orders_on_eegmmidb_give_the_pipeline_labels(eegmmidb_subject1, order):
    # The benchmark's setting: 64 channels, 160 Hz, lag 3, 1 s windows every 62.5 ms.
    train, raw = eegmmidb_subject1
    pipe = make_pipeline(AugmentedCovariance(order=order, lag=3, estimator="oas"),
                         TangentSpace(metric={"mean": "logeuclid", "map": "riemann"}),
                         LogisticRegression(max_iter=200)).fit(train.X, train.y)
    expected = offline_labels(pipe, raw, 160, 10)
    for precision in ("mixed", "float64"):
        decoder = StreamingDecoder(pipe, sfreq=SFREQ, window_s=1.0, step_s=0.0625, precision=precision)
        decisions = decode_stream(decoder, raw, 10)
        assert decoder._tangent is not None and decoder._tangent.W.shape == (64 * order,) * 2
        np.testing.assert_array_equal([d.label for d in decisions], expected)
        assert decoder.n_float64_retries_ <= 0.05 * len(decisions)
