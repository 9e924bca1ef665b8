"""Per-trial EEG functional connectivity in frequency bands, as a scikit-learn transformer.

The measures are those of mne-connectivity's ``spectral_connectivity_time`` (``'coh'``,
``'imcoh'``, ``'plv'``, ``'wpli'``): inside one trial, the cross-spectrum of two channels is
followed over time (Morlet or multitaper time-frequency coefficients) and the measure
summarises its consistency over the trial's time points. mne-connectivity computes them
trial by trial and channel pair by channel pair in Python loops; here the time-frequency
coefficients come from MNE for a batch of trials at once, and the measures that reduce to
averaged cross-spectra (coh, imcoh, and PLV with one taper) are one matrix product per
trial and frequency. ``benchmarks/connectivity_eeg.py`` shows the values equal
mne-connectivity's and how much faster they are.
"""

from __future__ import annotations

import numpy as np
from mne.time_frequency import morlet, tfr_array_morlet, tfr_array_multitaper
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._utils.checks import check_signal_info, check_signals
from .spectral import band_feature_names, band_masks, channel_names, check_bands

METHODS = ("coh", "imcoh", "plv", "wpli")
MODES = ("cwt_morlet", "multitaper", "fourier")
OUTPUTS = ("node_strength", "matrix", "vector")

# Complex coefficients held at once, in numbers (16 bytes each): bounds memory to ~64 MB per batch.
_BATCH_COEFFICIENTS = 4_000_000


def band_frequencies(bands: dict, freq_step: float) -> np.ndarray:
    """The frequencies (Hz) at which time-frequency coefficients are computed: each band's
    ``fmin, fmin + freq_step, ...`` up to ``fmax`` included, merged over bands."""
    grids = [np.arange(fmin, fmax + freq_step / 2, freq_step) for fmin, fmax in bands.values()]
    # Rounding merges the shared edge of adjacent bands (8 Hz in theta and alpha) into one bin.
    return np.unique(np.round(np.concatenate(grids), 9))


