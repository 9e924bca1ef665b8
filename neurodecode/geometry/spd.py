"""Functions of SPD matrices, batched over leading axes: sqrt, inverse sqrt, log, exp, power."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

from ._backend import check_finite, to_output, to_tensor


def check_symmetric(C: torch.Tensor, what: str = "matrices", *, rtol: float = 1e-10) -> None:
    """Raise a clear error unless every matrix is square, finite and symmetric (cheap: no eigenvalues).

    Parameters
    ----------
    C : tensor of shape (..., n, n)
    rtol : float
        Relative tolerance for the symmetry test, scaled by the largest absolute entry.
    """
    if C.ndim < 2 or C.shape[-1] != C.shape[-2]:
        raise ValueError(f"{what} must have shape (..., n, n); got {tuple(C.shape)}")
    check_finite(C, what)
    scale = C.abs().amax(dim=(-2, -1)).clamp(min=torch.finfo(C.dtype).tiny)
    asym = (C - C.transpose(-1, -2)).abs().amax(dim=(-2, -1)) / scale
    if bool((asym > max(rtol, 100 * torch.finfo(C.dtype).eps)).any()):
        raise ValueError(f"{what} are not symmetric (largest relative asymmetry {float(asym.max()):.3g})")


def check_positive(eigvals: torch.Tensor, what: str = "matrices") -> None:
    """Raise a clear error when a matrix has an eigenvalue <= 0 (eigenvalues ascending, shape (..., n))."""
    bad = eigvals[..., 0] <= 0
    if bool(bad.any()):
        raise ValueError(
            f"{what} are not positive definite: {int(bad.sum())} of {bad.numel()} have a smallest eigenvalue "
            f"<= 0 (min {float(eigvals[..., 0].min()):.3g}); use a shrinkage estimator such as 'oas' or 'lwf'")


def check_spd(C: torch.Tensor, what: str = "matrices", *, rtol: float = 1e-10) -> None:
    """Raise a clear error unless every matrix is symmetric positive definite."""
    check_symmetric(C, what, rtol=rtol)
    check_positive(eigh(C)[0], what)


def eigh(C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched symmetric eigendecomposition, split over CPU threads.

    torch runs a batch of small LAPACK eigendecompositions one after the other on a single
    core; LAPACK releases the GIL, so chunks in a thread pool use every core torch is allowed
    (``torch.get_num_threads()``).
    """
    n_threads = torch.get_num_threads()
    if C.device.type != "cpu" or n_threads < 2 or C.ndim < 3 or C.shape[0] < 2 * n_threads:
        return torch.linalg.eigh(C)
    chunks = torch.tensor_split(C, n_threads)
    with ThreadPoolExecutor(n_threads) as pool:
        parts = list(pool.map(torch.linalg.eigh, chunks))
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def apply_eigenvalue_function(C, fn: Callable[[torch.Tensor], torch.Tensor], *, positive: str | None = None):
    """``U diag(fn(λ)) Uᵀ`` for each symmetric matrix ``C = U diag(λ) Uᵀ``.

    Parameters
    ----------
    C : ndarray or tensor of shape (..., n, n)
    fn : callable
        Applied elementwise to the eigenvalues (a torch function).
    positive : str or None
        When given, the matrices must be positive definite, checked on the eigenvalues already
        computed (no second decomposition); the string names them in the error.
    """
    T, as_numpy = to_tensor(C)
    eigvals, eigvecs = eigh(T)
    if positive is not None:
        check_positive(eigvals, positive)
    out = (eigvecs * fn(eigvals)[..., None, :]) @ eigvecs.transpose(-1, -2)
    return to_output(out, as_numpy)


# Below this size cuSOLVER decomposes a batch in one call (syevjBatched); above it torch loops
# over the matrices, about 0.7 ms each on an H200 at 64x64, so a batch of logarithms is far
# faster through matrix products alone.
_CUDA_BATCHED_EIGH_MAX_N = 32


