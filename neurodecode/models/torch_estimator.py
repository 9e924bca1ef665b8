"""One base for the torch-backed estimators (:class:`TorchEstimator`) and the networks a model file may name.

What the deep classifier, the foundation classifier and the transfer estimators share lives here once:
the checks of the training trials, seeded fitting that leaves the caller's random generators as they
were, the device rule (:func:`~neurodecode._utils.device.resolve_device`, with the CPU fallback of a
GPU-trained model on a machine without one), training through the one
:class:`~neurodecode.training.Trainer`, and the fitted network's state for ``clone``, pickling and
model files.

A fitted estimator describes its network as plain data, a *network config* (the layout of
braindecode's saved models: the class, its constructor arguments, and the signal contract
``n_chans``, ``n_times``, ``n_outputs``, ``sfreq``, ``chs_info``), beside the weights (a
``state_dict``). :func:`build_network` builds a network from such a config; for a model file it
takes only classes of :func:`storable_network_names` (braindecode's models by name, neurodecode's
foundation networks), with constructor arguments the class declares, so that a config read from a
file names no code of its own.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import random
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .._utils.checks import check_signal_info, check_signals
from .._utils.device import resolve_device
from ..training import Trainer, TrainConfig, predict_logits
from ..training.distributed import local_rank

__all__ = ["NETWORK_FORMAT", "TorchEstimator", "build_network", "check_network_config", "storable_network_names"]

#: Name and version of a network config.
NETWORK_FORMAT = {"format": "neurodecode-network", "format_version": 1}
#: neurodecode's own networks a config may name: name -> (module, builder function). Reviewed: each
#: builder takes plain numbers and dicts and builds modules of torch layers, nothing else.
_OWN_NETWORKS = {
    "FoundationClassifierNetwork": ("neurodecode.models.foundation.classifier", "classifier_network"),
    "FoundationPooledNetwork": ("neurodecode.models.foundation.classifier", "pooled_network"),
}
#: The signal contract of a config, beside its constructor arguments (braindecode's names).
SIGNAL_FIELDS = ("n_chans", "n_times", "n_outputs", "sfreq", "chs_info")


def _braindecode_class(name):
    import braindecode.models

    factory = getattr(braindecode.models, name, None) if name in braindecode.models.__all__ else None
    if not (inspect.isclass(factory) and issubclass(factory, torch.nn.Module)):
        return None
    return factory


def storable_network_names() -> dict:
    """The network classes a model file may name, by library.

    Returns
    -------
    names : dict
        ``{"braindecode": [...], "neurodecode": [...]}``.
    """
    import braindecode.models

    return {"braindecode": sorted(n for n in braindecode.models.__all__ if _braindecode_class(n) is not None),
            "neurodecode": sorted(_OWN_NETWORKS)}


def _is_plain(value) -> bool:
    """JSON data: what a config may hold (no callables, no objects)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _factory(config: dict, allow_callable: bool):
    library, name = config.get("library"), config.get("class")
    if library == "braindecode" and isinstance(name, str):
        factory = _braindecode_class(name)
    elif library == "neurodecode" and isinstance(name, str) and name in _OWN_NETWORKS:
        module, function = _OWN_NETWORKS[name]
        factory = getattr(importlib.import_module(module), function)
    elif library == "user" and allow_callable and callable(name):
        return name
    else:
        factory = None
    if factory is None:
        shown = name if isinstance(name, str) else _callable_name(name)
        raise ValueError(f"network {library}.{shown} is not one a model file may hold (braindecode models by name "
                         f"and neurodecode's foundation networks)")
    return factory


def _callable_name(obj) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', None) or type(obj).__name__}"


def check_network_config(config) -> None:
    """Refuse a network config that a model file may not hold, with one line saying why.

    The class must be one of :func:`storable_network_names`, its constructor arguments plain
    JSON data that its signature names (no ``**kwargs`` sink), and the signal fields present.

    Raises
    ------
    ValueError
    """
    if not isinstance(config, dict) or {k: config.get(k) for k in NETWORK_FORMAT} != NETWORK_FORMAT:
        raise ValueError(f"not a network config of format {NETWORK_FORMAT}")
    factory = _factory(config, allow_callable=False)
    init = config.get("init")
    if not isinstance(init, dict):
        raise ValueError("the network config's init must be a JSON object of constructor arguments")
    odd = sorted(k for k, v in init.items() if not _is_plain(v))
    if odd:
        raise ValueError(f"the network {config['class']} takes argument(s) {odd} that are not plain data (a class or "
                         "function, say), which a model file cannot hold")
    declared = inspect.signature(factory).parameters
    named = {n for n, p in declared.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(init) - named)
    if unknown:
        raise ValueError(f"the network {config['class']} declares no argument(s) {unknown}")
    missing = [k for k in SIGNAL_FIELDS if k not in config]
    if missing:
        raise ValueError(f"the network config lacks the signal field(s) {missing}")


