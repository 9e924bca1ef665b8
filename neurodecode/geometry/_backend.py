"""numpy at the edges, torch inside: one conversion point for every geometry function."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(X, device=None, dtype=None) -> tuple[torch.Tensor, bool]:
    """``X`` as a torch tensor, and whether it came in as numpy (so the result goes back as numpy).

    numpy input is viewed, not copied, when it is already float64 on the CPU; integer and
    float32 numpy input becomes float64 (the precision pyRiemann and scikit-learn use).
    """
    if isinstance(X, torch.Tensor):
        if dtype is not None or device is not None:
            X = X.to(device=device, dtype=dtype)
        if not X.is_floating_point():
            X = X.to(torch.float64)
        return X, False
    array = np.asarray(X)
    if array.dtype == object:
        raise TypeError("geometry functions take one regular array, not an object array of ragged trials")
    if not np.issubdtype(array.dtype, np.floating) or array.dtype == np.float16:
        array = array.astype(np.float64)
    elif dtype is None and array.dtype != np.float64:
        array = array.astype(np.float64)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if dtype is not None or device is not None:
        tensor = tensor.to(device=device, dtype=dtype)
    return tensor, True


def to_output(T: torch.Tensor, as_numpy: bool):
    """Back to numpy (on the CPU) when the input was numpy; tensors stay where they are."""
    return T.detach().cpu().numpy() if as_numpy else T


def check_finite(X: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(X).all()):
        n_bad = int((~torch.isfinite(X)).reshape(-1, *X.shape[-2:]).any(dim=(-2, -1)).sum()) if X.ndim >= 2 else 1
        raise ValueError(f"{what} holds NaN or infinite values ({n_bad} matrix/trial(s) affected)")


def batched(fn, X, batch_size: int | None):
    """Apply ``fn`` to slices of ``X`` along axis 0 and stack, bounding GPU memory."""
    if batch_size is None or len(X) <= batch_size:
        return fn(X)
    return torch.cat([fn(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])
