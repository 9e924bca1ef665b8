"""EEG tokenizers: single-channel temporal patches to discrete codes, as scikit-learn transformers.

A trial of shape (n_channels, n_times) is cut into non-overlapping patches of ``patch_size``
samples per channel; each patch becomes a spectrum (log amplitude of its Hann-windowed Fourier
transform, without the DC bin), standardised per frequency with statistics learned at fit, and
the spectrum becomes one code of a learned codebook. ``transform`` returns the codes as integers
of shape (n_trials, n_channels, n_patches).

* :class:`KMeansTokenizer`: the codebook is k-means over patch spectra (CPU, seconds).
* :class:`VQTokenizer`: patch spectrum -> MLP encoder -> cosine codebook with dead-code
  restarts -> MLP decoder back to the spectrum (a vector-quantised auto-encoder in the spirit of
  LaBraM's neural tokenizer and TFM-Tokenizer), trained by :class:`~neurodecode.training.Trainer`
  (bfloat16 and CUDA when available).

Both report how well the codebook is used and how much of the spectrum it keeps
(:meth:`codebook_report`: perplexity, dead codes, relative reconstruction error), and both give a
torch module (:meth:`torch_encoder`) mapping raw patches to codes on any device: the targets of
the foundation model's masked-code pretraining (:mod:`neurodecode.models.foundation`).

The codebook itself knows no montage (every channel's patches share it); the fitted transformer
still refuses another channel count, since the token array it returns must keep its shape for
the estimators that follow it.
"""

from __future__ import annotations

import copy
import numbers
import random

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._utils.checks import check_signal_info, check_signals
from ..training import Trainer, TrainConfig, predict_logits, resolve_device

__all__ = ["KMeansTokenizer", "PatchCodes", "VQTokenizer", "codebook_usage", "mean_loss", "patch_spectra", "patches"]

#: Added to Fourier amplitudes before the logarithm: a flat (zero) patch stays finite.
_AMPLITUDE_FLOOR = 1e-6


def patches(X, patch_size: int) -> np.ndarray:
    """Cut trials into non-overlapping single-channel patches (a trailing remainder is dropped).

    Parameters
    ----------
    X : ndarray, shape (n_trials, n_channels, n_times)
    patch_size : int

    Returns
    -------
    patches : ndarray, shape (n_trials, n_channels, n_patches, patch_size)
        A view of ``X`` when it is contiguous.
    """
    n_trials, n_chans, n_times = X.shape
    n_patches = n_times // patch_size
    if n_patches < 1:
        raise ValueError(f"trials of {n_times} samples are shorter than one patch of {patch_size} samples")
    return X[..., :n_patches * patch_size].reshape(n_trials, n_chans, n_patches, patch_size)


def patch_spectra(patch: torch.Tensor) -> torch.Tensor:
    """Log Fourier amplitude of each patch, Hann-windowed, without the DC bin.

    Parameters
    ----------
    patch : Tensor, shape (..., patch_size)

    Returns
    -------
    spectra : Tensor, shape (..., patch_size // 2), float32
    """
    patch = patch.float()
    window = torch.hann_window(patch.shape[-1], periodic=False, dtype=patch.dtype, device=patch.device)
    centred = patch - patch.mean(-1, keepdim=True)
    amplitude = torch.fft.rfft(centred * window, dim=-1).abs()[..., 1:]
    return torch.log(amplitude + _AMPLITUDE_FLOOR)


def codebook_usage(codes, n_codes: int) -> dict:
    """How evenly a codebook is used.

    Parameters
    ----------
    codes : array-like of int
    n_codes : int

    Returns
    -------
    dict
        ``perplexity`` (exp of the entropy of code frequencies: ``n_codes`` for a uniform use, 1
        when one code takes everything), ``dead_codes`` (codes never used) and ``n_codes``.
    """
    counts = np.bincount(np.asarray(codes).ravel(), minlength=n_codes).astype(np.float64)
    p = counts / max(counts.sum(), 1.0)
    nz = p[p > 0]
    return {"perplexity": float(np.exp(-(nz * np.log(nz)).sum())), "dead_codes": int((counts == 0).sum()),
            "n_codes": int(n_codes)}


