"""One training loop for every torch model: :class:`Trainer`.

Needs torch and numpy only (no scikit-learn, MNE or braindecode), so that it runs on a GPU
machine that has nothing else installed.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, default_collate

from .._utils.device import resolve_device
from . import checkpoint as ckpt
from . import distributed as ddp
from .config import MONITORS, TrainConfig
from .data import BatchPlan, as_tensor, local_batches, random_split, shard, stratified_split
from .schedule import WarmupCosine, warmup_steps_for

__all__ = ["TrainResult", "Trainer", "predict_logits", "resolve_device", "should_compile"]

#: The ``"auto"`` rule copies arrays to a CUDA device when they take less than this share of its free memory.
DEVICE_MEMORY_SHARE = 0.25


def _use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "bf16":
        return True
    if precision == "fp32":
        return False
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def should_compile(setting, device_type: str, deterministic: bool, projected_seconds: float | None,
                   min_seconds: float) -> bool:
    """Whether to wrap the model in ``torch.compile``.

    The ``"auto"`` rule: compile on CUDA when the eager run still ahead is projected to last at least
    ``min_seconds``. Compiling an EEG network takes tens of seconds (the first steps of each new
    batch shape, train and eval), and can at best remove the eager per-step overhead, so it pays
    only on long runs: big models, big datasets or many epochs. The projection is the time of the
    first epoch, run eagerly, times the epochs left. On the CPU and under ``deterministic`` it is
    never used (compiled kernels do not promise bit-identical reruns).

    Parameters
    ----------
    setting : bool or "auto"
    device_type : str
    deterministic : bool
    projected_seconds : float or None
        Eager seconds still ahead; None before any epoch has been timed (then "auto" waits).
    min_seconds : float

    Returns
    -------
    bool
    """
    if deterministic:
        return False
    if setting is True or setting is False:
        return setting
    return device_type == "cuda" and projected_seconds is not None and projected_seconds >= min_seconds


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes
    ----------
    model : torch.nn.Module
        The trained model (the caller's object, unwrapped: no DDP, no compilation), in eval mode,
        holding the best epoch's weights when ``restore_best`` and a validation set were used.
    history : list of dict
        One record per epoch: ``epoch`` (1-based), ``train_loss``, ``val_loss``, ``val_accuracy``,
        ``val_balanced_accuracy`` (None without validation; the accuracies None for non-class
        outputs), ``lr`` (at the epoch's last step), ``seconds``.
    best_epoch : int or None
        1-based epoch whose weights were kept; None without validation.
    stopped_early : bool
    resumed_from : int or None
        Epochs already done in the checkpoint this run resumed from; None for a fresh run.
    compiled_at : int or None
        Epoch (1-based) from which the model ran compiled; None if never.
    n_train, n_val : int
    world_size : int
    device : torch.device
        Where the model was trained.
    """

    model: nn.Module
    history: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    resumed_from: int | None = None
    compiled_at: int | None = None
    n_train: int = 0
    n_val: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def _collate_xy(items):
    """Batches of (x, y) from items of (x, y, ...): braindecode's windows carry their indices too."""
    return default_collate([(item[0], item[1]) for item in items])


def _is_dataset(X) -> bool:
    return isinstance(X, Dataset) and not isinstance(X, (np.ndarray, torch.Tensor))


