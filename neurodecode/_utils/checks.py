"""Input checks shared by every transformer: one wording for one mistake."""

from __future__ import annotations

import math
import numbers
import sys

import numpy as np

_CONTAINER = "neurodecode.data.container"


def unpack_data(X):
    """A :class:`~neurodecode.data.DecodingData`'s trials and signal info, or ``X`` as given.

    Every transformer calls this first in ``fit`` and ``transform``, so that a pipeline fitted
    with ``pipe.fit(data, data.y)`` hands its first step the container (and its sampling rate
    and channel names) while later steps get plain arrays.

    Parameters
    ----------
    X : DecodingData or array-like

    Returns
    -------
    X : ndarray or array-like
        ``data.X`` for a DecodingData (a view, not a copy), else ``X`` unchanged.
    info : SignalInfo or None
        ``data.info`` for a DecodingData, else None.
    """
    # Looked up rather than imported: _utils must not pull in the data stage (mne, loaders),
    # and a DecodingData can only exist once its module has been imported.
    container = sys.modules.get(_CONTAINER)
    if container is not None and isinstance(X, container.DecodingData):
        return X.X, X.info
    return X, None


def _check_sfreq_value(sfreq, owner: str) -> float:
    if isinstance(sfreq, bool) or not isinstance(sfreq, numbers.Real) or not np.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"{owner}: sfreq must be a positive number of Hz, got {sfreq!r}")
    return float(sfreq)


