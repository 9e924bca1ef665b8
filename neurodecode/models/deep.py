"""Deep decoders: braindecode networks as a scikit-learn classifier, trained by :mod:`neurodecode.training`.

:class:`DeepClassifier` builds the network from the data's signal contract at fit time (channels,
samples, classes, and the sampling rate for networks that take one), standardises the trials,
and trains through :class:`~neurodecode.training.Trainer`. :func:`deep_pipeline` wraps one in a
Pipeline for the benchmark's pipeline files.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import os
import warnings

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.validation import check_is_fitted

from .._utils.checks import check_signal_info, check_signals
from .._utils.device import resolve_device
from .torch_estimator import TorchEstimator, _braindecode_class, _callable_name, build_network, network_config

__all__ = ["AUGMENTATIONS", "DeepClassifier", "deep_pipeline", "default_max_epochs"]

#: Epochs on a CPU when neither ``max_epochs`` nor ``NEURODECODE_DEEP_EPOCHS`` says: enough for a
#: benchmark to finish on a 2-core machine, far fewer than papers train.
CPU_EPOCHS = 10
#: Most epochs on a GPU when neither says: early stopping (``patience``) normally ends runs sooner.
GPU_MAX_EPOCHS = 300
#: The signal facts a network is built from; read from the data, never from ``model_params``.
_SIGNAL_ARGUMENTS = ("n_chans", "n_times", "n_outputs", "sfreq", "input_window_seconds")


def default_max_epochs(device: str = "auto") -> int:
    """``NEURODECODE_DEEP_EPOCHS`` when set; else 10 on a CPU and 300 (stopped early) on CUDA.

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when torch sees it) or a torch device string.

    Returns
    -------
    int
    """
    value = os.environ.get("NEURODECODE_DEEP_EPOCHS")
    if value:
        try:
            epochs = int(value)
        except ValueError:
            epochs = 0
        if epochs < 1:
            raise ValueError(f"NEURODECODE_DEEP_EPOCHS must be a positive integer; got {value!r}")
        return epochs
    # The budget follows the device asked for ("cuda" on a machine without one still means a GPU
    # run: the pipeline is built here and may be fitted on a GPU machine); "auto" follows torch.
    kind = resolve_device(device, for_inference=True).type
    return GPU_MAX_EPOCHS if kind == "cuda" or str(device).startswith("cuda") else CPU_EPOCHS


# -- augmentation ------------------------------------------------------------------------------

def _braindecode_augmentation(name: str, probability: float, n_times: int, sfreq, seed: int):
    from braindecode import augmentation as aug

    if name == "ftsurrogate":
        # One phase perturbation shared by all channels keeps their phase relations (advised for BCI).
        return aug.FTSurrogate(probability, phase_noise_magnitude=0.5, channel_indep=False, random_state=seed)
    if name == "smooth_time_mask":
        return aug.SmoothTimeMask(probability, mask_len_samples=max(1, n_times // 10), random_state=seed)
    if name == "channels_dropout":
        return aug.ChannelsDropout(probability, p_drop=0.2, random_state=seed)
    if name == "gaussian_noise":
        return aug.GaussianNoise(probability, std=0.1, random_state=seed)  # on standardised trials
    if name == "sign_flip":
        return aug.SignFlip(probability, random_state=seed)
    if name == "frequency_shift":
        if sfreq is None:
            raise ValueError("DeepClassifier: augment='frequency_shift' needs the sampling rate: pass sfreq=... "
                             "or a DecodingData")
        return aug.FrequencyShift(probability, sfreq=sfreq, max_delta_freq=2.0, random_state=seed)
    raise ValueError(f"DeepClassifier: unknown augmentation {name!r}; choose from {sorted(AUGMENTATIONS)} "
                     "or pass a callable (x, y) -> (x, y)")


#: Names ``augment`` accepts, each a braindecode transform applied to half the training trials.
AUGMENTATIONS = {
    "ftsurrogate": "FTSurrogate(phase_noise_magnitude=0.5, channel_indep=False)",
    "smooth_time_mask": "SmoothTimeMask(mask_len_samples=n_times // 10)",
    "channels_dropout": "ChannelsDropout(p_drop=0.2)",
    "gaussian_noise": "GaussianNoise(std=0.1), on standardised trials",
    "sign_flip": "SignFlip()",
    "frequency_shift": "FrequencyShift(max_delta_freq=2 Hz), needs the sampling rate",
}


class _BatchAugment:
    """Transforms applied in turn to each training batch ``(x, y)`` on the device.

    Checkpoints keep the numpy generators of braindecode's transforms (their ``rng``), so that a
    resumed run draws the augmentations the interrupted one would have.
    """

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x, y):
        for transform in self.transforms:
            x, y = transform(x, y)
        return x, y

    def state_dict(self):
        return [t.rng.get_state() if isinstance(getattr(t, "rng", None), np.random.RandomState) else None
                for t in self.transforms]

    def load_state_dict(self, states):
        for transform, state in zip(self.transforms, states):
            if state is not None:
                transform.rng.set_state(state)


def _make_augment(augment, n_times: int, sfreq, seed: int):
    if augment is None:
        return None
    items = list(augment) if isinstance(augment, (list, tuple)) else [augment]
    if not items:
        return None
    transforms = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            transforms.append(_braindecode_augmentation(item, 0.5, n_times, sfreq, seed + i))
        elif callable(item):
            transforms.append(copy.deepcopy(item))  # the parameter is not to be changed by fitting
        else:
            raise ValueError(f"DeepClassifier: augment items must be names ({sorted(AUGMENTATIONS)}) or callables "
                             f"(x, y) -> (x, y); got {item!r}")
    return _BatchAugment(transforms)


# -- the network -------------------------------------------------------------------------------

def _network_config(model, model_params, n_chans: int, n_times: int, n_outputs: int, sfreq, ch_names) -> dict:
    """The config (:func:`~neurodecode.models.torch_estimator.network_config`) of the network for these signals.

    A braindecode model by name is built with the signal arguments it declares; a user's class or
    callable with those its signature names (all of them when it takes ``**kwargs``).
    """
    if isinstance(model, str):
        factory = _braindecode_class(model)
        if factory is None:
            raise ValueError(f"DeepClassifier: braindecode.models has no network named {model!r}")
        library = "braindecode"
    elif callable(model):
        factory, library = model, "user"
    else:
        raise ValueError(f"DeepClassifier: model must be a braindecode model name ('EEGNet') or a class/callable "
                         f"building a torch.nn.Module; got {model!r}")
    params = dict(model_params or {})
    clash = sorted(set(params) & set(_SIGNAL_ARGUMENTS))
    if clash:
        raise ValueError(f"DeepClassifier: model_params sets {clash}, which are read from the data; remove them "
                         "(pass sfreq=... to the classifier for the sampling rate)")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    accepts = (lambda name: True) if signature is None or any(
        p.kind is p.VAR_KEYWORD for p in signature.parameters.values()) else (
        lambda name: name in signature.parameters)
    signal = {"n_chans": n_chans, "n_times": n_times, "n_outputs": n_outputs}
    if sfreq is not None and signature is not None and "sfreq" in signature.parameters:
        signal["sfreq"] = float(sfreq)
    elif sfreq is None and signature is not None and "sfreq" in signature.parameters:
        default = signature.parameters["sfreq"].default
        if isinstance(default, numbers.Real):
            warnings.warn(f"DeepClassifier: the sampling rate is unknown, so {getattr(factory, '__name__', factory)} "
                          f"assumes its default sfreq={default}: pass sfreq=... or a DecodingData", stacklevel=3)
    init = {**{k: v for k, v in signal.items() if accepts(k)}, **params}
    return network_config(library, model if library == "braindecode" else factory, init, n_chans=n_chans,
                          n_times=n_times, n_outputs=n_outputs, sfreq=sfreq, ch_names=ch_names)


class DeepClassifier(ClassifierMixin, TorchEstimator):
    """A braindecode network as a scikit-learn classifier of (n_trials, n_channels, n_times) trials.

    At fit the network is built from the data (``n_chans``, ``n_times``, ``n_outputs`` = number of
    classes, and ``sfreq`` for networks that take one), the trials are divided by their global
    standard deviation (learned as ``scale_``), and the network is trained by
    :class:`~neurodecode.training.Trainer`: AdamW with a warmed-up cosine schedule, a stratified
    validation split with early stopping and best-weights restore, bfloat16 and CUDA when available.

    Parameters
    ----------
    model : str or callable
        A network of ``braindecode.models`` by name (``"EEGNet"``, ``"ShallowFBCSPNet"``,
        ``"Deep4Net"``...), or a class/callable returning a ``torch.nn.Module`` that takes the signal
        arguments it declares (``n_chans``, ``n_times``, ``n_outputs``, ``sfreq``).
    model_params : dict or None
        Further arguments of the network (``{"drop_prob": 0.5}``); not the signal ones.
    sfreq : float or None
        Sampling rate in Hz, for networks with an ``sfreq`` argument and for ``frequency_shift``.
        None takes a DecodingData's rate (the benchmark binds it for plain arrays).
    max_epochs : int or None
        None: ``NEURODECODE_DEEP_EPOCHS`` when set, else 10 on a CPU and 300 on CUDA (where
        ``patience`` normally stops the run first), resolved at fit (``max_epochs_``).
    batch_size : int
        Trials per optimizer step.
    lr : float
        Peak AdamW learning rate.
    weight_decay : float
        AdamW weight decay of the weights (not of biases and normalisation gains).
    val_fraction : float
        Share of the training trials held out, stratified, for early stopping and the choice of
        the epoch whose weights are kept; 0 trains on all trials for ``max_epochs``.
    patience : int or None
        Epochs without a lower validation loss before stopping; None trains ``max_epochs``.
    label_smoothing : float
    augment : None, str, callable or list of them
        Training-batch augmentations: names of :data:`AUGMENTATIONS` (braindecode transforms, each
        applied to half the trials of a batch), or callables ``(x, y) -> (x, y)`` on device tensors.
    device : str
        ``"auto"``: CUDA when torch sees it, else the CPU.
    precision : {"auto", "bf16", "fp32"}
        ``"auto"``: bfloat16 autocast on CUDA, float32 on the CPU.
    compile : bool or "auto"
        ``torch.compile`` (see :class:`~neurodecode.training.TrainConfig`; "auto" only on long CUDA runs).
    random_state : int
        Seeds the network's initial weights, the split, the batch order, dropout and augmentations.
    checkpoint_dir : str or None
        Where the trainer keeps a resumable checkpoint (a killed fit, rerun, continues).
    verbose : bool
        One line per epoch.

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
    module_ : torch.nn.Module
        The trained network, on the CPU, in eval mode.
    scale_ : float
        The training trials' standard deviation; inputs are divided by it.
    n_chans_, n_times_ : int
    sfreq_ : float or None
    ch_names_ : tuple of str or None
    max_epochs_ : int
    device_ : str
        The device trained on (and predicted on).
    history_ : list of dict
        The trainer's per-epoch records (``train_loss``, ``val_loss``, ``val_accuracy``...).
    best_epoch_ : int or None
    """

    def __init__(self, model="EEGNet", model_params=None, *, sfreq=None, max_epochs=None, batch_size=64, lr=1e-3,
                 weight_decay=1e-2, val_fraction=0.2, patience=20, label_smoothing=0.0, augment=None, device="auto",
                 precision="auto", compile="auto", random_state=0, checkpoint_dir=None, verbose=False):
        super().__init__(sfreq=sfreq, max_epochs=max_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         val_fraction=val_fraction, patience=patience, device=device, precision=precision,
                         random_state=random_state, verbose=verbose)
        self.model = model
        self.model_params = model_params
        self.label_smoothing = label_smoothing
        self.augment = augment
        self.compile = compile
        self.checkpoint_dir = checkpoint_dir

    def fit(self, X, y):
        """Build the network for these trials and train it.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_channels, n_times)
            A DecodingData also gives the sampling rate (for networks that take one) and the channel names.
        y : array-like, shape (n_trials,)
            At least two classes.

        Returns
        -------
        self : DeepClassifier
        """
        X, classes, encoded, sfreq, ch_names = self._training_trials(X, y, sfreq_required=False)
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, numbers.Integral):
            raise ValueError(f"DeepClassifier: random_state must be an integer; got {self.random_state!r}")
        if self.model_params is not None and not isinstance(self.model_params, dict):
            raise ValueError(f"DeepClassifier: model_params must be a dict or None; got {self.model_params!r}")
        max_epochs = self.max_epochs if self.max_epochs is not None else default_max_epochs(self.device)
        config = self._train_config(max_epochs, label_smoothing=self.label_smoothing, compile=self.compile,
                                    checkpoint_dir=self.checkpoint_dir)
        scale = float(X.std())
        scale = scale if math.isfinite(scale) and scale > 0 else 1.0
        n_trials, n_chans, n_times = X.shape
        with self._seeded():
            spec = _network_config(self.model, self.model_params, n_chans, n_times, len(classes), sfreq, ch_names)
            network = build_network(spec, allow_callable=True)
            augment = _make_augment(self.augment, n_times, sfreq, int(self.random_state))
            self._train(network, (X / scale).astype(np.float32), encoded, config, spec, augment=augment)
        self.classes_ = classes
        self.scale_ = scale
        self.n_chans_, self.n_times_ = n_chans, n_times
        self.sfreq_ = sfreq
        self.ch_names_ = ch_names
        self.max_epochs_ = max_epochs
        return self

    def file_problem(self) -> str | None:
        """A user's own network class or callable cannot go into a model file (one line naming it)."""
        if not isinstance(self.model, str):
            return (f"its network is built by {_callable_name(self.model)}, a class or callable of the user's own, "
                    "which a model file cannot hold (it would run on load): use a braindecode model by name")
        return None

    def _logits(self, X) -> torch.Tensor:
        check_is_fitted(self, "module_")
        name = type(self).__name__
        X, _, _ = check_signal_info(self, X, reset=False)
        X = check_signals(X, name, n_channels=self.n_chans_)
        if X.shape[2] != self.n_times_:
            raise ValueError(f"{name}: X has {X.shape[2]} time samples per trial but the network was built for "
                             f"{self.n_times_}: crop or window the trials to the fitted shape")
        return self._outputs((X / self.scale_).astype(np.float32), batch_size=2 * int(self.batch_size))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities: the softmax, in float64, of the network's outputs for the standardised trials.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_chans_, n_times_)
            The fitted channels and length.

        Returns
        -------
        proba : ndarray, shape (n_trials, n_classes), float64
        """
        return torch.softmax(self._logits(X).double(), dim=1).numpy()


def deep_pipeline(model, *, lr: float, max_epochs: int | None = None, batch_size: int = 64,
                  device: str | None = None, **params) -> Pipeline:
    """A Pipeline of one :class:`DeepClassifier`, as the benchmark's pipeline files declare it.

    ``max_epochs=None`` is resolved here (:func:`default_max_epochs`: ``NEURODECODE_DEEP_EPOCHS``,
    else 10 on a CPU, 300 on CUDA), not at fit, so that the number of epochs is part of the
    pipeline's parameters and therefore of the benchmark's result keys: rows trained for another
    budget are never mixed with these.

    Parameters
    ----------
    model : str or callable
        As :class:`DeepClassifier`'s ``model``.
    lr : float
    max_epochs : int or None
    batch_size : int
    device : str or None
        None: ``"auto"``.
    **params
        Any other :class:`DeepClassifier` parameter.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
    """
    device = device or "auto"
    if max_epochs is None:
        max_epochs = default_max_epochs(device)
    return make_pipeline(DeepClassifier(model, lr=lr, max_epochs=max_epochs, batch_size=batch_size, device=device,
                                        **params))
