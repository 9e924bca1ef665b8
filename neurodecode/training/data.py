"""Which trials go where: the validation split, the epoch's order, and the batches of each process.

Everything here is a pure function of the seed, the epoch number and the topology, so that a
resumed run and every DDP process agree on the batches without talking to each other.
"""

from __future__ import annotations

import numpy as np
import torch


def stratified_split(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices, holding out ``fraction`` of each class.

    Parameters
    ----------
    labels : array-like, shape (n_trials,) or None
        Class labels; None, or labels that are not integers, booleans or strings, give a plain
        seeded shuffle split instead (regression targets have no classes to balance).
    fraction : float
        In [0, 1). Each class gives ``round(fraction * n_class)`` trials, but keeps at least one
        for training.
    seed : int

    Returns
    -------
    train, val : ndarray of int64, sorted
    """
    if labels is None:
        raise ValueError("stratified_split needs labels; pass n_trials to random_split instead")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if labels.dtype.kind not in "iubUSO":
        return random_split(len(labels), fraction, seed)
    val = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_val = min(int(np.floor(fraction * len(members) + 0.5)), len(members) - 1)
        val.append(rng.permutation(members)[:n_val])
    val = np.sort(np.concatenate(val)).astype(np.int64) if val else np.empty(0, np.int64)
    train = np.setdiff1d(np.arange(len(labels), dtype=np.int64), val)
    return train, val


def random_split(n_trials: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices, ``round(fraction * n_trials)`` held out at random."""
    order = np.random.default_rng(seed).permutation(n_trials)
    n_val = min(int(np.floor(fraction * n_trials + 0.5)), n_trials - 1)
    return np.sort(order[n_val:]).astype(np.int64), np.sort(order[:n_val]).astype(np.int64)


def global_batches(n_trials: int, batch_size: int, world_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each global batch over ``n_trials`` trials in epoch order.

    A last batch of fewer than ``2 * world_size`` trials is merged into the one before it, so that
    every process gets at least two trials of every batch (batch normalisation refuses one).
    """
    if n_trials < world_size:
        raise ValueError(f"{n_trials} training trials cannot be shared among {world_size} processes")
    bounds = [(start, min(start + batch_size, n_trials)) for start in range(0, n_trials, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2 * world_size:
        bounds[-2:] = [(bounds[-2][0], n_trials)]
    return bounds


def epoch_order(indices: np.ndarray, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The training indices in the order of epoch ``epoch`` (0-based): the same in every process and
    in a resumed run, since it depends on nothing but its arguments."""
    if not shuffle:
        return np.asarray(indices)
    rng = np.random.default_rng([seed, epoch])
    return np.asarray(indices)[rng.permutation(len(indices))]


def local_batches(order: np.ndarray, batch_size: int, rank: int, world_size: int) -> list[np.ndarray]:
    """This process's share of each global batch: every ``world_size``-th trial from ``rank``.

    Returns
    -------
    batches : list of (ndarray of int64, int)
        The local indices and the size of the global batch they belong to (the step's loss is
        weighted by it, so that the DDP gradient equals the single-process one).
    """
    return [(order[start:stop][rank::world_size], stop - start)
            for start, stop in global_batches(len(order), batch_size, world_size)]


class BatchPlan:
    """A DataLoader ``batch_sampler`` following :func:`local_batches`, one epoch at a time.

    The DataLoader asks it for index lists in the main process, so :meth:`set_epoch` takes effect
    even with persistent workers.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, rank: int, world_size: int, seed: int,
                 shuffle: bool):
        self.indices, self.batch_size, self.rank, self.world_size = indices, batch_size, rank, world_size
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[tuple[np.ndarray, int]]:
        """:func:`local_batches` of the current epoch."""
        order = epoch_order(self.indices, self.seed, self.epoch, self.shuffle)
        return local_batches(order, self.batch_size, self.rank, self.world_size)

    def __iter__(self):
        return iter([local.tolist() for local, _ in self.batches()])

    def __len__(self) -> int:
        return len(global_batches(len(self.indices), self.batch_size, self.world_size))


def shard(indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Every ``world_size``-th index from ``rank``: this process's part of an evaluation set."""
    return np.asarray(indices)[rank::world_size]


def as_tensor(values, dtype=None) -> torch.Tensor:
    """An array, list or tensor as a CPU (or device) tensor without copying when it can."""
    if isinstance(values, torch.Tensor):
        return values if dtype is None else values.to(dtype)
    array = np.asarray(values)
    if dtype is None and array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)  # the weights are float32: convert once, not per batch
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if dtype is None else tensor.to(dtype)