def _channel_difference(given: tuple, fitted: tuple) -> str:
    """Where two channel lists part: the first differing position, and what is missing or new."""
    first = next((i for i, (a, b) in enumerate(zip(given, fitted)) if a != b), min(len(given), len(fitted)))
    here = repr(given[first]) if first < len(given) else "nothing"
    there = repr(fitted[first]) if first < len(fitted) else "nothing"
    parts = [f"position {first} is {here} here, {there} at fit"]
    if set(given) == set(fitted):
        parts.append("same channels in another order: pick them in the fitted order")
    else:
        new = [c for c in given if c not in set(fitted)]
        missing = [c for c in fitted if c not in set(given)]
        if new:
            parts.append(f"not seen at fit: {new[:5]}{' ...' if len(new) > 5 else ''}")
        if missing:
            parts.append(f"missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return "; ".join(parts)


_NO_SFREQ_PARAMETER = object()


def check_signal_info(estimator, X, *, reset: bool, sfreq=_NO_SFREQ_PARAMETER):
    """Unpack ``X`` (:func:`unpack_data`) and check its signal info against the estimator's.

    The one place where the sampling rate and channel names of a DecodingData meet an
    estimator's parameters and fitted state, so that every transformer words a contradiction
    the same way.

    Parameters
    ----------
    estimator : BaseEstimator
        The transformer; read only (``sfreq_`` and ``ch_names_`` when ``reset=False``), never written.
    X : DecodingData or array-like
    reset : bool
        True in ``fit``: resolve the sampling rate and channel names to record. False in
        ``transform``: refuse a DecodingData whose sampling rate or channels differ from those
        recorded at fit (``estimator.sfreq_``, ``estimator.ch_names_``; None means unknown,
        and is not compared).
    sfreq : float or None, optional
        Only in ``fit`` of an estimator with an ``sfreq`` parameter: its value. None takes the
        DecodingData's rate and refuses a plain array; a number must agree with the
        DecodingData's rate. Left out, the rate is the DecodingData's, or None for an array.

    Returns
    -------
    X : ndarray or array-like
        The trials.
    sfreq : float or None
        With ``reset=True`` the rate to record as ``sfreq_``; otherwise ``estimator.sfreq_``.
    ch_names : tuple of str or None
        With ``reset=True`` the channel names to record as ``ch_names_``; otherwise
        ``estimator.ch_names_``.
    """
    owner = type(estimator).__name__
    X, info = unpack_data(X)
    data_sfreq = None if info is None or info.sfreq is None else float(info.sfreq)
    data_names = None if info is None else tuple(info.ch_names)
    if reset:
        if sfreq is _NO_SFREQ_PARAMETER:
            return X, data_sfreq, data_names
        if sfreq is None:
            if info is None:
                raise ValueError(f"{owner}: sfreq is None and X is a plain array: pass sfreq=... (the sampling "
                                 "rate in Hz, e.g. sfreq=160.0) or a DecodingData")
            if data_sfreq is None:
                raise ValueError(f"{owner}: sfreq is None and the DecodingData has no sampling rate "
                                 f"({info.modality}): pass sfreq=...")
        else:
            sfreq = _check_sfreq_value(sfreq, owner)
            if data_sfreq is not None and not math.isclose(sfreq, data_sfreq, rel_tol=1e-9):
                raise ValueError(f"{owner}: sfreq={sfreq!r} Hz was given but the DecodingData is sampled at "
                                 f"{data_sfreq!r} Hz: leave sfreq=None to take the data's rate, or resample")
        return X, data_sfreq if sfreq is None else sfreq, data_names
    # getattr: an estimator fitted before these attributes existed (an older pickle) knows neither.
    fitted_sfreq, fitted_names = getattr(estimator, "sfreq_", None), getattr(estimator, "ch_names_", None)
    if info is not None:
        if fitted_sfreq is not None and data_sfreq is not None and not math.isclose(fitted_sfreq, data_sfreq,
                                                                                     rel_tol=1e-9):
            raise ValueError(f"{owner}: fitted at {fitted_sfreq!r} Hz, given data at {data_sfreq!r} Hz: "
                             "resample the recording or refit")
        if fitted_names is not None and data_names != tuple(fitted_names):
            raise ValueError(f"{owner}: channels differ from those fitted: "
                             f"{_channel_difference(data_names, tuple(fitted_names))}")
    return X, fitted_sfreq, fitted_names


def _as_float_array(X, name: str) -> np.ndarray:
    X = np.asarray(unpack_data(X)[0])
    if X.dtype == object:
        raise ValueError(f"{name}: X holds trials of different lengths; crop or window them to one length first")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{name}: X must be numeric; got dtype {X.dtype}")
    return X.astype(np.float64, copy=False)


def _check_finite(X: np.ndarray, name: str) -> None:
    if not np.isfinite(X).all():
        bad = np.unique(np.nonzero(~np.isfinite(X))[0])
        raise ValueError(f"{name}: X holds NaN or infinite values in {bad.size} trial(s) "
                         f"(first: {bad[:5].tolist()})")


def check_signals(X, name: str, *, n_channels: int | None = None, min_times: int = 2) -> np.ndarray:
    """Validate trials of shape (n_trials, n_channels, n_times) and return them as float64."""
    X = _as_float_array(X, name)
    if X.ndim != 3:
        raise ValueError(f"{name}: X must have shape (n_trials, n_channels, n_times); got {X.ndim}-D shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: X holds no trial")
    if n_channels is not None and X.shape[1] != n_channels:
        raise ValueError(f"{name}: X has {X.shape[1]} channels but the estimator was fitted on {n_channels}")
    if X.shape[2] < min_times:
        raise ValueError(f"{name}: trials need at least {min_times} time samples; got {X.shape[2]}")
    _check_finite(X, name)
    return X


def check_matrices(X, name: str, *, n_channels: int | None = None) -> np.ndarray:
    """Validate square matrices of shape (n_trials, n, n) and return them as float64."""
    X = _as_float_array(X, name)
    if X.ndim != 3 or X.shape[1] != X.shape[2]:
        raise ValueError(f"{name}: X must have shape (n_trials, n, n) (square matrices); got {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: X holds no matrix")
    if n_channels is not None and X.shape[1] != n_channels:
        raise ValueError(f"{name}: X holds {X.shape[1]}x{X.shape[1]} matrices but the estimator was fitted on "
                         f"{n_channels}x{n_channels}")
    _check_finite(X, name)
    return X
