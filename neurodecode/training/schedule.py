"""The learning-rate schedule: linear warmup, then half a cosine (or a constant), per optimizer step."""

from __future__ import annotations

import math


class WarmupCosine:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    A callable object rather than a closure so that ``torch.optim.lr_scheduler.LambdaLR`` saves
    and restores its state with a checkpoint.

    Parameters
    ----------
    total_steps : int
        Optimizer steps planned (``max_epochs * steps_per_epoch``).
    warmup_steps : int
        Steps ``0 .. warmup_steps - 1`` use ``(step + 1) / warmup_steps``: the first step already
        moves the weights, and the last warmup step reaches the peak.
    floor : float
        Multiplier reached at ``step == total_steps`` (after the last step).
    cosine : bool
        False keeps the peak after warmup.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, floor: float = 0.0, cosine: bool = True):
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"WarmupCosine: need 0 <= warmup_steps <= total_steps and total_steps >= 1; got "
                             f"warmup_steps={warmup_steps}, total_steps={total_steps}")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.floor = float(floor)
        self.cosine = bool(cosine)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if not self.cosine:
            return 1.0
        # Steps after warmup run from progress 0 (the peak) towards 1 (the floor), which is reached
        # only after the last planned step, so that the last step still moves the weights.
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(total_steps: int, warmup_fraction: float) -> int:
    """``ceil(warmup_fraction * total_steps)``, the warmup length of a run."""
    return min(total_steps, math.ceil(warmup_fraction * total_steps - 1e-9)) if warmup_fraction > 0 else 0
