"""Metrics of image reconstruction: pixel correlation, SSIM, MSE, 2-way identification, retrieval.

Every function takes stacks of images of one shape, ``(n_images, height, width)`` (or already
flattened, ``(n_images, n_pixels)`` where SSIM is not needed), with pixel values on the scale the
caller chose; :func:`image_scores` expects [0, 1], as the SSIM constants do.

The 2-way identification asks, for each reconstruction ``i`` and each other stimulus ``j``: is the
reconstruction more correlated with its own stimulus than with stimulus ``j``? Chance is 0.5.
Restricted to pairs of the same class (``labels``), it measures what a class-level decoder cannot
get: on a two-digit data set the class average already wins most pairs of different digits.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

__all__ = ["image_scores", "mse", "pixel_correlation", "retrieval_accuracy", "ssim", "two_way_identification"]

#: SSIM constants of Wang et al. (2004) and scikit-image's defaults: K1, K2 and a 7 x 7 uniform window.
SSIM_K1, SSIM_K2, SSIM_WINDOW = 0.01, 0.03, 7


def _pair(true, pred, *, flatten: bool):
    true, pred = np.asarray(true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if true.shape != pred.shape:
        raise ValueError(f"images differ in shape: true {true.shape}, reconstructed {pred.shape}")
    if true.ndim < 2 or len(true) == 0:
        raise ValueError(f"expected a stack of images (n_images, ...); got shape {true.shape}")
    if not (np.isfinite(true).all() and np.isfinite(pred).all()):
        raise ValueError("images hold NaN or infinite pixels")
    if flatten:
        return true.reshape(len(true), -1), pred.reshape(len(pred), -1)
    return true, pred


def _standardise_rows(A: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm; a constant row becomes zeros (correlation 0 with anything)."""
    A = A - A.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(A, axis=1, keepdims=True)
    return np.divide(A, norm, out=np.zeros_like(A), where=norm > 0)


def correlation_matrix(A, B) -> np.ndarray:
    """Pearson correlation of every row of ``A`` with every row of ``B``.

    Parameters
    ----------
    A : array-like, shape (n, ...)
    B : array-like, shape (m, ...) with the same number of values per row

    Returns
    -------
    r : ndarray, shape (n, m)
    """
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    A, B = A.reshape(len(A), -1), B.reshape(len(B), -1)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"rows differ in length: {A.shape[1]} and {B.shape[1]}")
    return _standardise_rows(A) @ _standardise_rows(B).T


def pixel_correlation(true, pred) -> np.ndarray:
    """Pearson correlation between each stimulus and its reconstruction, over pixels.

    Parameters
    ----------
    true, pred : array-like, shape (n_images, height, width) or (n_images, n_pixels)

    Returns
    -------
    r : ndarray, shape (n_images,)
        0 where either image is constant.
    """
    true, pred = _pair(true, pred, flatten=True)
    return np.einsum("ij,ij->i", _standardise_rows(true), _standardise_rows(pred))


def mse(true, pred) -> np.ndarray:
    """Mean squared pixel error of each reconstruction.

    Returns
    -------
    error : ndarray, shape (n_images,)
    """
    true, pred = _pair(true, pred, flatten=True)
    return ((true - pred) ** 2).mean(axis=1)


def ssim(true, pred, *, data_range: float = 1.0) -> np.ndarray:
    """Structural similarity (Wang et al. 2004) of each reconstruction with its stimulus.

    The local statistics are taken over 7 x 7 uniform windows with the sample (n - 1) covariance,
    and averaged over the windows that lie wholly inside the image: the definition of
    ``skimage.metrics.structural_similarity`` with its defaults (the figures of published
    re-runs on small digits use it).

    Parameters
    ----------
    true, pred : array-like, shape (n_images, height, width)
        Both at least 7 x 7.
    data_range : float
        Span of the pixel scale (1 for [0, 1] images, 255 for bytes).

    Returns
    -------
    ssim : ndarray, shape (n_images,)
    """
    true, pred = _pair(true, pred, flatten=False)
    if true.ndim != 3 or min(true.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of shape (n_images, height, width), each side >= {SSIM_WINDOW}; "
                         f"got {true.shape}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive; got {data_range!r}")
    size = (1, SSIM_WINDOW, SSIM_WINDOW)  # no smoothing across images
    n = SSIM_WINDOW ** 2
    unbias = n / (n - 1)
    mx, my = uniform_filter(true, size), uniform_filter(pred, size)
    vx = unbias * (uniform_filter(true * true, size) - mx * mx)
    vy = unbias * (uniform_filter(pred * pred, size) - my * my)
    cxy = unbias * (uniform_filter(true * pred, size) - mx * my)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    local = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = (SSIM_WINDOW - 1) // 2
    return local[:, pad:local.shape[1] - pad, pad:local.shape[2] - pad].mean(axis=(1, 2))