class PatchCodes(torch.nn.Module):
    """Raw patches -> codes, on any device: spectrum, standardisation, then a code assignment.

    Parameters
    ----------
    mean, std : Tensor, shape (n_freqs,)
        Standardisation of the spectra (learned at the tokenizer's fit).
    assign : torch.nn.Module
        Standardised spectra (M, n_freqs) -> codes (M,) int64.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, assign: torch.nn.Module):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.assign = assign

    # Eager even inside a compiled model: the Fourier transform is complex arithmetic, which the compiler
    # does not generate code for, and the codes are targets, outside the graph that learns.
    @torch.compiler.disable
    @torch.no_grad()
    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        """patch (..., patch_size) -> codes (...) int64."""
        shape = patch.shape[:-1]
        # In float32 even under a caller's bfloat16 autocast: codes are targets, and must not flip with precision.
        with torch.autocast(device_type=patch.device.type, enabled=False):
            features = (patch_spectra(patch.reshape(-1, patch.shape[-1])) - self.mean) / self.std
            return self.assign(features).reshape(shape)


class _NearestCentroid(torch.nn.Module):
    def __init__(self, centroids: torch.Tensor):
        super().__init__()
        self.register_buffer("centroids", centroids.float())

    def forward(self, features):
        return torch.cdist(features.float(), self.centroids).argmin(-1)


class _BaseTokenizer(TransformerMixin, BaseEstimator):
    """Shared fit/transform plumbing: signal contract, patching, spectrum standardisation."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    def _spectra_for_fit(self, X):
        X, sfreq, ch_names = check_signal_info(self, X, reset=True)
        X = check_signals(X, type(self).__name__, min_times=self.patch_size)
        flat = patches(X, self.patch_size).reshape(-1, self.patch_size)
        if self.max_patches is not None and len(flat) > self.max_patches:
            rng = np.random.default_rng(self.random_state)
            flat = flat[np.sort(rng.choice(len(flat), self.max_patches, replace=False))]
        spectra = patch_spectra(torch.from_numpy(np.ascontiguousarray(flat)))
        mean, std = spectra.mean(0), spectra.std(0).clamp_min(1e-6)
        self.sfreq_, self.ch_names_, self.n_channels_ = sfreq, ch_names, X.shape[1]
        self.spectrum_mean_, self.spectrum_std_ = mean.numpy(), std.numpy()
        return ((spectra - mean) / std).numpy()

    def _standardised(self, X):
        check_is_fitted(self, "spectrum_mean_")
        X, _, _ = check_signal_info(self, X, reset=False)
        X = check_signals(X, type(self).__name__, n_channels=self.n_channels_, min_times=self.patch_size)
        cut = patches(X, self.patch_size)
        spectra = patch_spectra(torch.from_numpy(np.ascontiguousarray(cut).reshape(-1, self.patch_size)))
        standardised = (spectra - torch.from_numpy(self.spectrum_mean_)) / torch.from_numpy(self.spectrum_std_)
        return standardised, cut.shape[:3]

    def transform(self, X) -> np.ndarray:
        """Token ids of every single-channel patch.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_channels, n_times)

        Returns
        -------
        tokens : ndarray of int64, shape (n_trials, n_channels, n_times // patch_size)
        """
        features, shape = self._standardised(X)
        return self._assign(features).reshape(shape)

    def codebook_report(self, X) -> dict:
        """Codebook usage and reconstruction error on trials ``X`` (e.g. held-out subjects).

        Returns
        -------
        dict
            :func:`codebook_usage` of the codes of ``X``, and ``reconstruction_error``: mean squared
            error between each standardised patch spectrum and its code's reconstruction, over the
            spectra's variance (0 is perfect; 1 is no better than the mean spectrum).
        """
        features, _ = self._standardised(X)
        codes = self._assign(features)
        reconstruction = self._reconstruct(codes, features)
        error = float(((reconstruction - features.numpy()) ** 2).mean() / max(features.numpy().var(), 1e-12))
        return {**codebook_usage(codes, self.n_codes), "reconstruction_error": error}

    def torch_encoder(self) -> PatchCodes:
        """A module mapping raw patches (..., patch_size) to codes (...), for use on a GPU."""
        check_is_fitted(self, "spectrum_mean_")
        return PatchCodes(torch.from_numpy(self.spectrum_mean_), torch.from_numpy(self.spectrum_std_),
                          self._assigner())