def _use_matmul_log(T: torch.Tensor) -> bool:
    return T.device.type == "cuda" and T.shape[-1] > _CUDA_BATCHED_EIGH_MAX_N and T.ndim >= 3


def _sqrt_newton_schulz(Z: torch.Tensor, eye: torch.Tensor, maxiter: int = 100) -> torch.Tensor:
    """Square root of matrices whose eigenvalues lie in (0, 1], by the coupled Newton-Schulz iteration."""
    tol = 10 * torch.finfo(Z.dtype).eps * Z.shape[-1]
    Y, Q = Z, eye.expand_as(Z)
    for _ in range(maxiter):
        T = 1.5 * eye - 0.5 * (Q @ Y)
        Y, Q = Y @ T, T @ Q
        if float(torch.linalg.matrix_norm(T - eye).max()) < tol:
            break
    return Y


def _logm_matmul(T: torch.Tensor, what: str) -> torch.Tensor:
    """Logarithm of SPD matrices by inverse scaling and squaring, with matrix products only.

    Scale so every eigenvalue lies in (0, 1], take square roots until the matrices are within
    0.1 of the identity (Frobenius), sum the Taylor series of log(I + E), and undo both steps:
    ``log C = log(s) I + 2^k log(Z^{1/2^k})``.
    """
    failed = torch.linalg.cholesky_ex(T).info > 0
    if bool(failed.any()):
        smallest = float(torch.linalg.eigvalsh(T[failed])[..., 0].min())
        raise ValueError(f"{what} are not positive definite: {int(failed.sum())} of {failed.numel()} have a "
                         f"smallest eigenvalue <= 0 (min {smallest:.3g}); use a shrinkage estimator such as "
                         "'oas' or 'lwf'")
    eye = torch.eye(T.shape[-1], dtype=T.dtype, device=T.device)
    scale = torch.linalg.matrix_norm(T)[..., None, None]  # Frobenius >= spectral norm
    Z = T / scale
    k = 0
    while float(torch.linalg.matrix_norm(Z - eye).max()) > 0.1:
        Z = _sqrt_newton_schulz(Z, eye)
        k += 1
    E = Z - eye
    terms = 16 if T.dtype == torch.float64 else 8
    L = eye * ((-1) ** (terms + 1) / terms)
    for j in range(terms - 1, 0, -1):  # Horner: E (1/1 - E (1/2 - E (1/3 - ...)))
        L = eye * ((-1) ** (j + 1) / j) + E @ L
    return (2.0 ** k) * (E @ L) + torch.log(scale) * eye


def spd_log(T: torch.Tensor, what: str = "matrices") -> torch.Tensor:
    """Logarithm of a batch of SPD tensors, (..., n, n), choosing the fastest exact method for the device."""
    if _use_matmul_log(T):
        return _logm_matmul(T, what)
    return apply_eigenvalue_function(T, torch.log, positive=what)


def sqrtm(C):
    """Principal square root of SPD matrices, shape (..., n, n)."""
    return apply_eigenvalue_function(C, torch.sqrt, positive="matrices given to sqrtm")


def invsqrtm(C):
    """Inverse principal square root of SPD matrices, shape (..., n, n)."""
    return apply_eigenvalue_function(C, torch.rsqrt, positive="matrices given to invsqrtm")


def logm(C):
    """Principal logarithm of SPD matrices, shape (..., n, n)."""
    T, as_numpy = to_tensor(C)
    return to_output(spd_log(T, "matrices given to logm"), as_numpy)


def expm(C):
    """Exponential of symmetric matrices, shape (..., n, n)."""
    return apply_eigenvalue_function(C, torch.exp)


def powm(C, alpha: float):
    """``C ** alpha`` for SPD matrices, shape (..., n, n)."""
    return apply_eigenvalue_function(C, lambda v: v ** alpha, positive="matrices given to powm")
