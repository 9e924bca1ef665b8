"""Alignment of signals and SPD matrices across subjects, sessions or recordings, batched over leading axes.

Euclidean alignment (He & Wu, IEEE TBME 2020) whitens signals by the inverse square root of their
mean trial covariance; Riemannian Procrustes analysis (Zanini et al. 2018, Rodrigues et al. 2019)
recentres covariances at the identity, stretches them to a common dispersion and rotates one set of
class means onto another. numpy in and numpy out, torch inside, as the rest of the geometry stage.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from .._utils.threads import threads
from ._backend import check_finite, to_output, to_tensor
from .riemann import distance_riemann
from .spd import apply_eigenvalue_function, check_symmetric, eigh, invsqrtm, powm, sqrtm

__all__ = ["align_signals", "dispersion", "geodesic", "procrustes_loss", "procrustes_rotation", "recenter",
           "signal_reference", "stretch", "whitener"]


def signal_reference(X):
    """Mean trial covariance ``(1 / n_trials) sum_i X_i X_iᵀ / n_times``, not centred (He & Wu's reference).

    Parameters
    ----------
    X : ndarray or tensor of shape (..., n_trials, n_channels, n_times)

    Returns
    -------
    R : ndarray or tensor of shape (..., n_channels, n_channels)
    """
    T, as_numpy = to_tensor(X)
    if T.ndim < 3:
        raise ValueError(f"signals must have shape (..., n_trials, n_channels, n_times); got {tuple(T.shape)}")
    check_finite(T, "signals given to signal_reference")
    # One (c, n t) @ (n t, c) product: the same sum as averaging the trials' covariances.
    flat = T.transpose(-3, -2).reshape(*T.shape[:-3], T.shape[-2], T.shape[-3] * T.shape[-1])
    return to_output(flat @ flat.transpose(-1, -2) / (T.shape[-3] * T.shape[-1]), as_numpy)


def whitener(R, rcond: float = 1e-10):
    """``R^{-1/2}`` with eigenvalues floored at ``rcond`` times the largest, shape (..., n, n).

    The floor keeps a rank-deficient reference (a flat or duplicated channel, or fewer samples than
    channels) from producing infinities: those directions are scaled by ``(rcond λmax)^{-1/2}``.
    It is the floor of ``benchmarks/deep_gpu.py``'s Euclidean alignment, reproduced exactly.
    """
    return apply_eigenvalue_function(
        R, lambda v: torch.rsqrt(torch.maximum(v, v.amax(-1, keepdim=True) * rcond)))


def align_signals(X, W):
    """``W X_i`` for every trial, shape (..., n_trials, n_channels, n_times).

    Parameters
    ----------
    X : ndarray or tensor of shape (..., n_trials, n_channels, n_times)
    W : ndarray or tensor of shape (..., n_channels, n_channels)
        One matrix for all the trials of each leading index (a :func:`whitener`).
    """
    T, as_numpy = to_tensor(X)
    M, _ = to_tensor(W, device=T.device, dtype=T.dtype)
    return to_output(M[..., None, :, :] @ T, as_numpy)


def recenter(C, M):
    """``M^{-1/2} C_i M^{-1/2}``: SPD matrices moved so that ``M`` goes to the identity.

    Parameters
    ----------
    C : ndarray or tensor of shape (..., n_matrices, n, n)
    M : ndarray or tensor of shape (..., n, n)
        The reference (SPD), one per leading index.

    Returns
    -------
    ndarray or tensor of shape (..., n_matrices, n, n), symmetrised
    """
    T, as_numpy = to_tensor(C)
    W, _ = to_tensor(invsqrtm(to_tensor(M, device=T.device, dtype=T.dtype)[0]))
    out = W[..., None, :, :] @ T @ W[..., None, :, :]
    return to_output((out + out.transpose(-1, -2)) / 2, as_numpy)


def geodesic(A, B, t):
    """The point at ``t`` on the affine-invariant geodesic from ``A`` (t=0) to ``B`` (t=1).

    ``A^{1/2} (A^{-1/2} B A^{-1/2})^t A^{1/2}``, broadcast over leading axes; a running Riemannian
    mean moves its estimate by ``t = 1 / k`` towards the k-th matrix.
    """
    TA, as_numpy = to_tensor(A)
    TB, _ = to_tensor(B, device=TA.device, dtype=TA.dtype)
    root, invroot = sqrtm(TA), invsqrtm(TA)
    out = root @ powm(invroot @ TB @ invroot, float(t)) @ root
    return to_output((out + out.transpose(-1, -2)) / 2, as_numpy)


def dispersion(C, M, *, weights=None):
    """Weighted mean squared Riemannian distance of SPD matrices to ``M``, shape (...,).

    Parameters
    ----------
    C : ndarray or tensor of shape (..., n_matrices, n, n)
    M : ndarray or tensor of shape (..., n, n)
    weights : array of shape (n_matrices,) or None
        Non-negative, normalised to sum to one; equal by default.
    """
    T, as_numpy = to_tensor(C)
    R, _ = to_tensor(M, device=T.device, dtype=T.dtype)
    d2 = distance_riemann(R[..., None, :, :], T) ** 2
    n = T.shape[-3]
    if weights is None:
        w = torch.full((n,), 1.0 / n, dtype=T.dtype, device=T.device)
    else:
        w, _ = to_tensor(weights, device=T.device, dtype=T.dtype)
        if w.shape != (n,) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"weights must be {n} non-negative numbers with a positive sum")
        w = w / w.sum()
    return to_output((d2 * w).sum(-1), as_numpy)


def stretch(C, M, factor):
    """``M^{1/2} (M^{-1/2} C_i M^{-1/2})^factor M^{1/2}``: matrices pulled towards or pushed from ``M``.

    Every distance to ``M`` is multiplied by ``factor``, so the dispersion by ``factor²``: a set of
    dispersion ``d`` reaches dispersion ``d'`` with ``factor = sqrt(d' / d)``.

    Parameters
    ----------
    C : ndarray or tensor of shape (..., n_matrices, n, n)
    M : ndarray or tensor of shape (..., n, n)
    factor : float
    """
    T, as_numpy = to_tensor(C)
    R, _ = to_tensor(M, device=T.device, dtype=T.dtype)
    root = sqrtm(R)[..., None, :, :]
    out = root @ powm(recenter(T, R), float(factor)) @ root
    return to_output((out + out.transpose(-1, -2)) / 2, as_numpy)


# -- Riemannian Procrustes rotation ----------------------------------------------------------------

def _rotate(Q, S):
    return Q @ S @ Q.transpose(-1, -2)


def procrustes_loss(Q, source, target, *, weights=None, metric: str = "euclid"):
    """``sum_k w_k δ²(target_k, Q source_k Qᵀ)``, the cost :func:`procrustes_rotation` minimises.

    Parameters
    ----------
    Q : ndarray or tensor of shape (n, n)
    source, target : ndarray or tensor of shape (n_pairs, n, n)
    weights : array of shape (n_pairs,) or None
        Normalised to sum to one; equal by default.
    metric : {"euclid", "riemann"}
        δ is the Frobenius distance or the affine-invariant distance.
    """
    TQ, as_numpy = to_tensor(Q)
    S, _ = to_tensor(source, dtype=TQ.dtype)
    T, _ = to_tensor(target, dtype=TQ.dtype)
    return _loss(TQ, S, T, _pair_weights(weights, S), metric)


def _pair_weights(weights, S):
    n = S.shape[0]
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=S.dtype)
    w, _ = to_tensor(weights, dtype=S.dtype)
    if w.shape != (n,) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be {n} non-negative numbers with a positive sum")
    return w / w.sum()


class _Cost:
    """The squared-distance cost of a rotation and its gradient, with what does not depend on ``Q`` computed once."""

    def __init__(self, S, T, w, metric):
        self.S, self.T, self.w, self.metric = S, T, w, metric
        if metric == "riemann":
            eigvals, eigvecs = eigh(T)
            vt = eigvecs.transpose(-1, -2)
            self.inv_root = (eigvecs * eigvals.rsqrt()[..., None, :]) @ vt
            self.root = (eigvecs * eigvals.sqrt()[..., None, :]) @ vt

    def _whitened(self, Q):
        W = self.inv_root @ _rotate(Q, self.S) @ self.inv_root
        return (W + W.transpose(-1, -2)) / 2

    def value(self, Q) -> float:
        if self.metric == "euclid":
            d2 = ((self.T - _rotate(Q, self.S)) ** 2).sum(dim=(-2, -1))
        else:
            d2 = torch.log(torch.linalg.eigvalsh(self._whitened(Q))).pow(2).sum(-1)
        return float((self.w * d2).sum())

    def gradient(self, Q):
        """Gradient in ``Q`` as a matrix of R^{n x n}."""
        if self.metric == "euclid":
            terms = -4 * (self.T - _rotate(Q, self.S)) @ Q @ self.S
        else:
            # d/dQ δ²(T, Q S Qᵀ) = 4 log(T^{-1} Q S Qᵀ) Q,
            # and log(T^{-1} P) = T^{-1/2} log(T^{-1/2} P T^{-1/2}) T^{1/2}.
            eigvals, eigvecs = torch.linalg.eigh(self._whitened(Q))
            log_w = (eigvecs * torch.log(eigvals)[..., None, :]) @ eigvecs.transpose(-1, -2)
            terms = 4 * self.inv_root @ log_w @ self.root @ Q
        return (self.w[:, None, None] * terms).sum(0)


def _loss(Q, S, T, w, metric):
    return _Cost(S, T, w, metric).value(Q)


def _project(Q, G):
    """Projection of ``G`` on the tangent space of the orthogonal group at ``Q``."""
    A = Q.transpose(-1, -2) @ G
    return Q @ (A - A.transpose(-1, -2)) / 2


def _retract(Q, V):
    """QR retraction onto the orthogonal group, signs fixed so that R has a positive diagonal."""
    q, r = torch.linalg.qr(Q + V)
    return q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(q.dtype)


def _descending_eigenvectors(A):
    return eigh(A)[1].flip(-1)


def _warm_start(S, T, w, metric):
    """Bhatia & Congedo's exact minimiser for each pair alone (eigenvectors matched by rank); the best overall."""
    cost = _Cost(S, T, w, metric)
    candidates = _descending_eigenvectors(T) @ _descending_eigenvectors(S).transpose(-1, -2)
    losses = [cost.value(Q) for Q in candidates]
    return candidates[int(np.argmin(losses))].clone()


