"""Run by test_trainer.py in a subprocess: one checkpointed training run, deterministic on a CPU.

Usage: python _resume_worker.py CHECKPOINT_DIR OUT_FILE SLEEP_SECONDS_PER_EPOCH
"""

import sys
import time

import numpy as np
import torch
from torch import nn

from neurodecode.training import TrainConfig, Trainer

MAX_EPOCHS = 8


def data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 150)
    X = rng.standard_normal((150, 4, 32)).astype(np.float32)
    X[np.arange(150), y, :] += 0.7  # class k raises channel k
    return X, y


def model():
    torch.manual_seed(11)
    # Dropout draws from torch's generator and BatchNorm keeps running buffers: the checkpoint must
    # carry both for the resumed run to match.
    return nn.Sequential(nn.Conv1d(4, 6, 5), nn.BatchNorm1d(6), nn.ELU(), nn.Dropout(0.3), nn.Flatten(),
                         nn.Linear(6 * 28, 3))


class NoisyAugment:
    """Gaussian noise from a numpy generator of its own: its state must go into the checkpoint."""

    def __init__(self):
        self.rng = np.random.RandomState(5)

    def __call__(self, x, y):
        noise = torch.from_numpy(self.rng.standard_normal(tuple(x.shape)).astype(np.float32))
        return x + 0.1 * noise, y

    def state_dict(self):
        return self.rng.get_state()

    def load_state_dict(self, state):
        self.rng.set_state(state)


def config(checkpoint_dir):
    return TrainConfig(max_epochs=MAX_EPOCHS, batch_size=16, lr=3e-3, val_fraction=0.2, patience=None,
                       label_smoothing=0.1, checkpoint_dir=checkpoint_dir, checkpoint_every=1, device="cpu")


def main(checkpoint_dir, out, sleep):
    torch.set_num_threads(1)  # one thread: the same reduction order in every run
    X, y = data()
    result = Trainer(config(checkpoint_dir), augment=NoisyAugment(),
                     callbacks=[lambda record, net: time.sleep(sleep)]).fit(model(), X, y)
    torch.save({"state": result.model.state_dict(), "history": result.history, "resumed_from": result.resumed_from},
               out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
