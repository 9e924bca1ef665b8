"""Checkpoints: one file, replaced atomically, holding everything a run needs to continue exactly."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .._utils.files import write_atomically

CHECKPOINT_NAME = "checkpoint.pt"


def save_atomically(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` so that ``path`` always holds a whole file, old or new.

    The bytes go to a temporary file in the same folder, are flushed to disk, then renamed over
    ``path`` (a rename within one file system is atomic): a process killed mid-write leaves the
    previous checkpoint intact, never a truncated one.
    """
    return write_atomically(path, lambda handle: torch.save(obj, handle), sync_folder=True)


def load(path: str | os.PathLike) -> dict:
    """A checkpoint written by :func:`save_atomically`, on the CPU."""
    # weights_only=False: the file holds numpy and Python RNG states, and the history, besides
    # tensors. Only load checkpoints this code wrote.
    return torch.load(Path(path), map_location="cpu", weights_only=False)


def rng_state() -> dict:
    """The states of every generator a training step may draw from: torch (CPU and each CUDA
    device), numpy's global generator and Python's ``random``."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
