"""Covariance estimation, batched over any leading axes.

Definitions follow scikit-learn so results are interchangeable: ``scm`` is
``empirical_covariance`` (centred, divided by n), ``oas`` and ``lwf`` are the OAS and
Ledoit-Wolf estimators shrinking towards ``mu * I`` with ``mu = trace(S) / n_channels``.
"""

from __future__ import annotations

import torch

from ._backend import check_finite, to_output, to_tensor

ESTIMATORS = ("scm", "oas", "lwf")


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown covariance estimator {estimator!r}; choose one of {ESTIMATORS}")


def oas_shrinkage(S: torch.Tensor, n_samples: int) -> torch.Tensor:
    """OAS shrinkage coefficient of sample covariances, shape (...,).

    Parameters
    ----------
    S : tensor of shape (..., n, n)
        Centred sample covariances (divided by ``n_samples``).
    n_samples : int
        Number of samples each covariance was estimated from.
    """
    n = S.shape[-1]
    mu = torch.diagonal(S, dim1=-2, dim2=-1).sum(-1) / n
    alpha = (S ** 2).mean(dim=(-2, -1))
    num = alpha + mu ** 2
    den = (n_samples + 1.0) * (alpha - mu ** 2 / n)
    # den is zero only for a scaled identity, which needs no shrinkage at all.
    shrink = torch.where(den == 0, torch.ones_like(den), num / torch.where(den == 0, torch.ones_like(den), den))
    return shrink.clamp(max=1.0)


