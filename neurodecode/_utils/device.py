"""The one device rule of every torch-backed piece (trainer, GPU geometry, deep and foundation models, --device).

* ``None`` and ``"auto"``: the GPU when torch sees one (``cuda:local_rank`` under torchrun), else the CPU.
* ``"cpu"``, ``"cuda"``, ``"cuda:1"``...: that device; asking for CUDA where torch sees none is an error
  that says so (a fit silently moved to the CPU would take hours instead of minutes).
* ``for_inference=True``: a model fitted on a GPU predicts on the CPU of a machine without one (a
  model file trained on a GPU server and used on a laptop), instead of failing.
"""

from __future__ import annotations

import torch

__all__ = ["DEVICE_CHOICES", "resolve_device"]

#: What a ``device`` parameter or ``--device`` accepts, besides ``"cuda:N"``.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto", local_rank: int = 0, *,
                   for_inference: bool = False) -> torch.device:
    """The torch device that ``device`` names under the rule above.

    Parameters
    ----------
    device : str, torch.device or None
    local_rank : int
        This process's GPU under torchrun (``"auto"`` and a bare ``"cuda"`` pick it).
    for_inference : bool
        Fall back to the CPU when CUDA is named but absent.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        A string torch cannot read as a device, or CUDA named where none is seen (unless ``for_inference``).
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            if for_inference:
                return torch.device("cpu")
            raise ValueError(f"device={str(device)!r} was asked for, but torch sees no CUDA device here; "
                             "use 'auto' or 'cpu'")
        if resolved.index is None:
            resolved = torch.device(f"cuda:{local_rank}")
    return resolved