def _dataset_labels(dataset):
    """Labels of a Dataset when it exposes them cheaply (``targets`` or ``y``), else None."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) > 1:
        return dataset.tensors[1].cpu().numpy()
    for name in ("targets", "y"):
        values = getattr(dataset, name, None)
        if values is not None and hasattr(values, "__len__") and len(values) == len(dataset):
            return np.asarray(values)
    return None


class _Source:
    """Trials and labels, and how batches of them reach the device.

    Arrays and tensors kept on the device are indexed there (no DataLoader, no copy per step: the
    fastest way to feed a GPU from a dataset that fits in its memory). Anything else goes through a
    DataLoader with pinned memory and non-blocking copies.
    """

    def __init__(self, X, y, device: torch.device, config: TrainConfig):
        self.device = device
        self.config = config
        if _is_dataset(X):
            self.dataset, self.X, self.y = X, None, None
            self.labels = _dataset_labels(X)
            return
        if y is None:
            raise ValueError("Trainer.fit: y is required when X is an array or a tensor")
        X, y = as_tensor(X), as_tensor(y)
        if len(X) != len(y):
            raise ValueError(f"Trainer.fit: X holds {len(X)} trials but y holds {len(y)} labels")
        if X.is_floating_point() and X.dtype != torch.float32:
            X = X.float()
        self.labels = y.cpu().numpy()
        if self._keep_on_device(X):
            self.dataset, self.X, self.y = None, X.to(device), y.to(device)
        else:
            self.dataset, self.X, self.y = TensorDataset(X.cpu(), y.cpu()), None, None

    def _keep_on_device(self, X: torch.Tensor) -> bool:
        choice = self.config.data_on_device
        if choice is not True and choice is not False:  # "auto"
            if self.device.type != "cuda":
                return True
            free, _ = torch.cuda.mem_get_info(self.device)
            return X.element_size() * X.numel() < DEVICE_MEMORY_SHARE * free
        return choice

    def __len__(self) -> int:
        return len(self.dataset) if self.dataset is not None else len(self.X)

    def _to_device(self, xb, yb):
        xb = xb.to(self.device, non_blocking=True)
        if xb.is_floating_point() and xb.dtype != torch.float32:
            xb = xb.float()
        return xb, yb.to(self.device, non_blocking=True)

    def _loader(self, epoch: int, dataset=None, **kwargs) -> DataLoader:
        # A generator of its own: a DataLoader otherwise draws its workers' base seed from torch's
        # global generator, which would shift the dropout masks that follow by the loader's use.
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        # Pinned host memory lets the copies to the GPU (non_blocking=True) overlap computation.
        return DataLoader(self.dataset if dataset is None else dataset, collate_fn=_collate_xy,
                          num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda",
                          generator=generator, **kwargs)

    def train_batches(self, plan: BatchPlan):
        """(x, y, global batch size) of the plan's epoch, on the device."""
        batches = plan.batches()
        if self.dataset is None:
            for local, size in batches:
                index = torch.from_numpy(local).to(self.device, non_blocking=True)
                yield self.X.index_select(0, index), self.y.index_select(0, index), size
            return
        for (xb, yb), (_, size) in zip(self._loader(plan.epoch, batch_sampler=plan), batches):
            yield (*self._to_device(xb, yb), size)

    def eval_batches(self, indices: np.ndarray, batch_size: int):
        if len(indices) == 0:
            return
        if self.dataset is None:
            for start in range(0, len(indices), batch_size):
                index = torch.from_numpy(np.asarray(indices[start:start + batch_size])).to(self.device)
                yield self.X.index_select(0, index), self.y.index_select(0, index)
            return
        subset = Subset(self.dataset, np.asarray(indices).tolist())
        for xb, yb in self._loader(-1, dataset=subset, batch_size=batch_size, shuffle=False):
            yield self._to_device(xb, yb)


def _validation_source(val, device, config) -> _Source:
    """The explicit validation data of ``fit(..., val=...)``, as a source of its own."""
    if isinstance(val, (tuple, list)) and len(val) == 2:
        return _Source(val[0], val[1], device, config)
    if _is_dataset(val):
        return _Source(val, None, device, config)
    raise ValueError("Trainer.fit: val must be (X_val, y_val) or a torch Dataset")