def _segment_coefficients(X: np.ndarray, sfreq: float, n_per_seg: int, n_overlap: int) -> tuple:
    """Hann-windowed FFT of overlapping segments: (n_trials, n_channels, 1, n_freqs, n_segments).

    Each segment is demeaned, windowed with ``np.hanning`` and Fourier transformed, which is
    what mne-connectivity's ``mode='fourier'`` does to each epoch; the segments of a trial
    play the role of its epochs.
    """
    step = n_per_seg - n_overlap
    starts = np.arange(0, X.shape[-1] - n_per_seg + 1, step)
    segments = np.stack([X[..., s:s + n_per_seg] for s in starts], axis=-2)
    segments = segments - segments.mean(axis=-1, keepdims=True)
    spectra = np.fft.rfft(segments * np.hanning(n_per_seg), axis=-1)
    freqs = np.fft.rfftfreq(n_per_seg, 1.0 / sfreq)
    return np.swapaxes(spectra, -1, -2)[:, :, None], freqs


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, and 0 where the denominator is 0.

    0/0 arises for a flat channel (no power) and, in wPLI, for two channels with no phase
    lag at all; mne-connectivity returns NaN there, which would stop any classifier.
    """
    shape = np.broadcast_shapes(numerator.shape, denominator.shape)
    out = np.zeros(shape, dtype=np.result_type(numerator, denominator))
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


def _pair_measure(method: str, a_rows, b_rows, a_col, b_col) -> np.ndarray:
    """wPLI or PLV of several channels with one: (n_rows, n_freqs).

    ``a``/``b`` are real/imaginary parts of coefficients of shape (n_rows or none, n_tapers,
    n_freqs, n_times); the cross-spectrum summed over tapers is ``re + i * im``.
    """
    im = (b_rows * a_col - a_rows * b_col).sum(axis=1)
    if method == "wpli":
        return _safe_divide(np.abs(im.sum(axis=-1)), np.abs(im).sum(axis=-1))
    re = (a_rows * a_col + b_rows * b_col).sum(axis=1)
    magnitude = np.hypot(re, im)
    return np.hypot(_safe_divide(re, magnitude).mean(axis=-1), _safe_divide(im, magnitude).mean(axis=-1))


def connectivity_spectra(W: np.ndarray, method: str, weights: np.ndarray | None = None) -> np.ndarray:
    """Connectivity of every channel pair at every frequency, from time-frequency coefficients.

    Parameters
    ----------
    W : complex ndarray of shape (n_trials, n_channels, n_tapers, n_freqs, n_times)
        Time-frequency coefficients (Morlet: one taper; Fourier segments: "times" are segments).
    method : {"coh", "imcoh", "plv", "wpli"}
    weights : ndarray of shape (n_tapers, n_freqs) or None
        Multitaper weights (square roots of the tapers' concentrations).

    Returns
    -------
    conn : ndarray of shape (n_trials, n_freqs, n_channels, n_channels)
        ``conn[:, :, i, j]`` is the measure of channel i with channel j, with
        ``S_ij(t) = sum_k w_k² W_ik(t) conj(W_jk(t))``: coh ``|<S_ij>| / sqrt(<S_ii><S_jj>)``,
        imcoh ``Im<S_ij> / sqrt(<S_ii><S_jj>)`` (antisymmetric), plv ``|<S_ij / |S_ij|>|``,
        wpli ``|<Im S_ij>| / <|Im S_ij|>``, where ``<.>`` averages over time. The diagonal is 0,
        and so is any 0/0 (flat channel; no phase lag at all in wPLI), where mne-connectivity
        gives NaN.
    """
    n_trials, n_channels, n_tapers, n_freqs, n_times = W.shape
    v = W if weights is None else W * weights[:, :, None]
    conn = np.zeros((n_trials, n_freqs, n_channels, n_channels))
    if method in ("coh", "imcoh") or (method == "plv" and n_tapers == 1):
        if method == "plv":
            # With one taper S_ij / |S_ij| = u_i conj(u_j), u = W / |W|: a matrix product again.
            v = _safe_divide(v, np.abs(v))
        flat = np.moveaxis(v, 3, 1).reshape(n_trials, n_freqs, n_channels, n_tapers * n_times)
        for i in range(n_trials):
            cross = flat[i] @ flat[i].conj().swapaxes(-1, -2)
            if method == "plv":
                conn[i] = np.abs(cross) / (n_tapers * n_times)
                continue
            power = np.sqrt(np.einsum("fcc->fc", cross).real)
            norm = power[:, :, None] * power[:, None, :]
            conn[i] = _safe_divide(np.abs(cross) if method == "coh" else cross.imag, norm)
    else:
        # wpli (and multitaper plv) take |.| of each time point's cross-spectrum, which no matrix
        # product gives: channel j against all channels before it, in real arithmetic.
        for i in range(n_trials):
            re_part, im_part = v[i].real, v[i].imag
            for j in range(1, n_channels):
                values = _pair_measure(method, re_part[:j], im_part[:j], re_part[j], im_part[j])
                conn[i, :, :j, j] = values.T
                conn[i, :, j, :j] = values.T
    idx = np.arange(n_channels)
    conn[:, :, idx, idx] = 0.0
    return conn


class EEGConnectivity(TransformerMixin, BaseEstimator):
    """Functional connectivity of each trial in frequency bands: matrices, node strength or vector.

    For each trial, time-frequency coefficients are computed (MNE's Morlet or multitaper
    transforms, or a Hann-windowed FFT of overlapping segments); the connectivity measure
    is computed at each frequency over the trial's time points (or segments), as
    mne-connectivity's ``spectral_connectivity_time`` (``'fourier'``:
    ``spectral_connectivity_epochs`` with the segments as epochs) does, and averaged over the
    frequencies of each band.

    Parameters
    ----------
    method : {"coh", "imcoh", "plv", "wpli"}
        Coherence, imaginary part of coherency, phase-locking value, weighted phase-lag index
        (mne-connectivity's names and definitions).
    bands : dict of str to (float, float), list of (float, float), or None
        Frequency bands in Hz, both edges included. None: theta (4, 8), alpha (8, 13),
        beta (13, 30).
    sfreq : float or None
        Sampling rate of X in Hz. None (default): the rate of the
        :class:`~neurodecode.data.DecodingData` given to ``fit``; fitting a plain array then
        raises. A number must agree with a DecodingData's rate.
    output : {"node_strength", "matrix", "vector"}
        ``"matrix"``: (n_trials, n_bands, n_channels, n_channels), symmetric with a zero
        diagonal (antisymmetric for imcoh). ``"node_strength"``: (n_trials, n_bands *
        n_channels), the sum of a channel's connectivity with all others (of its absolute
        value for imcoh, whose sign only says which channel leads), band-major.
        ``"vector"``: (n_trials, n_bands * n_channels * (n_channels - 1) / 2), the upper
        triangle (``np.triu_indices(n_channels, k=1)`` order), band-major.
    mode : {"cwt_morlet", "multitaper", "fourier"}
        Spectral estimate: Morlet wavelets or DPSS multitapers at ``freq_step`` spacing
        (time-resolved, as ``spectral_connectivity_time``), or Welch-style segments.
    n_cycles : float
        Cycles per wavelet (cwt_morlet, multitaper). The lowest frequency's wavelet must fit
        in a trial: ``n_cycles / fmin`` seconds for multitapers, about 1.6 times that for
        Morlet wavelets (7 cycles at 4 Hz: 445 samples at 160 Hz).
    mt_bandwidth : float or None
        Time-bandwidth product of the multitapers; None: 4 (3 tapers), mne-connectivity's default.
    freq_step : float
        Spacing in Hz of the frequencies computed inside each band (cwt_morlet, multitaper).
    n_per_seg : int or None
        Segment length in samples (fourier); None: one second, ``round(sfreq)``.
    n_overlap : int or None
        Segment overlap in samples (fourier); None: half a segment.
    decim : int
        Keep every ``decim``-th time point of the time-frequency coefficients (cwt_morlet,
        multitaper); faster, at some cost in precision.
    n_jobs : int or None
        Passed to MNE's time-frequency transforms.

    Attributes
    ----------
    sfreq_ : float
        Sampling rate used, in Hz.
    ch_names_ : tuple of str or None
        Channel names of the DecodingData seen in fit; None for a plain array.
    n_channels_ : int
        Number of channels seen in fit.
    bands_ : dict of str to (float, float)
        The validated bands, in output order.
    freqs_ : ndarray of shape (n_freqs,)
        Frequencies computed (cwt_morlet, multitaper; for fourier they depend on n_per_seg
        and are those of the FFT bins inside the bands).

    Notes
    -----
    ``fit`` and ``transform`` take a DecodingData or an array. A DecodingData given to
    ``transform`` must have the sampling rate and the channels (same names, same order) seen
    in fit, else ``ValueError``; an array is only checked for its channel count.
    """

    def __init__(self, method="coh", bands=None, sfreq=None, output="node_strength", mode="cwt_morlet",
                 n_cycles=7.0, mt_bandwidth=None, freq_step=1.0, n_per_seg=None, n_overlap=None, decim=1,
                 n_jobs=None):
        self.method = method
        self.bands = bands
        self.sfreq = sfreq
        self.output = output
        self.mode = mode
        self.n_cycles = n_cycles
        self.mt_bandwidth = mt_bandwidth
        self.freq_step = freq_step
        self.n_per_seg = n_per_seg
        self.n_overlap = n_overlap
        self.decim = decim
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Check the parameters against X and remember its sampling rate and channels.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
            A DecodingData supplies the sampling rate when ``sfreq`` is None.
        y : ignored

        Returns
        -------
        self : EEGConnectivity
        """
        name = type(self).__name__
        for param, allowed in (("method", METHODS), ("mode", MODES), ("output", OUTPUTS)):
            if getattr(self, param) not in allowed:
                raise ValueError(f"{name}: {param} must be one of {list(allowed)}, got {getattr(self, param)!r}")
        X, sfreq, ch_names = check_signal_info(self, X, reset=True, sfreq=self.sfreq)
        bands = check_bands(self.bands, sfreq, name)
        X = check_signals(X, name)
        if X.shape[1] < 2:
            raise ValueError(f"{name}: connectivity needs at least 2 channels, got X of shape {X.shape}")
        for param in ("n_cycles", "freq_step"):
            value = getattr(self, param)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
                raise ValueError(f"{name}: {param} must be a positive number, got {value!r}")
        if self.mode != "fourier" and min(lo for lo, _ in bands.values()) <= 0:
            raise ValueError(f"{name}: mode={self.mode!r} needs bands above 0 Hz, got {bands}")
        if isinstance(self.decim, bool) or not isinstance(self.decim, (int, np.integer)) or self.decim < 1:
            raise ValueError(f"{name}: decim must be an int >= 1, got {self.decim!r}")
        if self.mt_bandwidth is not None and not self.mt_bandwidth >= 2:
            raise ValueError(f"{name}: mt_bandwidth must be >= 2 (at least one good taper), got {self.mt_bandwidth!r}")
        for param in ("n_per_seg", "n_overlap"):
            value = getattr(self, param)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < 0):
                raise ValueError(f"{name}: {param} must be a non-negative int or None, got {value!r}")
        freqs = band_frequencies(bands, self.freq_step)
        self._check_wavelet_fits(X.shape[-1], sfreq, freqs)
        self.bands_, self.freqs_ = bands, freqs
        self.sfreq_, self.ch_names_ = sfreq, ch_names
        self.n_channels_ = X.shape[1]
        return self

    def _check_wavelet_fits(self, n_times: int, sfreq: float, freqs: np.ndarray) -> None:
        """Raise if the lowest frequency's wavelet is longer than a trial (cwt_morlet, multitaper)."""
        if self.mode == "fourier":
            return
        lowest = freqs[0]
        if self.mode == "cwt_morlet":
            # MNE's Morlet wavelet spans +-5 standard deviations, about 1.6 x n_cycles periods.
            wavelet_length = morlet(sfreq, [lowest], n_cycles=self.n_cycles, zero_mean=False)[0].size
        else:
            wavelet_length = np.arange(0.0, self.n_cycles / lowest, 1.0 / sfreq).size
        if wavelet_length > n_times:
            raise ValueError(f"{type(self).__name__}: at {lowest:g} Hz the {self.n_cycles:g}-cycle {self.mode} "
                             f"wavelet spans {wavelet_length} samples, more than the trials' {n_times}; lower "
                             "n_cycles or raise the lowest band edge")

    def _coefficients(self, X: np.ndarray) -> tuple:
        """Time-frequency coefficients (n_trials, n_channels, n_tapers, n_freqs, n_times), weights, freqs."""
        name = type(self).__name__
        n_times = X.shape[-1]
        if self.mode == "fourier":
            n_per_seg = int(round(self.sfreq_)) if self.n_per_seg is None else self.n_per_seg
            n_overlap = n_per_seg // 2 if self.n_overlap is None else self.n_overlap
            if not 2 <= n_per_seg <= n_times:
                raise ValueError(f"{name}: n_per_seg={n_per_seg} samples must be between 2 and the trial "
                                 f"length {n_times}")
            if n_overlap >= n_per_seg:
                raise ValueError(f"{name}: n_overlap={n_overlap} must be smaller than n_per_seg={n_per_seg}")
            W, freqs = _segment_coefficients(X, self.sfreq_, n_per_seg, n_overlap)
            if W.shape[-1] < 2:
                raise ValueError(f"{name}: trials of {n_times} samples give one segment of {n_per_seg}; "
                                 "connectivity over one segment is trivially 1 or 0: shorten n_per_seg")
            keep = band_masks(freqs, self.bands_, name).any(axis=0)
            return W[:, :, :, keep], None, freqs[keep]
        self._check_wavelet_fits(n_times, self.sfreq_, self.freqs_)
        if self.mode == "cwt_morlet":
            # zero_mean=False: what mne-connectivity's spectral_connectivity_time uses.
            W = tfr_array_morlet(X, self.sfreq_, self.freqs_, n_cycles=self.n_cycles, zero_mean=False,
                                 decim=self.decim, output="complex", n_jobs=self.n_jobs, verbose="error")
            return W[:, :, None], None, self.freqs_
        W, weights = tfr_array_multitaper(
            X, self.sfreq_, self.freqs_, n_cycles=self.n_cycles,
            time_bandwidth=4.0 if self.mt_bandwidth is None else self.mt_bandwidth, decim=self.decim,
            output="complex", return_weights=True, n_jobs=self.n_jobs, verbose="error")
        return W, weights, self.freqs_

    def connectivity(self, X):
        """Connectivity matrices of each trial and band.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
            A DecodingData must match the sampling rate and channels seen in fit.

        Returns
        -------
        conn : ndarray of shape (n_trials, n_bands, n_channels, n_channels)
        """
        check_is_fitted(self, "n_channels_")
        X = check_signals(check_signal_info(self, X, reset=False)[0], type(self).__name__,
                          n_channels=self.n_channels_)
        per_trial = self.n_channels_ * len(self.freqs_) * max(X.shape[-1] // self.decim, 1)
        if self.mode == "multitaper":
            per_trial *= int(np.floor((4.0 if self.mt_bandwidth is None else self.mt_bandwidth) - 1))
        batch = max(1, _BATCH_COEFFICIENTS // per_trial)
        conn = []
        for start in range(0, len(X), batch):
            W, weights, freqs = self._coefficients(X[start:start + batch])
            masks = band_masks(freqs, self.bands_, type(self).__name__).astype(np.float64)
            masks /= masks.sum(axis=1, keepdims=True)
            spectra = connectivity_spectra(W, self.method, weights)
            conn.append(np.einsum("nfcd,bf->nbcd", spectra, masks))
        return np.concatenate(conn)

    def transform(self, X):
        """Connectivity features of each trial.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
            A DecodingData must match the sampling rate and channels seen in fit.

        Returns
        -------
        features : ndarray
            Of shape (n_trials, n_bands, n_channels, n_channels) for ``output="matrix"``,
            (n_trials, n_bands * n_channels) for ``"node_strength"``, and
            (n_trials, n_bands * n_channels * (n_channels - 1) // 2) for ``"vector"``.
        """
        conn = self.connectivity(X)
        if self.output == "matrix":
            return conn
        if self.output == "node_strength":
            return np.abs(conn).sum(axis=-1).reshape(len(conn), -1)
        rows, cols = np.triu_indices(self.n_channels_, k=1)
        return conn[:, :, rows, cols].reshape(len(conn), -1)

    def get_feature_names_out(self, input_features=None):
        """Feature names for ``output="node_strength"`` (``"<band>_<channel>"``) or ``"vector"``
        (``"<band>_<channel>-<channel>"``), in output order.

        Parameters
        ----------
        input_features : list of str or None
            Channel names; None: ``ch_names_`` when fit saw a DecodingData, else ``ch0, ch1, ...``.

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self, "n_channels_")
        name = type(self).__name__
        input_features = self.ch_names_ if input_features is None else input_features
        if self.output == "matrix":
            raise ValueError(f"{name}: output='matrix' gives 4-D arrays, which have no feature names")
        if self.output == "node_strength":
            return band_feature_names(self.bands_, self.n_channels_, input_features, name)
        channels = channel_names(self.n_channels_, input_features, name)
        rows, cols = np.triu_indices(self.n_channels_, k=1)
        return np.array([f"{band}_{channels[r]}-{channels[c]}" for band in self.bands_ for r, c in zip(rows, cols)],
                        dtype=object)
