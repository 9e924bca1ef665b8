"""Checks and conversions shared by the image side: one wording for one mistake."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from ..._utils.checks import _as_float_array, _check_finite


def check_images(images, name: str, *, shape: tuple | None = None) -> np.ndarray:
    """Images as float64 in [0, 1], shape (n_images, height, width).

    Unsigned bytes (0-255) are divided by 255; floating images must already lie in [0, 1].

    Raises
    ------
    ValueError
        Another number of dimensions, no image, NaN/inf pixels, values outside [0, 1], or a
        size other than ``shape`` (the fitted one).
    """
    raw = np.asarray(images)
    if raw.dtype == np.uint8:
        images = raw.astype(np.float64) / 255.0
    else:
        images = _as_float_array(raw, name)
    if images.ndim != 3:
        raise ValueError(f"{name}: images must have shape (n_images, height, width); got {images.ndim}-D shape "
                         f"{images.shape}")
    if len(images) == 0:
        raise ValueError(f"{name}: no image given")
    if not np.isfinite(images).all():
        raise ValueError(f"{name}: images hold NaN or infinite pixels")
    if images.min() < -1e-6 or images.max() > 1 + 1e-6:
        raise ValueError(f"{name}: pixel values span [{images.min():.3g}, {images.max():.3g}]; expected [0, 1] "
                         "(or uint8 0-255)")
    if shape is not None and images.shape[1:] != tuple(shape):
        raise ValueError(f"{name}: images of shape {images.shape[1:]} do not match the fitted shape {tuple(shape)}")
    return np.clip(images, 0.0, 1.0)


def check_features(X, name: str, *, n_features: int | None = None, what: str = "features") -> np.ndarray:
    """A 2-D float64 array (n_samples, n_features), finite."""
    X = _as_float_array(X, name)
    if X.ndim != 2:
        raise ValueError(f"{name}: X must have shape (n_samples, n_{what}); got {X.ndim}-D shape {X.shape}")
    if len(X) == 0:
        raise ValueError(f"{name}: X holds no sample")
    _check_finite(X, name)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name}: X has {X.shape[1]} {what} but the estimator was fitted on {n_features}")
    return X


def check_seed(value, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}: {name} must be a non-negative integer; got {value!r}")
    return int(value)


def pool(images: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``factor x factor`` pixels (sides cropped to a multiple of ``factor``)."""
    if factor == 1:
        return images
    n, h, w = images.shape
    h2, w2 = h // factor, w // factor
    return images[:, :h2 * factor, :w2 * factor].reshape(n, h2, factor, w2, factor).mean(axis=(2, 4))


def resize(images: np.ndarray, shape: tuple) -> np.ndarray:
    """Bilinear resize of (n, h, w) images to ``shape`` (antialiased when shrinking)."""
    if images.shape[1:] == tuple(shape):
        return images
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    out = torch.nn.functional.interpolate(tensor, size=tuple(shape), mode="bilinear", align_corners=False,
                                          antialias=tensor.shape[-1] > shape[-1])
    return out[:, 0].numpy().astype(np.float64)