@contextlib.contextmanager
def _determinism(config: TrainConfig, device: torch.device):
    """Set torch's global determinism switches for the run, and put them back after it."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        if config.deterministic:
            if device.type == "cuda":
                # cuBLAS is deterministic only with a fixed workspace; read when cuBLAS starts.
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed trial shapes: autotuning pays after a few steps
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2], before[3]


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # seeds every CUDA device too
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class Trainer:
    """Train a ``torch.nn.Module`` on arrays, tensors or a Dataset.

    One loop for every model of the package: AdamW with a warmed-up cosine schedule, gradient
    clipping, label smoothing, bfloat16 autocast on CUDA, optional ``torch.compile``, a seeded
    stratified validation split with early stopping and best-weights restore, atomic checkpoints
    that resume exactly, and DistributedDataParallel under ``torchrun``.

    Parameters
    ----------
    config : TrainConfig or None
        None uses ``TrainConfig()``.
    loss_fn : callable or None
        ``loss_fn(outputs, targets) -> scalar``, a mean over the batch (as torch's losses reduce by
        default). None: cross-entropy on class indices, with ``config.label_smoothing`` in training.
    augment : callable or None
        ``augment(x, y) -> (x, y)``, applied to each training batch on the device, before the
        forward pass (never to validation batches). When it has ``state_dict()`` and
        ``load_state_dict(state)``, its state (its random generators) goes into checkpoints.
    callbacks : sequence of callables
        ``callback(record, model)`` after each epoch, in every process: ``record`` is the epoch's
        history entry, ``model`` the unwrapped module.

    Examples
    --------
    >>> result = Trainer(TrainConfig(max_epochs=50, lr=1e-3)).fit(net, X, y)  # doctest: +SKIP
    >>> result.history[-1]["val_loss"], result.best_epoch  # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig | None = None, *, loss_fn: Callable | None = None,
                 augment: Callable | None = None, callbacks: Sequence[Callable] = ()):
        self.config = config if config is not None else TrainConfig()
        self.loss_fn = loss_fn
        self.augment = augment
        self.callbacks = tuple(callbacks)

    # -- losses --------------------------------------------------------------------------------

    def _train_loss(self, outputs, targets):
        if self.loss_fn is not None:
            return self.loss_fn(outputs, targets)
        return nn.functional.cross_entropy(outputs, targets.long(), label_smoothing=self.config.label_smoothing)

    def _eval_loss(self, outputs, targets):
        if self.loss_fn is not None:
            return self.loss_fn(outputs, targets)
        return nn.functional.cross_entropy(outputs, targets.long())

    # -- the run -------------------------------------------------------------------------------

    def fit(self, model: nn.Module, X, y=None, *, val=None) -> TrainResult:
        """Train ``model`` in place.

        Parameters
        ----------
        model : torch.nn.Module
            Built by the caller (and seeded by it: the trainer seeds only what follows). Moved to
            the device.
        X : ndarray or Tensor, shape (n_trials, ...), or torch Dataset
            Trials; a Dataset yields ``(x, y, ...)`` items. Floating arrays become float32.
        y : array-like or Tensor, shape (n_trials,)
            Targets (class indices for the default loss); unused with a Dataset.
        val : (X_val, y_val) or Dataset, optional
            Validation data; None holds out ``config.val_fraction`` of ``X`` (stratified when
            labels are available: arrays, ``TensorDataset``, or a Dataset with ``targets``/``y``).

        Returns
        -------
        TrainResult
        """
        config = self.config.validate()
        device = resolve_device(config.device, ddp.local_rank())
        if device.type == "cuda":
            torch.cuda.set_device(device)  # before NCCL starts: its communicator binds the current device
        topology = ddp.setup(config.distributed, device.type)
        with _determinism(config, device):
            return self._fit(model, X, y, val, config, topology, device)

    def _fit(self, model, X, y, val, config, topology, device) -> TrainResult:
        source = _Source(X, y, device, config)
        if val is not None:
            val_source = _validation_source(val, device, config)
            train_idx, val_idx = np.arange(len(source), dtype=np.int64), np.arange(len(val_source), dtype=np.int64)
        else:
            val_source = source
            if config.val_fraction > 0:
                split = (stratified_split(source.labels, config.val_fraction, config.seed)
                         if source.labels is not None else random_split(len(source), config.val_fraction, config.seed))
                train_idx, val_idx = split
            else:
                train_idx, val_idx = np.arange(len(source), dtype=np.int64), np.empty(0, np.int64)
        has_val = len(val_idx) > 0
        steps_per_epoch = len(local_batches(train_idx, config.batch_size, 0, topology.world_size))
        total_steps = steps_per_epoch * config.max_epochs
        eval_batch = config.eval_batch_size or 2 * config.batch_size

        _seed_everything(config.seed + topology.rank)
        raw = model.to(device)
        if topology.active and config.sync_batchnorm:
            raw = nn.SyncBatchNorm.convert_sync_batchnorm(raw)
        wrapped = raw
        if topology.active:
            wrapped = nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
        optimizer = torch.optim.AdamW(_param_groups(raw, config.weight_decay), lr=config.lr,
                                      **({"fused": True} if device.type == "cuda" else {}))
        schedule = WarmupCosine(total_steps, warmup_steps_for(total_steps, config.warmup_fraction),
                                config.min_lr_fraction, cosine=config.schedule == "cosine")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        bf16 = _use_bf16(config.precision, device)
        higher_better = MONITORS[config.monitor]

        state = {"epoch": 0, "history": [], "best_score": None, "best_epoch": None, "best_state": None,
                 "bad_epochs": 0, "stopped_early": False, "compiled_at": None}
        resumed_from = None
        path = Path(config.checkpoint_dir) / ckpt.CHECKPOINT_NAME if config.checkpoint_dir else None
        if path is not None and config.resume and path.exists():
            saved = ckpt.load(path)
            self._check_compatible(saved, config, len(train_idx), len(val_idx), topology, path)
            raw.load_state_dict(saved["model"])
            resumed_from = saved["epoch"]
            for key in state:
                if key in saved:
                    state[key] = saved[key]
            if state["best_state"] is not None:
                state["best_state"] = {k: v.to(device) for k, v in state["best_state"].items()}
            if saved["finished"]:
                raw.eval()
                return self._result(raw, state, resumed_from, train_idx, val_idx, topology, device)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            rngs = saved["rng"]
            ckpt.set_rng_state(rngs[topology.rank] if len(rngs) == topology.world_size else rngs[0])
            if self.augment is not None and saved.get("augment") is not None and hasattr(self.augment,
                                                                                          "load_state_dict"):
                self.augment.load_state_dict(saved["augment"])

        runner = wrapped
        if state["compiled_at"] is not None or should_compile(config.compile, device.type, config.deterministic,
                                                              None, config.compile_min_seconds):
            runner = torch.compile(wrapped, mode=config.compile_mode)
            state["compiled_at"] = state["compiled_at"] or state["epoch"] + 1
        plan = BatchPlan(train_idx, config.batch_size, topology.rank, topology.world_size, config.seed,
                         config.shuffle)

        while state["epoch"] < config.max_epochs and not state["stopped_early"]:
            epoch = state["epoch"]
            plan.set_epoch(epoch)
            timing = epoch == 0 and config.compile == "auto" and runner is wrapped
            started = time.perf_counter()
            train_loss = self._train_epoch(runner, raw, optimizer, scheduler, source, plan, bf16, topology,
                                           device, config, timing)
            record = {"epoch": epoch + 1, "train_loss": train_loss["loss"], "val_loss": None, "val_accuracy": None,
                      "val_balanced_accuracy": None, "lr": optimizer.param_groups[0]["lr"]}
            if has_val:
                record.update(self._evaluate(runner, val_source, shard(val_idx, topology.rank, topology.world_size),
                                             eval_batch, bf16, topology, device))
            record["seconds"] = time.perf_counter() - started
            if not math.isfinite(record["train_loss"]):
                raise FloatingPointError(f"Trainer: the training loss is {record['train_loss']} at epoch {epoch + 1}: "
                                         "lower the learning rate, or check the inputs' scale")
            state["history"].append(record)
            state["epoch"] = epoch + 1
            if has_val:
                self._early_stopping(state, record, config, raw, higher_better)
            if timing and should_compile("auto", device.type, config.deterministic,
                                         train_loss["epoch_seconds"] * (config.max_epochs - epoch - 1),
                                         config.compile_min_seconds):
                runner = torch.compile(wrapped, mode=config.compile_mode)
                state["compiled_at"] = epoch + 2
            for callback in self.callbacks:
                callback(record, raw)
            if config.verbose and topology.main:
                print(self._describe(record, config), flush=True)
            finished = state["epoch"] >= config.max_epochs or state["stopped_early"]
            if path is not None and (finished or state["epoch"] % config.checkpoint_every == 0):
                if finished and config.restore_best and state["best_state"] is not None:
                    raw.load_state_dict(state["best_state"])
                self._save(path, raw, optimizer, scheduler, state, config, len(train_idx), len(val_idx),
                           topology, finished)

        if config.restore_best and state["best_state"] is not None:
            raw.load_state_dict(state["best_state"])
        raw.eval()
        return self._result(raw, state, resumed_from, train_idx, val_idx, topology, device)

    def _train_epoch(self, runner, raw, optimizer, scheduler, source, plan, bf16, topology, device, config,
                     timing) -> dict:
        runner.train()
        # The loss sum stays on the device: reading it each step would stall the GPU; one read per epoch.
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        count = 0
        params = [p for p in raw.parameters() if p.requires_grad]
        started_first, started_second = time.perf_counter(), None
        n_steps = 0
        for xb, yb, global_size in source.train_batches(plan):
            if self.augment is not None:
                xb, yb = self.augment(xb, yb)
            n_local = len(xb)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs = runner(xb)
            loss = self._train_loss(outputs.float(), yb)
            # Each process's mean loss, weighted by its share of the global batch: DDP averages the
            # gradients over processes, so the step equals the single-process step on the whole batch
            # even when the batch does not split evenly.
            (loss * (n_local * topology.world_size / global_size)).backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().double() * n_local
            count += n_local
            n_steps += 1
            if timing and n_steps == 1:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                started_second = time.perf_counter()
        epoch_seconds = None
        if timing:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if n_steps > 1:
                # The first step pays one-time costs (cuDNN autotuning, allocations): time the others.
                epoch_seconds = (time.perf_counter() - started_second) * n_steps / (n_steps - 1)
            else:
                epoch_seconds = time.perf_counter() - started_first
        total = torch.stack([loss_sum, torch.tensor(float(count), dtype=torch.float64, device=device)])
        total = ddp.all_reduce_sum(total, topology).tolist()
        if timing and topology.active:
            # One decision for all processes: compiled and eager DDP replicas must not be mixed.
            slowest = torch.tensor([epoch_seconds], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(slowest, op=torch.distributed.ReduceOp.MAX)
            epoch_seconds = float(slowest.item())
        return {"loss": total[0] / total[1], "epoch_seconds": epoch_seconds}

    def _evaluate(self, runner, source, indices, batch_size, bf16, topology, device) -> dict:
        runner.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        count = torch.zeros((), dtype=torch.float64, device=device)
        per_class = None  # rows: trials of each class, correct ones of each class
        classes = True
        with torch.no_grad():
            for xb, yb in source.eval_batches(indices, batch_size):
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                    outputs = runner(xb)
                outputs = outputs.float()
                loss_sum += self._eval_loss(outputs, yb).double() * len(xb)
                count += len(xb)
                if outputs.ndim == 2 and not yb.is_floating_point() and classes:
                    n_classes = outputs.shape[1]
                    if per_class is None:
                        per_class = torch.zeros(2, n_classes, dtype=torch.float64, device=device)
                    hit = outputs.argmax(1) == yb
                    per_class[0] += torch.bincount(yb.long(), minlength=n_classes)[:n_classes].double()
                    per_class[1] += torch.bincount(yb[hit].long(), minlength=n_classes)[:n_classes].double()
                else:
                    classes = False
        # Processes with an empty share still join every reduction: agree on the width first.
        width = torch.tensor([per_class.shape[1] if per_class is not None else 0], device=device)
        if topology.active:
            torch.distributed.all_reduce(width, op=torch.distributed.ReduceOp.MAX)
        width = int(width.item())
        if per_class is None:
            per_class = torch.zeros(2, width, dtype=torch.float64, device=device)
        totals = ddp.all_reduce_sum(torch.cat([torch.stack([loss_sum, count]), per_class.flatten()]), topology)
        totals = totals.tolist()
        record = {"val_loss": totals[0] / totals[1]}
        if width and classes:
            seen, correct = np.array(totals[2:2 + width]), np.array(totals[2 + width:])
            record["val_accuracy"] = float(correct.sum() / seen.sum())
            record["val_balanced_accuracy"] = float(np.mean(correct[seen > 0] / seen[seen > 0]))
        return record

    @staticmethod
    def _early_stopping(state, record, config, raw, higher_better) -> None:
        score = record[config.monitor]
        if score is None:
            raise ValueError(f"Trainer: monitor={config.monitor!r} is not computed for these outputs; "
                             "use monitor='val_loss'")
        best = state["best_score"]
        improved = best is None or (score > best + config.min_delta if higher_better
                                    else score < best - config.min_delta)
        if improved:
            state["best_score"], state["best_epoch"], state["bad_epochs"] = score, record["epoch"], 0
            if config.restore_best:
                state["best_state"] = {k: v.detach().clone() for k, v in raw.state_dict().items()}
        else:
            state["bad_epochs"] += 1
            if config.patience is not None and state["bad_epochs"] >= config.patience:
                state["stopped_early"] = True

    def _save(self, path, raw, optimizer, scheduler, state, config, n_train, n_val, topology, finished) -> None:
        rngs = ddp.all_gather_objects(ckpt.rng_state(), topology)  # every process joins
        if topology.main:
            best = state["best_state"]
            payload = {"format": 1, "finished": finished, "model": raw.state_dict(),
                       "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                       "rng": rngs, "config": config.trajectory(),
                       "data": {"n_train": n_train, "n_val": n_val, "world_size": topology.world_size},
                       "augment": self.augment.state_dict() if hasattr(self.augment, "state_dict") else None,
                       **{k: v for k, v in state.items() if k != "best_state"},
                       "best_state": None if best is None else {k: v.cpu() for k, v in best.items()}}
            ckpt.save_atomically(payload, path)
        ddp.barrier(topology)

    @staticmethod
    def _check_compatible(saved, config, n_train, n_val, topology, path) -> None:
        if saved.get("format") != 1:
            raise ValueError(f"{path}: not a checkpoint of this trainer")
        ours = config.trajectory()
        differ = {k: (saved["config"].get(k), v) for k, v in ours.items() if saved["config"].get(k) != v}
        if differ:
            raise ValueError(f"{path} was written by another run; settings differ (checkpoint, now): {differ}. "
                             "Use another checkpoint_dir, or resume=False to start afresh")
        data = saved["data"]
        if (data["n_train"], data["n_val"]) != (n_train, n_val):
            raise ValueError(f"{path} was written for {data['n_train']} training and {data['n_val']} validation "
                             f"trials; these data have {n_train} and {n_val}")

    @staticmethod
    def _result(raw, state, resumed_from, train_idx, val_idx, topology, device) -> TrainResult:
        return TrainResult(model=raw, history=list(state["history"]), best_epoch=state["best_epoch"],
                           stopped_early=bool(state["stopped_early"]), resumed_from=resumed_from,
                           compiled_at=state["compiled_at"], n_train=len(train_idx), n_val=len(val_idx),
                           world_size=topology.world_size, device=device)

    @staticmethod
    def _describe(record, config) -> str:
        parts = [f"epoch {record['epoch']}/{config.max_epochs}", f"train_loss {record['train_loss']:.4f}"]
        for key in ("val_loss", "val_accuracy", "val_balanced_accuracy"):
            if record[key] is not None:
                parts.append(f"{key} {record[key]:.4f}")
        parts += [f"lr {record['lr']:.2e}", f"{record['seconds']:.2f} s"]
        return "  ".join(parts)


def predict_logits(model: nn.Module, X, *, batch_size: int = 256, device: str | torch.device | None = None,
                   precision: str = "auto") -> torch.Tensor:
    """The model's outputs for every trial, in eval mode, without gradients.

    Parameters
    ----------
    model : torch.nn.Module
    X : ndarray or Tensor, shape (n_trials, ...)
    batch_size : int
    device : str, torch.device or None
        None: the device of the model's first parameter.
    precision : {"auto", "bf16", "fp32"}
        As in :class:`TrainConfig`.

    Returns
    -------
    outputs : Tensor, shape (n_trials, ...), float32, on the CPU
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device) if not isinstance(device, torch.device) else device
    bf16 = _use_bf16(precision, device)
    X = as_tensor(X)
    if X.is_floating_point() and X.dtype != torch.float32:
        X = X.float()
    model = model.to(device).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            xb = X[start:start + batch_size].to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                out.append(model(xb).float().cpu())
    return torch.cat(out) if out else torch.empty(0)