class KMeansTokenizer(_BaseTokenizer):
    """Codes of single-channel patches from k-means over their spectra (the CPU baseline).

    Parameters
    ----------
    n_codes : int
        Size of the codebook (number of k-means clusters).
    patch_size : int
        Samples per patch.
    max_patches : int or None
        Fit on at most this many patches, drawn at random (None: all).
    max_iter : int
        Lloyd iterations of k-means.
    random_state : int

    Attributes
    ----------
    centroids_ : ndarray, shape (n_codes, patch_size // 2)
        Standardised spectra of the codes.
    spectrum_mean_, spectrum_std_ : ndarray, shape (patch_size // 2,)
    n_channels_ : int
    sfreq_ : float or None
    ch_names_ : tuple of str or None
    """

    _parameter_constraints = {
        "n_codes": [Interval(numbers.Integral, 2, None, closed="left")],
        "patch_size": [Interval(numbers.Integral, 4, None, closed="left")],
        "max_patches": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": [Interval(numbers.Integral, 0, None, closed="left")],
    }

    def __init__(self, n_codes=64, patch_size=64, *, max_patches=100_000, max_iter=100, random_state=0):
        self.n_codes = n_codes
        self.patch_size = patch_size
        self.max_patches = max_patches
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y=None):
        """Learn the spectrum standardisation and the k-means codebook.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_channels, n_times)
        y : ignored

        Returns
        -------
        self
        """
        from sklearn.cluster import KMeans

        self._validate_params()
        features = self._spectra_for_fit(X)
        if len(features) < self.n_codes:
            raise ValueError(f"KMeansTokenizer: {len(features)} patches cannot make {self.n_codes} codes; "
                             "pass more or longer trials, or fewer codes")
        km = KMeans(self.n_codes, n_init=1, max_iter=self.max_iter, random_state=self.random_state).fit(features)
        self.centroids_ = km.cluster_centers_.astype(np.float32)
        return self

    def _assigner(self):
        return _NearestCentroid(torch.from_numpy(self.centroids_))

    def _assign(self, features):
        return self._assigner()(features).numpy()

    def _reconstruct(self, codes, features):
        return self.centroids_[codes]


class _VQAutoencoder(torch.nn.Module):
    """Spectrum -> encoder -> cosine codebook (straight-through) -> decoder -> spectrum.

    In training, ``forward`` returns each sample's loss (reconstruction + codebook + commitment) and
    restarts dead codes: every ``restart_every`` steps, codes that took less than ``restart_threshold``
    of an even share of the assignments since the last check are moved onto encoder outputs of the
    current batch.
    """

    def __init__(self, n_freqs, n_codes, code_dim, hidden, beta, restart_every, restart_threshold, seed):
        super().__init__()
        self.n_codes, self.beta = n_codes, beta
        self.restart_every, self.restart_threshold = restart_every, restart_threshold
        self.encoder = torch.nn.Sequential(torch.nn.Linear(n_freqs, hidden), torch.nn.GELU(),
                                           torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                                           torch.nn.Linear(hidden, code_dim))
        self.decoder = torch.nn.Sequential(torch.nn.Linear(code_dim, hidden), torch.nn.GELU(),
                                           torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                                           torch.nn.Linear(hidden, n_freqs))
        self.codebook = torch.nn.Parameter(torch.nn.functional.normalize(torch.randn(n_codes, code_dim), dim=-1))
        self.register_buffer("usage", torch.zeros(n_codes))  # assignments since the last restart check
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))
        self._generator_seed = seed

    def quantise(self, features):
        z = torch.nn.functional.normalize(self.encoder(features).float(), dim=-1)
        book = torch.nn.functional.normalize(self.codebook.float(), dim=-1)
        codes = (z @ book.T).argmax(-1)
        return z, book, codes

    def forward(self, features):
        z, book, codes = self.quantise(features)
        q = book[codes]
        straight = z + (q - z).detach()
        reconstruction = self.decoder(straight).float()
        per_sample = ((reconstruction - features.float()) ** 2).mean(-1)
        per_sample = per_sample + ((q - z.detach()) ** 2).sum(-1) + self.beta * ((z - q.detach()) ** 2).sum(-1)
        if self.training:
            self._track_and_restart(z.detach(), codes)
        return per_sample

    @torch.no_grad()
    def _track_and_restart(self, z, codes):
        self.usage += torch.bincount(codes, minlength=self.n_codes).float()
        self.steps += 1
        if int(self.steps) % self.restart_every:
            return
        # Dead: used less than restart_threshold of an even share since the last check.
        dead = torch.nonzero(self.usage < self.restart_threshold * self.usage.sum() / self.n_codes).flatten()
        self.usage.zero_()
        if len(dead) == 0:
            return
        # New places drawn from this batch's encoder outputs, with a little noise so that two restarted
        # codes never coincide; the draw is seeded by the step count, so reruns restart identically.
        generator = torch.Generator(device="cpu").manual_seed(self._generator_seed * 1_000_003 + int(self.steps))
        pick = torch.randint(len(z), (len(dead),), generator=generator).to(z.device)
        noise = torch.randn(len(dead), z.shape[1], generator=generator).to(z.device)
        self.codebook.data[dead] = torch.nn.functional.normalize(z[pick] + 0.01 * noise, dim=-1).to(
            self.codebook.dtype)
        self.restarts += len(dead)


class _CosineAssign(torch.nn.Module):
    def __init__(self, autoencoder: _VQAutoencoder):
        super().__init__()
        self.encoder = copy.deepcopy(autoencoder.encoder)
        self.register_buffer("book", torch.nn.functional.normalize(autoencoder.codebook.detach().float(), dim=-1))

    def forward(self, features):
        z = torch.nn.functional.normalize(self.encoder(features.float()).float(), dim=-1)
        return (z @ self.book.T).argmax(-1)


