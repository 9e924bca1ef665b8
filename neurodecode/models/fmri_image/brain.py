"""The brain side: voxels to an image embedding, and voxels to a low-resolution image.

Two regressors of the embedding, as in Brain-Diffuser and MindEye: ridge regression (the
penalty chosen by leave-one-out cross-validation on the training trials, in closed form), and a
small network trained through the one :class:`~neurodecode.training.Trainer` with a regression
loss plus a contrastive one (CLIP-style InfoNCE between predicted and true embeddings of a batch),
which rewards predictions nearer their own image than the other images of the batch.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from torch import nn

from ...training import Trainer, TrainConfig, predict_logits, resolve_device

__all__ = ["ContrastiveLoss", "fit_mlp", "fit_ridge"]


def fit_ridge(X, Y, alphas) -> RidgeCV:
    """Ridge from ``X`` (n, p) to ``Y`` (n, q), one penalty for all outputs, chosen by efficient LOO."""
    return RidgeCV(alphas=np.asarray(alphas, dtype=np.float64)).fit(X, Y)


class ContrastiveLoss:
    """``mse(pred, target) + weight * InfoNCE(pred, target)``, the InfoNCE symmetric over the batch.

    Parameters
    ----------
    weight : float
        Weight of the contrastive term (0: regression only).
    temperature : float
        Softmax temperature of the cosine similarities.
    """

    def __init__(self, weight: float = 1.0, temperature: float = 0.1):
        self.weight = float(weight)
        self.temperature = float(temperature)

    def __call__(self, pred, target):
        loss = nn.functional.mse_loss(pred, target)
        if self.weight > 0 and len(pred) > 1:
            logits = nn.functional.normalize(pred, dim=1) @ nn.functional.normalize(target, dim=1).T
            logits = logits / self.temperature
            labels = torch.arange(len(pred), device=pred.device)
            nce = (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2
            loss = loss + self.weight * nce
        return loss


def _mlp(n_in: int, n_out: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, hidden), nn.GELU(), nn.LayerNorm(hidden),
                         nn.Dropout(dropout), nn.Linear(hidden, n_out))


def fit_mlp(X, Y, *, hidden: int, dropout: float, contrastive_weight: float, temperature: float, max_epochs: int,
            lr: float, weight_decay: float, batch_size: int, device: str, seed: int) -> nn.Module:
    """A one-hidden-layer network from ``X`` (n, p) to ``Y`` (n, q), trained with :class:`ContrastiveLoss`.

    Early stopping watches the loss of a seeded 20 % validation split of the trials given.

    Returns
    -------
    network : torch.nn.Module, on the CPU, in eval mode
    """
    config = TrainConfig(max_epochs=int(max_epochs), batch_size=int(batch_size), lr=float(lr),
                         weight_decay=float(weight_decay), val_fraction=0.2, patience=max(10, int(max_epochs) // 5),
                         device=device, seed=int(seed)).validate()
    target = resolve_device(config.device)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[target.index or 0] if target.type == "cuda" else []):
            torch.manual_seed(int(seed))
            network = _mlp(X.shape[1], Y.shape[1], int(hidden), float(dropout))
            result = Trainer(config, loss_fn=ContrastiveLoss(contrastive_weight, temperature)).fit(
                network, X.astype(np.float32), Y.astype(np.float32))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return result.model.cpu().eval()


def predict_mlp(network: nn.Module, X) -> np.ndarray:
    return predict_logits(network, np.asarray(X, dtype=np.float32), device="cpu", precision="fp32").numpy().astype(
        np.float64)