def ledoit_wolf_shrinkage_from_moments(S: torch.Tensor, fourth: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Ledoit-Wolf shrinkage coefficient (scikit-learn's definition) from moments, shape (...,).

    Parameters
    ----------
    S : tensor of shape (..., n, n)
        Centred sample covariances (divided by ``n_samples``).
    fourth : tensor of shape (...,)
        ``sum_t ||x_t - m||^4`` over the centred samples: the estimator needs this fourth moment,
        which ``S`` alone does not carry. Taking it as an input lets callers that assemble ``S``
        from sums (delay embeddings, sliding windows) use the estimator without the signal.
    n_samples : int
    """
    n = S.shape[-1]
    trace = torch.diagonal(S, dim1=-2, dim2=-1).sum(-1)
    mu = trace / n
    delta_ = (S ** 2).sum(dim=(-2, -1))
    beta = (fourth / n_samples - delta_) / (n * n_samples)
    delta = (delta_ - 2.0 * mu * trace + n * mu ** 2) / n
    beta = torch.minimum(beta, delta)
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    return torch.where(delta == 0, torch.zeros_like(delta), beta / safe)


def ledoit_wolf_shrinkage(Xc: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """Ledoit-Wolf shrinkage coefficient of centred signals ``Xc`` (..., n_channels, n_times) and their ``S``."""
    fourth = ((Xc ** 2).sum(-2) ** 2).sum(-1)
    return ledoit_wolf_shrinkage_from_moments(S, fourth, Xc.shape[-1])


def shrink(S: torch.Tensor, shrinkage: torch.Tensor) -> torch.Tensor:
    """``(1 - s) S + s mu I`` with ``mu = trace(S) / n``, for each matrix of the batch."""
    n = S.shape[-1]
    mu = torch.diagonal(S, dim1=-2, dim2=-1).sum(-1) / n
    s = shrinkage[..., None, None]
    eye = torch.eye(n, dtype=S.dtype, device=S.device)
    return (1.0 - s) * S + s * mu[..., None, None] * eye


def covariances(X, estimator: str = "scm", *, device=None, dtype=None):
    """Covariance matrices of multichannel signals.

    Parameters
    ----------
    X : ndarray or tensor of shape (..., n_channels, n_times)
        Signals; any number of leading axes.
    estimator : {"scm", "oas", "lwf"}
        Sample covariance (centred, divided by n_times), Oracle Approximating Shrinkage, or
        Ledoit-Wolf; each as scikit-learn defines it.
    device, dtype : optional
        Where and in which precision to compute (e.g. ``"cuda"``, ``torch.float32``).

    Returns
    -------
    C : ndarray or tensor of shape (..., n_channels, n_channels)
        numpy when ``X`` was numpy, else a tensor on ``device``.
    """
    _check_estimator(estimator)
    T, as_numpy = to_tensor(X, device=device, dtype=dtype)
    if T.ndim < 2:
        raise ValueError(f"X must have shape (..., n_channels, n_times); got {tuple(T.shape)}")
    if T.shape[-1] < 2:
        raise ValueError(f"covariances need at least 2 time samples; got {T.shape[-1]}")
    check_finite(T, "X")
    Xc = T - T.mean(dim=-1, keepdim=True)
    S = Xc @ Xc.transpose(-1, -2) / T.shape[-1]
    if estimator == "oas":
        S = shrink(S, oas_shrinkage(S, T.shape[-1]))
    elif estimator == "lwf":
        S = shrink(S, ledoit_wolf_shrinkage(Xc, S))
    return to_output(S, as_numpy)


def covariance_from_sums(sum_z, sum_zz, n_samples: int, estimator: str = "oas", *, sum_sq_z=None,
                         sum_sq_sq=None):
    """Covariance of a window from running sums of its samples, without revisiting them.

    A streaming decoder keeps ``sum_z`` and ``sum_zz`` of the (delay-embedded) samples, adding
    the columns that enter the window and subtracting those that leave, and rebuilds the
    window's covariance in O(dim^2). The one implementation for the online decoder and
    :class:`~neurodecode.transforms.AugmentedCovariance` users.

    Parameters
    ----------
    sum_z : ndarray of shape (..., dim)
        Sum of the samples ``z_t`` over the window.
    sum_zz : ndarray of shape (..., dim, dim)
        Sum of ``z_t z_t^T`` over the window.
    n_samples : int
        Number of samples summed (at least 2).
    estimator : {"scm", "cov", "oas", "lwf"}
        ``scm``: centred, divided by n; ``cov``: divided by n - 1; ``oas`` and ``lwf`` as
        :func:`covariances`. Ledoit-Wolf needs ``sum_t |z_t - m|^4``, which first and second
        moments cannot give: pass ``sum_sq_z`` (``sum_t |z_t|^2 z_t``, shape (..., dim)) and
        ``sum_sq_sq`` (``sum_t |z_t|^4``, shape (...,)) as well.

    Returns
    -------
    C : ndarray of shape (..., dim, dim)
    """
    import numbers

    import numpy as np

    if estimator not in ("scm", "cov", "oas", "lwf"):
        raise ValueError(f"covariance_from_sums supports estimator 'scm', 'cov', 'oas' or 'lwf'; got {estimator!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2; got {n_samples!r}")
    if estimator == "lwf" and (sum_sq_z is None or sum_sq_sq is None):
        raise ValueError("estimator 'lwf' needs sum_sq_z and sum_sq_sq (fourth moments) as well")
    n = int(n_samples)
    s1 = torch.as_tensor(np.asarray(sum_z, dtype=np.float64))
    s2 = torch.as_tensor(np.asarray(sum_zz, dtype=np.float64))
    m = s1 / n
    S = s2 / n - m[..., :, None] * m[..., None, :]
    S = (S + S.transpose(-1, -2)) / 2
    if estimator == "scm":
        return S.numpy()
    if estimator == "cov":
        return (S * (n / (n - 1))).numpy()
    if estimator == "oas":
        return shrink(S, oas_shrinkage(S, n)).numpy()
    v3 = torch.as_tensor(np.asarray(sum_sq_z, dtype=np.float64))
    a4 = torch.as_tensor(np.asarray(sum_sq_sq, dtype=np.float64))
    # sum_t |z_t - m|^4 expanded in the running sums.
    mm = (m * m).sum(-1)
    trace = torch.diagonal(s2, dim1=-2, dim2=-1).sum(-1)
    m_s2_m = (m[..., None, :] @ s2 @ m[..., :, None])[..., 0, 0]
    q4 = a4 - 4 * (m * v3).sum(-1) + 2 * mm * trace + 4 * m_s2_m - 4 * mm * (m * s1).sum(-1) + n * mm ** 2
    return shrink(S, ledoit_wolf_shrinkage_from_moments(S, q4, n)).numpy()