def mean_loss(outputs, _targets):
    """The mean of a model's outputs: the loss of models whose forward returns each sample's loss."""
    return outputs.mean()


class VQTokenizer(_BaseTokenizer):
    """Codes of single-channel patches from a vector-quantised spectrum auto-encoder.

    Each standardised patch spectrum goes through an MLP encoder to a unit vector, takes the
    nearest (cosine) code of the codebook, and an MLP decoder rebuilds the spectrum from the code
    (straight-through gradients). Codes that fall out of use are restarted on current encoder
    outputs, so that the codebook does not collapse onto a few entries. Trained by
    :class:`~neurodecode.training.Trainer` (AdamW, cosine schedule, early stopping on a held-out
    10 % of the patches, bfloat16 and CUDA when available).

    Parameters
    ----------
    n_codes : int
        Codebook size.
    patch_size : int
        Samples per patch.
    code_dim : int
        Dimension of the codes (unit vectors).
    hidden : int
        Width of the encoder's and decoder's hidden layers.
    beta : float
        Weight of the commitment loss (pulls encoder outputs to their codes).
    restart_every : int
        Optimizer steps between dead-code restarts.
    restart_threshold : float
        A code is dead when, over the last ``restart_every`` steps, it took fewer than this fraction
        of an even share (``1 / n_codes``) of the assignments.
    max_patches : int or None
        Train on at most this many patches, drawn at random (None: all).
    max_epochs : int
    batch_size : int
    lr : float
    device : str
        ``"auto"``: CUDA when torch sees it.
    random_state : int
    verbose : bool

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained auto-encoder, on the CPU.
    history_ : list of dict
        The trainer's per-epoch records.
    restarts_ : int
        Codes restarted during training.
    spectrum_mean_, spectrum_std_ : ndarray, shape (patch_size // 2,)
    n_channels_ : int
    sfreq_ : float or None
    ch_names_ : tuple of str or None
    """

    _parameter_constraints = {
        "n_codes": [Interval(numbers.Integral, 2, None, closed="left")],
        "patch_size": [Interval(numbers.Integral, 4, None, closed="left")],
        "code_dim": [Interval(numbers.Integral, 2, None, closed="left")],
        "hidden": [Interval(numbers.Integral, 1, None, closed="left")],
        "beta": [Interval(numbers.Real, 0, None, closed="left")],
        "restart_every": [Interval(numbers.Integral, 1, None, closed="left")],
        "restart_threshold": [Interval(numbers.Real, 0, 1, closed="both")],
        "max_patches": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 2, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "device": [str],
        "random_state": [Interval(numbers.Integral, 0, None, closed="left")],
        "verbose": ["boolean"],
    }

    def __init__(self, n_codes=64, patch_size=64, *, code_dim=16, hidden=128, beta=0.25, restart_every=20,
                 restart_threshold=0.03, max_patches=200_000, max_epochs=30, batch_size=512, lr=2e-3, device="auto",
                 random_state=0, verbose=False):
        self.n_codes = n_codes
        self.patch_size = patch_size
        self.code_dim = code_dim
        self.hidden = hidden
        self.beta = beta
        self.restart_every = restart_every
        self.restart_threshold = restart_threshold
        self.max_patches = max_patches
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Learn the spectrum standardisation, the encoder, the codebook and the decoder.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_channels, n_times)
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        features = self._spectra_for_fit(X).astype(np.float32)
        if len(features) < 2 * self.n_codes:
            raise ValueError(f"VQTokenizer: {len(features)} patches are too few for {self.n_codes} codes; pass more "
                             "or longer trials, or fewer codes")
        seed = int(self.random_state)
        device = resolve_device(self.device)
        config = TrainConfig(max_epochs=self.max_epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=0.0,
                             val_fraction=0.1, patience=10, grad_clip=1.0, device=self.device, compile=False,
                             seed=seed, verbose=bool(self.verbose)).validate()
        numpy_state, python_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                module = _VQAutoencoder(features.shape[1], self.n_codes, self.code_dim, self.hidden, self.beta,
                                        self.restart_every, self.restart_threshold, seed)
                result = Trainer(config, loss_fn=mean_loss).fit(module, features,
                                                                 np.zeros(len(features), np.int64))
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)
        self.module_ = result.model.cpu().eval()
        self.history_ = result.history
        self.restarts_ = int(self.module_.restarts)
        return self

    def _assigner(self):
        return _CosineAssign(self.module_)

    def _assign(self, features):
        return predict_logits(self._assigner(), features, batch_size=65536, device="cpu").long().numpy()

    def _reconstruct(self, codes, features):
        with torch.no_grad():
            book = torch.nn.functional.normalize(self.module_.codebook.float(), dim=-1)
            return self.module_.decoder(book[torch.from_numpy(np.asarray(codes))]).float().numpy()