def _minimise(Q, cost: _Cost, tol_step, maxiter, maxiter_linesearch=32):
    """Descent on the orthogonal group: Barzilai-Borwein first steps, Armijo backtracking from them.

    The cost is flat along many directions near its minimum (two class means leave most of a
    rotation free), where fixed first steps make steepest descent crawl; the Barzilai-Borwein step
    (Iannazzo & Porcelli 2018) adapts to that curvature, and backtracking keeps every step a descent.
    """
    F_prev = cost.value(Q)
    direction = _project(Q, cost.gradient(Q))
    alpha = 1.0
    for _ in range(maxiter):
        norm2 = float((direction ** 2).sum())
        candidate = _retract(Q, -alpha * direction)
        F = cost.value(candidate)
        for _ in range(maxiter_linesearch):
            if F_prev - F > 1e-4 * alpha * norm2:
                break
            alpha *= 0.5
            candidate = _retract(Q, -alpha * direction)
            F = cost.value(candidate)
        if alpha * math.sqrt(norm2) <= tol_step:
            return (candidate, F) if F <= F_prev else (Q, F_prev)
        new_direction = _project(candidate, cost.gradient(candidate))
        step = candidate - Q
        change = new_direction - _project(candidate, direction)
        curvature = float((step * change).sum())
        alpha = float((step ** 2).sum()) / curvature if curvature > 0 else 1.0
        Q, F_prev, direction = candidate, F, new_direction
    warnings.warn(f"procrustes_rotation: no convergence in {maxiter} iterations", stacklevel=3)
    return Q, F_prev


