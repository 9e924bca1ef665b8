"""Affine-invariant Riemannian geometry of SPD matrices: mean, distance, tangent space.

Vectorisation follows pyRiemann's convention so features are interchangeable: the upper
triangle (row-major, ``triu_indices``), diagonal weighted 1 and off-diagonal ``sqrt(2)``,
so that the Euclidean norm of the vector equals the Frobenius norm of the matrix.
"""

from __future__ import annotations

import math
import warnings

import torch

from ._backend import to_output, to_tensor
from .spd import apply_eigenvalue_function, check_positive, check_symmetric, eigh, spd_log


def _eig_pair(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``M^{1/2}`` and ``M^{-1/2}`` from one eigendecomposition."""
    eigvals, eigvecs = eigh(M)
    check_positive(eigvals, "the reference matrix")
    root = eigvals.sqrt()
    vt = eigvecs.transpose(-1, -2)
    return (eigvecs * root[..., None, :]) @ vt, (eigvecs * (1.0 / root)[..., None, :]) @ vt


def mean_riemann(C, *, weights=None, tol: float = 1e-8, maxiter: int = 50, init=None):
    """Affine-invariant Riemannian (Karcher) mean of SPD matrices.

    Gradient descent from the arithmetic mean with the step-size rule of Congedo et al. (2015),
    the scheme pyRiemann uses, stopping when the gradient's Frobenius norm falls below ``tol``.

    Parameters
    ----------
    C : ndarray or tensor of shape (..., n_matrices, n, n)
        SPD matrices; leading axes are batches of independent means.
    weights : array of shape (n_matrices,) or None
        Non-negative weights (normalised to sum to one); equal by default.
    tol : float
        Stop when the Riemannian gradient norm is below this.
    maxiter : int
        Maximum number of iterations (a warning says when it was reached).
    init : array of shape (..., n, n) or None
        Starting point; the weighted arithmetic mean by default.

    Returns
    -------
    M : ndarray or tensor of shape (..., n, n)
    """
    T, as_numpy = to_tensor(C)
    check_symmetric(T, "matrices given to mean_riemann")
    n_matrices = T.shape[-3]
    if weights is None:
        w = torch.full((n_matrices,), 1.0 / n_matrices, dtype=T.dtype, device=T.device)
    else:
        w, _ = to_tensor(weights, device=T.device, dtype=T.dtype)
        if w.shape != (n_matrices,) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"weights must be {n_matrices} non-negative numbers with a positive sum")
        w = w / w.sum()
    M = (w[:, None, None] * T).sum(-3) if init is None else to_tensor(init, device=T.device, dtype=T.dtype)[0]
    step, best = 1.0, math.inf
    for _ in range(maxiter):
        root, invroot = _eig_pair(M)
        whitened = invroot[..., None, :, :] @ T @ invroot[..., None, :, :]
        J = (w[:, None, None] * spd_log(whitened, "matrices given to mean_riemann")).sum(-3)
        M = root @ apply_eigenvalue_function(step * J, torch.exp) @ root
        crit = float(torch.linalg.matrix_norm(J).max())
        if step * crit < best:
            step, best = 0.95 * step, step * crit
        else:
            step *= 0.5
        if crit <= tol or step <= tol:
            break
    else:
        warnings.warn(f"mean_riemann: no convergence in {maxiter} iterations (gradient norm {crit:.2g})",
                      stacklevel=2)
    return to_output(M, as_numpy)


def log_map(C, ref):
    """Map SPD matrices to the tangent space at ``ref``: ``logm(ref^{-1/2} C ref^{-1/2})``.

    Parameters
    ----------
    C : ndarray or tensor of shape (..., n, n)
    ref : ndarray or tensor of shape (n, n)

    Returns
    -------
    S : same type, shape (..., n, n), symmetric
    """
    T, as_numpy = to_tensor(C)
    R, _ = to_tensor(ref, device=T.device, dtype=T.dtype)
    _, invroot = _eig_pair(R)
    check_symmetric(T, "matrices given to log_map")
    return to_output(spd_log(invroot @ T @ invroot, "matrices given to log_map"), as_numpy)


def exp_map(S, ref):
    """Inverse of :func:`log_map`: ``ref^{1/2} expm(S) ref^{1/2}``, shape (..., n, n)."""
    T, as_numpy = to_tensor(S)
    R, _ = to_tensor(ref, device=T.device, dtype=T.dtype)
    root, _ = _eig_pair(R)
    return to_output(root @ apply_eigenvalue_function(T, torch.exp) @ root, as_numpy)


def _triu(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.triu_indices(n, n, device=device)
    weights = torch.full(rows.shape, math.sqrt(2.0), dtype=torch.float64, device=device)
    weights[rows == cols] = 1.0
    return torch.stack([rows, cols]), weights


def upper(S):
    """Weighted upper triangle of symmetric matrices: (..., n, n) -> (..., n (n + 1) / 2)."""
    T, as_numpy = to_tensor(S)
    idx, weights = _triu(T.shape[-1], T.device)
    return to_output(T[..., idx[0], idx[1]] * weights.to(T.dtype), as_numpy)


def unupper(v, n: int | None = None):
    """Inverse of :func:`upper`: (..., n (n + 1) / 2) -> (..., n, n)."""
    T, as_numpy = to_tensor(v)
    n_features = T.shape[-1]
    if n is None:
        n = int(round((math.sqrt(1 + 8 * n_features) - 1) / 2))
    if n * (n + 1) // 2 != n_features:
        raise ValueError(f"{n_features} features are not the upper triangle of a square matrix")
    idx, weights = _triu(n, T.device)
    out = torch.zeros(*T.shape[:-1], n, n, dtype=T.dtype, device=T.device)
    values = T / weights.to(T.dtype)
    out[..., idx[0], idx[1]] = values
    out[..., idx[1], idx[0]] = values
    return to_output(out, as_numpy)


def tangent_space(C, ref):
    """Tangent vectors of SPD matrices at ``ref``: ``upper(log_map(C, ref))``, shape (..., n (n + 1) / 2)."""
    T, as_numpy = to_tensor(C)
    return to_output(upper(log_map(T, ref)), as_numpy)


def untangent_space(v, ref):
    """SPD matrices from tangent vectors at ``ref``, shape (..., n, n)."""
    T, as_numpy = to_tensor(v)
    return to_output(exp_map(unupper(T), ref), as_numpy)


def distance_riemann(A, B):
    """Affine-invariant distance ``||logm(A^{-1/2} B A^{-1/2})||_F``, broadcast over leading axes."""
    TA, as_numpy = to_tensor(A)
    TB, _ = to_tensor(B, device=TA.device, dtype=TA.dtype)
    # Generalised eigenvalues of (B, A) are those of A^{-1/2} B A^{-1/2}.
    L = torch.linalg.cholesky(TA)
    Linv = torch.linalg.solve_triangular(L, torch.eye(L.shape[-1], dtype=L.dtype, device=L.device), upper=False)
    eig = torch.linalg.eigvalsh(Linv @ TB @ Linv.transpose(-1, -2))
    return to_output(torch.log(eig).pow(2).sum(-1).sqrt(), as_numpy)