def two_way_identification(true, pred, labels=None) -> float:
    """Share of pairs ``(i, j != i)`` where reconstruction ``i`` correlates more with stimulus ``i`` than ``j``.

    Parameters
    ----------
    true, pred : array-like, shape (n_images, ...)
    labels : array-like of shape (n_images,) or None
        When given, only pairs with ``labels[i] == labels[j]`` count.

    Returns
    -------
    accuracy : float in [0, 1]
        Ties count one half. NaN when no pair qualifies.
    """
    true, pred = _pair(true, pred, flatten=True)
    r = correlation_matrix(pred, true)  # r[i, j]: reconstruction i against stimulus j
    own = np.diag(r)[:, None]
    allowed = ~np.eye(len(r), dtype=bool)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(r),):
            raise ValueError(f"labels must have shape ({len(r)},); got {labels.shape}")
        allowed &= labels[:, None] == labels[None, :]
    if not allowed.any():
        return float("nan")
    wins = (own > r).astype(np.float64) + 0.5 * (own == r)
    return float(wins[allowed].mean())


def retrieval_accuracy(true_embeddings, pred_embeddings, *, top_k: int = 1) -> float:
    """Share of predicted embeddings whose own stimulus is among the ``top_k`` nearest, by cosine.

    Each predicted embedding ``i`` ranks the candidate stimuli (the rows of ``true_embeddings``) by
    cosine similarity; a hit is stimulus ``i`` among the first ``top_k``. Chance is
    ``top_k / n_images``.

    Parameters
    ----------
    true_embeddings, pred_embeddings : array-like, shape (n_images, n_dims)
    top_k : int

    Returns
    -------
    accuracy : float in [0, 1]
    """
    true, pred = _pair(true_embeddings, pred_embeddings, flatten=True)
    if not 1 <= int(top_k) <= len(true):
        raise ValueError(f"top_k must be in [1, {len(true)}]; got {top_k!r}")

    def unit(A):
        norm = np.linalg.norm(A, axis=1, keepdims=True)
        return np.divide(A, norm, out=np.zeros_like(A), where=norm > 0)

    similarity = unit(pred) @ unit(true).T
    own = np.diag(similarity)[:, None]
    # Rank of the own stimulus: how many candidates beat it strictly (ties resolved in its favour).
    rank = (similarity > own).sum(axis=1)
    return float((rank < int(top_k)).mean())


def image_scores(true, pred, labels=None) -> dict:
    """Every image metric at once, as the benchmark reports them.

    Parameters
    ----------
    true, pred : array-like, shape (n_images, height, width), pixels in [0, 1]
    labels : array-like of shape (n_images,) or None
        Classes of the stimuli, for the within-class identification.

    Returns
    -------
    scores : dict
        ``pixel_correlation``, ``ssim``, ``mse`` (means over images), ``identification`` (2-way,
        all pairs) and, with labels, ``identification_same_class``.
    """
    scores = {"pixel_correlation": float(pixel_correlation(true, pred).mean()),
              "ssim": float(ssim(true, pred, data_range=1.0).mean()),
              "mse": float(mse(true, pred).mean()),
              "identification": two_way_identification(true, pred)}
    if labels is not None:
        scores["identification_same_class"] = two_way_identification(true, pred, labels)
    return scores