def procrustes_rotation(source, target, *, weights=None, metric: str = "euclid", tol_step: float = 1e-9,
                        maxiter: int = 10_000):
    """Orthogonal ``Q`` minimising ``sum_k w_k δ²(target_k, Q source_k Qᵀ)`` (Rodrigues et al. 2019, Eq. 35).

    The rotation step of Riemannian Procrustes analysis: ``source`` and ``target`` are the class means
    of two recentred domains, paired by class. Started from the best of the pairs' exact solutions
    (Bhatia & Congedo 2019), steepest descent on the orthogonal group runs twice, among rotations
    (det +1) and among reflections (det -1), and the lower cost wins; pyRiemann's ``TLRotate``
    follows the same scheme.

    Parameters
    ----------
    source, target : ndarray or tensor of shape (n_pairs, n, n)
        SPD matrices; ``source[k]`` is moved towards ``target[k]``.
    weights : array of shape (n_pairs,) or None
        Weight of each pair; equal by default.
    metric : {"euclid", "riemann"}
        δ: the Frobenius distance or the affine-invariant distance.
    tol_step : float
        Stop once a step moves ``Q`` by at most this (Frobenius norm).
    maxiter : int
        Descent iterations at most, for each determinant sign.

    Returns
    -------
    Q : ndarray or tensor of shape (n, n), orthogonal
    """
    if metric not in ("euclid", "riemann"):
        raise ValueError(f"metric must be 'euclid' or 'riemann'; got {metric!r}")
    S, as_numpy = to_tensor(source)
    T, _ = to_tensor(target, device=S.device, dtype=S.dtype)
    if S.ndim != 3 or S.shape != T.shape:
        raise ValueError(f"source and target must be matching (n_pairs, n, n) stacks; got {tuple(S.shape)} and "
                         f"{tuple(T.shape)}")
    check_symmetric(S, "source matrices given to procrustes_rotation")
    check_symmetric(T, "target matrices given to procrustes_rotation")
    w = _pair_weights(weights, S)
    cost = _Cost(S, T, w, metric)
    start = _warm_start(S, T, w, metric)
    if float(torch.linalg.det(start)) < 0:
        start = start[[1, 0, *range(2, start.shape[0])]]
    reflected = start[[1, 0, *range(2, start.shape[0])]]
    # Thousands of small sequential products: one thread each is many times faster than two (_utils/threads.py).
    with threads(1):
        Q_pos, F_pos = _minimise(start, cost, tol_step, maxiter)
        Q_neg, F_neg = _minimise(reflected, cost, tol_step, maxiter)
    return to_output(Q_pos if F_pos < F_neg else Q_neg, as_numpy)
