"""Tokenizers: patch spectra, codebook usage, k-means and VQ codebooks (dead-code restarts), the torch
encoder used for pretraining targets, bag-of-tokens decoding, and the report on held-out real subjects."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from neurodecode.transforms.tokenizers import (KMeansTokenizer, VQTokenizer, codebook_usage, patch_spectra,
                                               patches)

SFREQ = 128.0


def _rhythms(n_trials, seed, n_chans=4, n_times=512):
    """Trials whose channels carry, patch by patch, either a 10 Hz or a 30 Hz rhythm (random phase and
    amplitude) in weak noise; returns the trials and, for each 64-sample patch, which rhythm it holds."""
    rng = np.random.default_rng(seed)
    t = np.arange(64) / SFREQ
    which = rng.integers(0, 2, (n_trials, n_chans, n_times // 64))
    freq = np.where(which == 0, 10.0, 30.0)
    phase = rng.uniform(0, 2 * np.pi, which.shape)
    amp = rng.uniform(2.0, 4.0, which.shape)
    waves = amp[..., None] * np.sin(2 * np.pi * freq[..., None] * t + phase[..., None])
    X = waves.reshape(n_trials, n_chans, n_times) + 0.2 * rng.standard_normal((n_trials, n_chans, n_times))
    return X, which


def test_patch_spectra_are_the_log_amplitude_of_the_windowed_fourier_transform_without_dc():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 64)) + 3.0
    expected = np.log(np.abs(np.fft.rfft((x - x.mean(1, keepdims=True)) * np.hanning(64), axis=1))[:, 1:] + 1e-6)
    np.testing.assert_allclose(patch_spectra(torch.from_numpy(x)).numpy(), expected, rtol=1e-4, atol=1e-4)
    X = rng.standard_normal((2, 3, 130))
    cut = patches(X, 64)
    assert cut.shape == (2, 3, 2, 64)
    np.testing.assert_array_equal(cut[1, 2, 1], X[1, 2, 64:128])
    with pytest.raises(ValueError, match="shorter than one patch"):
        patches(X[..., :10], 64)


def test_codebook_usage_counts_dead_codes_and_perplexity():
    assert codebook_usage(np.arange(8), 8) == {"perplexity": pytest.approx(8.0), "dead_codes": 0, "n_codes": 8}
    assert codebook_usage(np.zeros(10, int), 8) == {"perplexity": pytest.approx(1.0), "dead_codes": 7, "n_codes": 8}
    assert codebook_usage([0, 0, 1, 1], 4)["perplexity"] == pytest.approx(2.0)


@pytest.mark.parametrize("make", [lambda: KMeansTokenizer(8, 64),
                                  lambda: VQTokenizer(8, 64, max_epochs=15, batch_size=128, device="cpu")],
                         ids=["kmeans", "vq"])
def test_codes_separate_rhythms_and_torch_encoder_agrees(make):
    X, which = _rhythms(40, 0)
    tok = make().fit(X)
    codes = tok.transform(X)
    assert codes.shape == which.shape and codes.dtype == np.int64
    # A code is (almost) always one rhythm's: the codebook tells 10 Hz from 30 Hz patches.
    purity = sum(max(np.mean(which[codes == c] == 0), np.mean(which[codes == c] == 1)) * np.sum(codes == c)
                 for c in np.unique(codes)) / codes.size
    assert purity > 0.95
    # The module used for pretraining targets gives the same codes, from raw patches.
    raw = torch.from_numpy(patches(X, 64).astype(np.float32))
    np.testing.assert_array_equal(tok.torch_encoder()(raw).numpy(), codes)
    report = tok.codebook_report(_rhythms(10, 1)[0])  # held-out trials
    assert set(report) == {"perplexity", "dead_codes", "n_codes", "reconstruction_error"}
    assert 0 <= report["reconstruction_error"] < 0.9
    assert report["perplexity"] > 2.0


def test_vq_training_lowers_its_loss_and_restarts_dead_codes():
    X, _ = _rhythms(40, 2)
    restarted = VQTokenizer(32, 64, max_epochs=20, batch_size=128, restart_every=5, device="cpu").fit(X)
    frozen = VQTokenizer(32, 64, max_epochs=20, batch_size=128, restart_every=10_000, device="cpu").fit(X)
    losses = [h["train_loss"] for h in restarted.history_]
    assert losses[-1] < 0.7 * losses[0]
    assert restarted.restarts_ > 0 and frozen.restarts_ == 0
    used = {name: codebook_usage(t.transform(X), 32) for name, t in (("restarted", restarted), ("frozen", frozen))}
    assert used["restarted"]["dead_codes"] < used["frozen"]["dead_codes"]
    assert used["restarted"]["perplexity"] > used["frozen"]["perplexity"]


def test_bag_of_tokens_decodes_which_channels_carry_a_rhythm():
    rng = np.random.default_rng(3)
    y = np.arange(60) % 2
    X = rng.standard_normal((60, 4, 256))
    t = np.arange(256) / SFREQ
    X[y == 1, :2] += 3 * np.sin(2 * np.pi * 12 * t)  # class 1: a 12 Hz rhythm on channels 0-1
    tok = KMeansTokenizer(16, 64)

    counts = FunctionTransformer(lambda c: np.stack([np.concatenate([np.bincount(ch, minlength=16) for ch in trial])
                                                     for trial in c]))
    scores = cross_val_score(make_pipeline(tok, counts, LogisticRegression(max_iter=500)), X, y, cv=3)
    assert scores.mean() > 0.9


def test_mistakes_are_refused_in_one_line():
    X, _ = _rhythms(4, 0)
    with pytest.raises(ValueError, match="too few"):
        VQTokenizer(512, 64, device="cpu").fit(X)
    with pytest.raises(ValueError, match="cannot make"):
        KMeansTokenizer(512, 64).fit(X)
    tok = KMeansTokenizer(4, 64).fit(X)
    with pytest.raises(ValueError, match="channels"):
        tok.transform(X[:, :2])
    with pytest.raises(ValueError, match="at least 64 time samples"):
        tok.transform(X[..., :32])


@pytest.mark.slow
def test_real_eeg_codebooks_on_a_held_out_subject(eegmmidb_two_subjects):
    data = eegmmidb_two_subjects
    subject = data.groups("subject")
    train, held_out = data.X[subject == 1], data.X[subject == 2]
    for tok in (KMeansTokenizer(64, 32), VQTokenizer(64, 32, max_epochs=5, device="cpu")):
        tok.fit(train)
        report = tok.codebook_report(held_out)
        # The held-out subject's patches spread over the codebook, and the codes keep part of their spectra.
        assert report["perplexity"] > 16 and report["dead_codes"] < 32, report
        assert report["reconstruction_error"] < 0.9, report