def build_network(config: dict, *, allow_callable: bool = False) -> torch.nn.Module:
    """The network a config describes, freshly initialised (weights are loaded by the caller).

    Parameters
    ----------
    config : dict
        A network config (module docstring).
    allow_callable : bool
        Also build a user's own class or callable (``library="user"``), without the checks of
        :func:`check_network_config`: for fitting and for pickles (which run code anyway), never
        for a model file.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ValueError
        A class outside the list, or arguments it does not declare.
    """
    if not allow_callable:
        check_network_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # any warning of the network's was given when it was first built
        network = _factory(config, allow_callable)(**config["init"])
    if not isinstance(network, torch.nn.Module):
        raise ValueError(f"the network config built a {type(network).__name__}, not a torch.nn.Module")
    return network


def network_config(library: str, name, init: dict, *, n_chans: int, n_times: int, n_outputs: int, sfreq,
                   ch_names=None, positions=None) -> dict:
    """A network config: the class, its constructor arguments and the signal contract.

    Parameters
    ----------
    library : {"braindecode", "neurodecode", "user"}
    name : str or callable
        The class name (a callable for ``"user"``).
    init : dict
        The arguments the network was built with.
    n_chans, n_times, n_outputs : int
    sfreq : float or None
    ch_names : sequence of str or None
    positions : array-like of shape (n_chans, 3) or None
        Electrode positions in metres (``chs_info``'s ``loc``).

    Returns
    -------
    dict
    """
    chs_info = None
    if ch_names is not None:
        chs_info = [{"ch_name": str(n)} for n in ch_names]
        if positions is not None:
            for info, loc in zip(chs_info, np.asarray(positions, dtype=float).tolist()):
                info["loc"] = loc
    return {**NETWORK_FORMAT, "library": library, "class": name, "init": copy.deepcopy(init),
            "n_chans": int(n_chans), "n_times": int(n_times), "n_outputs": int(n_outputs),
            "sfreq": None if sfreq is None else float(sfreq), "chs_info": chs_info}


