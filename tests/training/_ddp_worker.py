"""Run by test_trainer.py under ``torchrun --nproc_per_node=2`` (gloo, 127.0.0.1), and imported by it
for the single-process reference.

Usage: torchrun ... _ddp_worker.py OUT_PREFIX
"""

import os
import sys

import numpy as np
import torch
from torch import nn

from neurodecode.training import TrainConfig, Trainer


def data():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 7 + [0])  # 15 trials: 4 validation, 11 training (6 + 5 per process)
    X = rng.standard_normal((15, 3, 8)).astype(np.float32) + y[:, None, None]
    return X, y


def model():
    torch.manual_seed(1)
    # No dropout and no batch normalisation: those differ between processes by design (each its own
    # masks and batch statistics); everything else must not.
    return nn.Sequential(nn.Flatten(), nn.Linear(24, 16), nn.Tanh(), nn.Linear(16, 2))


def config(batch_size, max_epochs):
    return TrainConfig(max_epochs=max_epochs, batch_size=batch_size, lr=0.05, val_fraction=0.25, patience=None,
                       grad_clip=0.5, device="cpu", restore_best=False)


def run(batch_size, max_epochs):
    seen = []

    def record_batch(x, y):  # the augmentation hook doubles as a probe of each process's share
        seen.append(len(x))
        return x, y

    X, y = data()
    result = Trainer(config(batch_size, max_epochs), augment=record_batch).fit(model(), X, y)
    return result, seen


if __name__ == "__main__":
    prefix = sys.argv[1]
    torch.set_num_threads(1)
    for batch_size, max_epochs in ((11, 1), (6, 2)):
        result, seen = run(batch_size, max_epochs)
        torch.save({"state": result.model.state_dict(), "history": result.history, "seen": seen,
                    "world_size": result.world_size, "rank": int(os.environ["RANK"])},
                   f"{prefix}-b{batch_size}-rank{os.environ['RANK']}.pt")
    torch.distributed.destroy_process_group()
