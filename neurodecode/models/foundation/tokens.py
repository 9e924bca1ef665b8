"""The foundation model's tokens: single-channel patches placed in (x, y, z, t).

Token layout (one row per token, ``5 + patch_size`` columns): ``valid`` (1, or 0 for padding),
``x, y, z`` (electrode position, in decimetres), ``t`` (patch centre, seconds from the window's
start), then the patch's samples, divided by the standard deviation of the whole window (over
channels and time, so that the relative power of channels, which motor imagery lives on, is kept).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = ["POSITION_SCALE", "TOKEN_META", "resample_trials", "trials_to_tokens"]

#: Columns of a token before its samples: valid, x, y, z, t.
TOKEN_META = 5
#: Electrode coordinates are given in metres and fed in decimetres (a head spans about 2 units).
POSITION_SCALE = 10.0

def _window_scale(X: np.ndarray) -> np.ndarray:
    scale = X.std(axis=(-2, -1), keepdims=True, dtype=np.float64)
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def trials_to_tokens(X, positions, patch_size: int, sfreq: float, dtype=np.float32) -> np.ndarray:
    """Trials at the model's rate to the token layout of the module docstring.

    Parameters
    ----------
    X : ndarray, shape (n_trials, n_channels, n_times)
        At the encoder's sampling rate; a remainder shorter than a patch is dropped.
    positions : array-like, shape (n_channels, 3)
        Electrode positions in metres.
    patch_size : int
    sfreq : float
    dtype : numpy dtype
        Of the tokens (float16 for the corpus's windows: half the bytes to move).

    Returns
    -------
    tokens : ndarray, shape (n_trials, n_channels * n_patches, 5 + patch_size)
        Channel-major: token ``c * n_patches + p`` is patch ``p`` of channel ``c``.
    """
    X = np.asarray(X)
    if X.dtype not in (np.float16, np.float32):
        X = X.astype(np.float32)
    n, n_chans, n_times = X.shape
    n_patches = n_times // patch_size
    if n_patches < 1:
        raise ValueError(f"trials of {n_times} samples at {sfreq} Hz are shorter than one patch "
                         f"({patch_size} samples)")
    X = X[..., :n_patches * patch_size]
    out = np.empty((n, n_chans, n_patches, TOKEN_META + patch_size), dtype=dtype)
    out[..., 0] = 1.0
    out[..., 1:4] = (np.asarray(positions, dtype=np.float32) * POSITION_SCALE)[None, :, None, :]
    out[..., 4] = ((np.arange(n_patches) + 0.5) * patch_size / sfreq)[None, None, :]
    # One pass from the input into the tokens (no float32 copy of a float16 window).
    np.multiply(X.reshape(n, n_chans, n_patches, patch_size), (1.0 / _window_scale(X)).astype(np.float32)[..., None],
                out=out[..., TOKEN_META:], casting="unsafe")
    return out.reshape(n, n_chans * n_patches, TOKEN_META + patch_size)


def resample_trials(X, sfreq: float, new_sfreq: float) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy's anti-aliasing FIR); unchanged when equal.

    Returns
    -------
    ndarray of float32, shape (..., ceil(n_times * new_sfreq / sfreq))
    """
    from scipy.signal import resample_poly

    if math.isclose(sfreq, new_sfreq, rel_tol=1e-9):
        return np.asarray(X, dtype=np.float32)
    ratio = Fraction(float(new_sfreq) / float(sfreq)).limit_denominator(1000)
    return resample_poly(np.asarray(X, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1).astype(
        np.float32)
