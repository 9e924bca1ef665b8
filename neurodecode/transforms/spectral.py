"""Spectral band power per channel, as a scikit-learn transformer.

Also holds the checks of bands and sampling rate that every frequency-band transformer
shares, so that band power and EEG connectivity validate them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from mne.time_frequency import psd_array_multitaper, psd_array_welch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._utils.checks import check_signal_info, check_signals

#: The bands used when ``bands=None``: name -> (fmin, fmax) in Hz, both edges included.
DEFAULT_BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0)}


def check_bands(bands, sfreq, owner: str) -> dict:
    """``bands`` as an ordered ``{name: (fmin, fmax)}`` dict, checked against ``sfreq``.

    Parameters
    ----------
    bands : dict of str to (float, float), sequence of (float, float), or None
        Frequency bands in Hz; a sequence gets names ``"fmin-fmax"``; None gives
        :data:`DEFAULT_BANDS`.
    sfreq : float
        Sampling rate in Hz; every band must lie between 0 and the Nyquist frequency.
    owner : str
        The estimator's name, for error messages.
    """
    if sfreq is None:
        raise ValueError(f"{owner} needs sfreq, the sampling rate of X in Hz (e.g. sfreq=160.0) "
                         "or a DecodingData, which carries it; got None")
    if isinstance(sfreq, bool) or not isinstance(sfreq, (int, float, np.integer, np.floating)) \
            or not np.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"{owner}: sfreq must be a positive number of Hz, got {sfreq!r}")
    if bands is None:
        bands = DEFAULT_BANDS
    if isinstance(bands, Mapping):
        items = list(bands.items())
    else:
        try:
            items = [(None, edges) for edges in bands]
        except TypeError:
            raise ValueError(f"{owner}: bands must be a dict name -> (fmin, fmax) or a list of "
                             f"(fmin, fmax) pairs, got {bands!r}") from None
    if not items:
        raise ValueError(f"{owner}: bands is empty; give at least one (fmin, fmax) pair")
    nyquist = sfreq / 2.0
    checked = {}
    for name, edges in items:
        try:
            fmin, fmax = (float(edge) for edge in edges)
        except (TypeError, ValueError):
            raise ValueError(f"{owner}: each band must be a pair (fmin, fmax) in Hz, got {edges!r}"
                             + (f" for band {name!r}" if name is not None else "")) from None
        name = f"{fmin:g}-{fmax:g}" if name is None else str(name)
        if not 0 <= fmin < fmax:
            raise ValueError(f"{owner}: band {name!r} = ({fmin:g}, {fmax:g}) Hz needs 0 <= fmin < fmax")
        if fmax > nyquist:
            raise ValueError(f"{owner}: band {name!r} = ({fmin:g}, {fmax:g}) Hz exceeds the Nyquist "
                             f"frequency {nyquist:g} Hz of sfreq={sfreq:g} Hz")
        if name in checked:
            raise ValueError(f"{owner}: band name {name!r} appears twice")
        checked[name] = (fmin, fmax)
    return checked


def band_masks(freqs: np.ndarray, bands: dict, owner: str) -> np.ndarray:
    """Boolean masks of shape (n_bands, n_freqs): which of ``freqs`` fall in each band (edges included)."""
    masks = np.array([(freqs >= fmin) & (freqs <= fmax) for fmin, fmax in bands.values()])
    empty = [name for name, mask in zip(bands, masks) if not mask.any()]
    if empty:
        step = np.diff(freqs).min() if freqs.size > 1 else float("nan")
        raise ValueError(f"{owner}: band(s) {empty} contain no frequency bin of the spectrum "
                         f"(bins every {step:g} Hz); widen the bands or use longer segments")
    return masks


class BandPower(TransformerMixin, BaseEstimator):
    """Power (log by default) of each channel in each frequency band.

    The power spectral density of every trial and channel is estimated with Welch's method
    or with multitapers (MNE's ``psd_array_welch`` / ``psd_array_multitaper``) and
    integrated over each band: ``power = sum(psd[f] for fmin <= f <= fmax) * df``, in the
    squared unit of X (µV² for µV input). A sinusoid of amplitude A inside a band thus gets
    power close to A²/2.

    Parameters
    ----------
    bands : dict of str to (float, float), list of (float, float), or None
        Frequency bands in Hz, both edges included. None: theta (4, 8), alpha (8, 13),
        beta (13, 30).
    sfreq : float or None
        Sampling rate of X in Hz. None (default): the rate of the
        :class:`~neurodecode.data.DecodingData` given to ``fit``; fitting a plain array then
        raises rather than guess (a wrong rate silently shifts every band). A number must
        agree with a DecodingData's rate.
    method : {"welch", "multitaper"}
        Spectral estimator.
    log : bool
        Return the natural logarithm of the power (log-power is closer to Gaussian, which
        suits LDA and SVMs).
    relative : bool
        Divide each band's power by the power over the span of all bands (from the lowest
        ``fmin`` to the highest ``fmax``); applied before the log.
    n_per_seg : int or None
        Welch segment length in samples; None: one second (``round(sfreq)``), clipped to the
        trial length. The frequency resolution is ``sfreq / n_per_seg``.
    n_overlap : int or None
        Welch overlap in samples; None: half a segment.
    window : str
        Welch window (any name scipy.signal.get_window accepts).
    bandwidth : float or None
        Multitaper full bandwidth in Hz; None: MNE's default, a half-bandwidth of 4 frequency
        bins (see :func:`mne.time_frequency.psd_array_multitaper`).
    n_jobs : int or None
        Passed to MNE's PSD functions.

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

    Notes
    -----
    ``fit`` and ``transform`` take a DecodingData or an array. A DecodingData given to
    ``transform`` must have the sampling rate and the channels (same names, same order) seen
    in fit, else ``ValueError``; an array is only checked for its channel count.

    Output feature order is band-major: feature ``b * n_channels + c`` is band ``b``
    (in the order of ``bands``) of channel ``c``, as :meth:`get_feature_names_out` lists.
    """

    def __init__(self, bands=None, sfreq=None, method="welch", log=True, relative=False,
                 n_per_seg=None, n_overlap=None, window="hann", bandwidth=None, n_jobs=None):
        self.bands = bands
        self.sfreq = sfreq
        self.method = method
        self.log = log
        self.relative = relative
        self.n_per_seg = n_per_seg
        self.n_overlap = n_overlap
        self.window = window
        self.bandwidth = bandwidth
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Check the parameters and remember the sampling rate and channels.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
            A DecodingData supplies the sampling rate when ``sfreq`` is None.
        y : ignored

        Returns
        -------
        self : BandPower
        """
        name = type(self).__name__
        if self.method not in ("welch", "multitaper"):
            raise ValueError(f"{name}: method must be 'welch' or 'multitaper', got {self.method!r}")
        for param in ("n_per_seg", "n_overlap"):
            value = getattr(self, param)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < 0):
                raise ValueError(f"{name}: {param} must be a non-negative int or None, got {value!r}")
        X, sfreq, ch_names = check_signal_info(self, X, reset=True, sfreq=self.sfreq)
        bands = check_bands(self.bands, sfreq, name)
        X = check_signals(X, name)
        self.bands_ = bands
        self.sfreq_, self.ch_names_ = sfreq, ch_names
        self.n_channels_ = X.shape[1]
        return self

    def _psd(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fmin = min(lo for lo, _ in self.bands_.values())
        fmax = max(hi for _, hi in self.bands_.values())
        n_times = X.shape[-1]
        if self.method == "multitaper":
            # normalization="full" makes the result a density (power per Hz), as Welch's is.
            psd, freqs = psd_array_multitaper(X, self.sfreq_, fmin=fmin, fmax=fmax, bandwidth=self.bandwidth,
                                              normalization="full", n_jobs=self.n_jobs, verbose="error")
            return psd, freqs
        n_per_seg = min(int(round(self.sfreq_)) if self.n_per_seg is None else self.n_per_seg, n_times)
        n_overlap = n_per_seg // 2 if self.n_overlap is None else self.n_overlap
        if n_overlap >= n_per_seg:
            raise ValueError(f"{type(self).__name__}: n_overlap={n_overlap} must be smaller than the "
                             f"segment length {n_per_seg} samples")
        psd, freqs = psd_array_welch(X, self.sfreq_, fmin=fmin, fmax=fmax, n_fft=n_per_seg, n_per_seg=n_per_seg,
                                     n_overlap=n_overlap, window=self.window, n_jobs=self.n_jobs,
                                     verbose="error")
        return psd, freqs

    def transform(self, X):
        """Band power of each trial.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
            A DecodingData must match the sampling rate and channels seen in fit.

        Returns
        -------
        features : ndarray of shape (n_trials, n_bands * n_channels)
            Band-major: ``features[:, b * n_channels + c]`` is band ``b`` of channel ``c``.
        """
        check_is_fitted(self, "n_channels_")
        name = type(self).__name__
        X = check_signals(check_signal_info(self, X, reset=False)[0], name, n_channels=self.n_channels_)
        psd, freqs = self._psd(X)
        df = freqs[1] - freqs[0] if freqs.size > 1 else self.sfreq_ / X.shape[-1]
        masks = band_masks(freqs, self.bands_, name)
        power = np.einsum("ncf,bf->nbc", psd, masks.astype(np.float64)) * df
        if self.relative:
            power = power / (psd.sum(axis=-1) * df)[:, None, :]
        if self.log:
            if not (power > 0).all():
                trials, bands_idx, channels = np.nonzero(power <= 0)
                raise ValueError(
                    f"{name}: zero power in {trials.size} (trial, band, channel) cell(s), e.g. trial "
                    f"{trials[0]}, band {list(self.bands_)[bands_idx[0]]!r}, channel {channels[0]}: the log is "
                    "undefined; drop flat channels or set log=False")
            power = np.log(power)
        return power.reshape(len(X), -1)

    def get_feature_names_out(self, input_features=None):
        """Names ``"<band>_<channel>"`` in output order.

        Parameters
        ----------
        input_features : list of str or None
            Channel names, one per channel; None: ``ch_names_`` when fit saw a DecodingData,
            else ``ch0, ch1, ...``.

        Returns
        -------
        names : ndarray of str of shape (n_bands * n_channels,)
        """
        check_is_fitted(self, "n_channels_")
        names = self.ch_names_ if input_features is None else input_features
        return band_feature_names(self.bands_, self.n_channels_, names, type(self).__name__)


def channel_names(n_channels: int, names, owner: str) -> list:
    """``names`` checked against ``n_channels``; default ``ch0, ch1, ...``."""
    if names is None:
        return [f"ch{i}" for i in range(n_channels)]
    if len(names) != n_channels:
        raise ValueError(f"{owner}: {len(names)} channel names given for {n_channels} channels")
    return [str(name) for name in names]


def band_feature_names(bands: dict, n_channels: int, names, owner: str) -> np.ndarray:
    """``"<band>_<channel>"`` for every band then channel (band-major)."""
    channels = channel_names(n_channels, names, owner)
    return np.array([f"{band}_{channel}" for band in bands for channel in channels], dtype=object)
