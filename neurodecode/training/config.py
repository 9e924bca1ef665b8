"""What a training run does, in one dataclass: every default in one place, checked in one place."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

#: Quantities early stopping can watch, and whether larger is better.
MONITORS = {"val_loss": False, "val_accuracy": True, "val_balanced_accuracy": True}

#: Fields that define the optimisation problem and its path: a checkpoint is resumed only under the
#: same values. The others (device, precision, compilation, data placement, workers, checkpointing,
#: printing) say how the run is executed, and may differ on the machine that resumes it.
TRAJECTORY_FIELDS = ("max_epochs", "batch_size", "lr", "weight_decay", "schedule", "warmup_fraction",
                     "min_lr_fraction", "grad_clip", "label_smoothing", "val_fraction", "patience", "monitor",
                     "min_delta", "restore_best", "shuffle", "seed", "sync_batchnorm")


@dataclass
class TrainConfig:
    """Settings of one :class:`~neurodecode.training.Trainer` run.

    Parameters
    ----------
    max_epochs : int
        Passes over the training trials at most; early stopping may end the run sooner.
    batch_size : int
        Trials per optimizer step, over all processes together (the global batch): under DDP each
        of the ``world_size`` processes computes ``batch_size / world_size`` of them. A last batch of
        fewer than ``2 * world_size`` trials is merged into the one before, so that no process
        steps on one trial or none (batch normalisation needs two).
    lr : float
        Peak learning rate of AdamW.
    weight_decay : float
        AdamW's decoupled weight decay, applied to weights of two or more dimensions only: biases
        and normalisation gains are left undecayed, as decaying them only pulls them to zero.
    schedule : {"cosine", "constant"}
        Learning rate after warmup: half a cosine from ``lr`` down to ``lr * min_lr_fraction`` over
        the ``max_epochs`` planned (per optimizer step, not per epoch), or constant.
    warmup_fraction : float
        Fraction of the planned optimizer steps (rounded up) during which the rate rises linearly
        to ``lr``: step ``s`` of ``w`` uses ``lr * (s + 1) / w``.
    min_lr_fraction : float
        Floor of the cosine, as a fraction of ``lr``.
    grad_clip : float or None
        Largest L2 norm of the gradient of all parameters together; None does not clip.
    label_smoothing : float
        Label smoothing of the training cross-entropy (validation loss is always unsmoothed, so
        that it stays comparable between runs).
    val_fraction : float
        Fraction of the training trials held out for validation (stratified by class, seeded by
        ``seed``), when no validation set is passed. 0 trains on everything, without early stopping.
    patience : int or None
        Stop after this many epochs in a row without improvement of ``monitor``; None never stops early.
    monitor : {"val_loss", "val_accuracy", "val_balanced_accuracy"}
        What early stopping and best-weights selection watch.
    min_delta : float
        An epoch improves only when it beats the best by more than this.
    restore_best : bool
        End with the weights of the best epoch (by ``monitor``) rather than those of the last one.
    shuffle : bool
        Visit the training trials in a new seeded order each epoch (the order depends only on
        ``seed`` and the epoch number, so that a resumed run visits them as the first would have).
    device : str
        ``"auto"``: the process's CUDA device when torch sees one (``cuda:LOCAL_RANK`` under DDP),
        else the CPU; or any torch device string.
    precision : {"auto", "bf16", "fp32"}
        ``"auto"``: bfloat16 autocast on a CUDA device that supports it, float32 elsewhere (CPU
        bfloat16 is slower than float32 for these small convolutions on most CPUs).
    compile : bool or "auto"
        Wrap the model in ``torch.compile``. ``"auto"`` compiles on CUDA only, and only once the
        first epoch, run eagerly, shows that the rest of the planned run would take longer than
        ``compile_min_seconds`` (see :func:`~neurodecode.training.trainer.should_compile`); never
        under ``deterministic=True``.
    compile_mode : str or None
        ``mode`` given to ``torch.compile`` (None: its default).
    compile_min_seconds : float
        The threshold of the ``"auto"`` rule, in seconds of projected eager training.
    data_on_device : bool or "auto"
        For arrays and tensors: copy them to the device once and index batches there, instead of
        going through a DataLoader. ``"auto"``: on the CPU always (no copy is needed); on CUDA when
        the trials take less than a quarter of the free device memory.
    num_workers : int
        DataLoader worker processes, for Dataset inputs (and arrays kept off the device).
    seed : int
        Seeds the validation split, the epoch orders and torch's generators (plus ``rank`` under DDP,
        so that each process draws its own dropout masks).
    deterministic : bool
        ``torch.use_deterministic_algorithms(True)``, cuDNN autotuning off, and no compilation, for
        the duration of the run: bit-identical reruns on one machine, at some speed.
    distributed : bool or "auto"
        ``"auto"``: train with DistributedDataParallel when a process group is initialised or the
        environment says ``WORLD_SIZE > 1`` (as ``torchrun`` sets it). False ignores both.
    sync_batchnorm : bool
        Under DDP, convert batch normalisation layers to ``SyncBatchNorm`` (statistics over the
        global batch rather than each process's share).
    checkpoint_dir : str or None
        Folder for ``checkpoint.pt``: written atomically every ``checkpoint_every`` epochs and at the
        end; None writes none.
    checkpoint_every : int
    resume : bool
        Continue from ``checkpoint_dir/checkpoint.pt`` when it exists.
    eval_batch_size : int or None
        Trials per forward pass in validation and prediction; None: ``2 * batch_size``.
    verbose : bool
        Print one line per epoch (process 0 only).
    """

    max_epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    schedule: str = "cosine"
    warmup_fraction: float = 0.05
    min_lr_fraction: float = 0.0
    grad_clip: float | None = 1.0
    label_smoothing: float = 0.0
    val_fraction: float = 0.2
    patience: int | None = 20
    monitor: str = "val_loss"
    min_delta: float = 0.0
    restore_best: bool = True
    shuffle: bool = True
    device: str = "auto"
    precision: str = "auto"
    compile: bool | str = "auto"
    compile_mode: str | None = None
    compile_min_seconds: float = 120.0
    data_on_device: bool | str = "auto"
    num_workers: int = 0
    seed: int = 0
    deterministic: bool = False
    distributed: bool | str = "auto"
    sync_batchnorm: bool = False
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    resume: bool = True
    eval_batch_size: int | None = None
    verbose: bool = False

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first setting out of range; return self."""
        def integer(name, low, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"TrainConfig: {name} must be an integer >= {low}; got {value!r}")

        def real(name, low, high, allow_none=False, high_open=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                    low <= value and (value < high if high_open else value <= high)):
                bracket = ")" if high_open else "]"
                raise ValueError(f"TrainConfig: {name} must be a number in [{low}, {high}{bracket}; got {value!r}")

        integer("max_epochs", 1)
        integer("batch_size", 1)
        integer("patience", 0, allow_none=True)
        integer("num_workers", 0)
        integer("seed", 0)
        integer("checkpoint_every", 1)
        integer("eval_batch_size", 1, allow_none=True)
        real("lr", 0.0, float("inf"), high_open=True)
        if not self.lr > 0:
            raise ValueError(f"TrainConfig: lr must be positive; got {self.lr!r}")
        real("weight_decay", 0.0, float("inf"), high_open=True)
        real("warmup_fraction", 0.0, 1.0)
        real("min_lr_fraction", 0.0, 1.0)
        real("grad_clip", 0.0, float("inf"), allow_none=True, high_open=True)
        real("label_smoothing", 0.0, 1.0, high_open=True)
        real("val_fraction", 0.0, 1.0, high_open=True)
        real("min_delta", 0.0, float("inf"), high_open=True)
        real("compile_min_seconds", 0.0, float("inf"), high_open=True)
        choices = {"schedule": ("cosine", "constant"), "monitor": tuple(MONITORS),
                   "precision": ("auto", "bf16", "fp32"), "compile": (True, False, "auto"),
                   "data_on_device": (True, False, "auto"), "distributed": (True, False, "auto")}
        for name, allowed in choices.items():
            value = getattr(self, name)
            # `1 in (True,)` is true in Python: compare types too, so that compile=1 is refused.
            if not any(value == a and type(value) is type(a) for a in allowed):
                raise ValueError(f"TrainConfig: {name} must be one of {allowed}; got {value!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"TrainConfig: device must be a string ('auto', 'cpu', 'cuda', 'cuda:1'); "
                             f"got {self.device!r}")
        return self

    def trajectory(self) -> dict:
        """The fields a resumed run must share with its checkpoint (:data:`TRAJECTORY_FIELDS`)."""
        return {k: getattr(self, k) for k in TRAJECTORY_FIELDS}
