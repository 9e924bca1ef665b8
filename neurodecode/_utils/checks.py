"""Input checks shared by every transformer: one wording for one mistake."""

from __future__ import annotations

import numpy as np


def _as_float_array(X, name: str) -> np.ndarray:
    if hasattr(X, "X") and hasattr(X, "info"):  # a DecodingData: its trials
        X = X.X
    X = np.asarray(X)
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