def weights_of(network: torch.nn.Module) -> dict:
    """The network's ``state_dict`` as CPU tensors of their own (no storage shared between them)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in network.state_dict().items()}


def load_weights(network: torch.nn.Module, weights: dict) -> torch.nn.Module:
    """Load ``weights`` strictly (the same names and shapes as the network's); returns it in eval mode.

    Raises
    ------
    ValueError
        Names or shapes that differ from the network's.
    """
    expected = network.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(f"the weights do not fit the network: missing {missing[:3]}, unexpected {unexpected[:3]}")
    wrong = [k for k, v in weights.items() if not isinstance(v, torch.Tensor) or v.shape != expected[k].shape
             or v.dtype != expected[k].dtype]
    if wrong:
        raise ValueError(f"the weights do not fit the network: tensor(s) {wrong[:3]} have another shape or dtype")
    network.load_state_dict(weights, strict=True)
    return network.eval()


class TorchEstimator(BaseEstimator):
    """Base of the estimators that train a torch network (subclasses put a mixin first, e.g. ClassifierMixin).

    Subclasses name in their own ``__init__`` signature the training parameters stored here
    (``sfreq``, ``max_epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``val_fraction``,
    ``patience``, ``device``, ``precision``, ``random_state``, ``verbose``; see
    :class:`~neurodecode.models.DeepClassifier` for their meaning) and pass them on, and set after
    fit ``module_`` (the network, on the CPU, in eval mode) and ``_network`` (its config,
    :func:`network_config`), through :meth:`_train` or :meth:`_keep_network`.
    """

    def __init__(self, *, sfreq, max_epochs, batch_size, lr, weight_decay, val_fraction, patience, device, precision,
                 random_state, verbose):
        # Stored as given (scikit-learn's rule); each subclass's own signature names them for get_params.
        self.sfreq = sfreq
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.patience = patience
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    # -- fitting -------------------------------------------------------------------------------

    def _training_trials(self, X, y, *, sfreq_required: bool):
        """Checked trials and labels of ``fit``.

        Returns
        -------
        X : ndarray, shape (n_trials, n_channels, n_times)
        classes : ndarray, shape (n_classes,)
        encoded : ndarray of int64, shape (n_trials,)
            Each label's index in ``classes``.
        sfreq : float or None
        ch_names : tuple of str or None
        """
        name = type(self).__name__
        given = X
        if sfreq_required or self.sfreq is not None:  # checked, and checked against a DecodingData's rate
            X, sfreq, ch_names = check_signal_info(self, given, reset=True, sfreq=self.sfreq)
        else:
            X, sfreq, ch_names = check_signal_info(self, given, reset=True)
        X = check_signals(X, name)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"{name}: y must be 1-D with one label per trial; got shape {y.shape} for {len(X)} trials")
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"{name}: y holds one class ({classes[0]!r}); a classifier needs two or more")
        return X, classes, encoded.astype(np.int64), sfreq, ch_names

    def _train_config(self, max_epochs: int, **more) -> TrainConfig:
        """The trainer's configuration from the estimator's parameters (``more``: the subclass's own)."""
        return TrainConfig(max_epochs=max_epochs, batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay, val_fraction=self.val_fraction, patience=self.patience,
                           device=self.device, precision=self.precision, seed=int(self.random_state),
                           verbose=bool(self.verbose), **more).validate()

    @contextlib.contextmanager
    def _seeded(self):
        """Seed torch with ``random_state`` for the fit, and leave the caller's generators as they were.

        The seeded draws happen on forks of torch's generators; numpy's and Python's (which the
        trainer seeds) are put back. Yields the device of the fit (``cuda:local_rank`` under torchrun).
        """
        device = resolve_device(self.device, local_rank())
        numpy_state, python_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                torch.manual_seed(int(self.random_state))
                yield device
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)

    def _train(self, network, X, y, config: TrainConfig, config_of_network: dict, **trainer_options):
        """Train ``network`` through the one Trainer and keep it (:meth:`_keep_network`); returns the TrainResult."""
        result = Trainer(config, **trainer_options).fit(network, X, y)
        self._keep_network(result.model, config_of_network, device=result.device)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        return result

    def _keep_network(self, network, config_of_network: dict, *, device) -> None:
        self.module_ = network.cpu().eval()  # portable: pickles and unpickles without a GPU
        self._network = config_of_network
        self.device_ = str(device)

    # -- predicting ----------------------------------------------------------------------------

    def _inference_device(self) -> torch.device:
        # A GPU-trained estimator loaded on a CPU machine predicts on the CPU.
        return resolve_device(self.device_, for_inference=True)

    def _outputs(self, inputs, module=None, *, batch_size: int) -> torch.Tensor:
        """The network's outputs (``module``: another view of the fitted network) for prepared inputs, on CPU."""
        check_is_fitted(self, "module_")
        module = self.module_ if module is None else module
        device = self._inference_device()
        # A copy on the GPU, so that predicting leaves the fitted network where it is (on the CPU).
        module = module if device.type == "cpu" else copy.deepcopy(module).to(device)
        return predict_logits(module, inputs, batch_size=batch_size, device=device, precision=self.precision)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each trial (for the classifiers: ``classes_`` and ``predict_proba``).

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_channels, n_times)

        Returns
        -------
        y : ndarray, shape (n_trials,)
        """
        winners = self.predict_proba(X).argmax(axis=1)  # checks first that the estimator is fitted
        return self.classes_[winners]

    # -- state ---------------------------------------------------------------------------------

    def network_file(self):
        """The fitted network as a model file stores it: (config, weights).

        Returns
        -------
        config : dict
            Plain JSON data (:func:`network_config`), checked by :func:`check_network_config`.
        weights : dict of str to torch.Tensor

        Raises
        ------
        ValueError
            The network is a user's own class or callable, or takes arguments that are not plain data.
        """
        check_is_fitted(self, "module_")
        config = self._network
        if config.get("library") == "user":
            raise ValueError(f"its network is built by {_callable_name(config['class'])}, a class or callable of "
                             "the user's own, which a model file cannot hold (it would run on load): use a "
                             "braindecode model by name")
        check_network_config(config)
        return copy.deepcopy(config), weights_of(self.module_)

    def file_problem(self) -> str | None:
        """Why this estimator's parameters cannot go into a model file, or None (checked before training)."""
        return None

    def attach_network(self, config: dict, weights: dict) -> None:
        """Give an estimator read from a model file its network: built from ``config``, ``weights`` loaded."""
        self._network = config
        self.module_ = load_weights(build_network(config), weights)

    def __getstate__(self):
        # Networks with parametrizations (braindecode's max-norm constraints, in FBCNet for one)
        # refuse to be pickled whole: pickle the weights, and build the network again on load.
        state = super().__getstate__()
        if isinstance(state.get("module_"), torch.nn.Module):
            state = dict(state, module_={"weights": weights_of(state["module_"])})
        return state

    def __setstate__(self, state):
        stored = state.get("module_")
        if isinstance(stored, dict) and "weights" in stored:
            network = build_network(state["_network"], allow_callable=True)
            state = dict(state, module_=load_weights(network, stored["weights"]))
        super().__setstate__(state)
