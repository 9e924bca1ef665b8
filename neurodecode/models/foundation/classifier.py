"""FoundationClassifier: fine-tuning or linear probing of a (pretrained) foundation encoder, as a scikit-learn
classifier; and the two networks it trains (:func:`classifier_network`, :func:`pooled_network`), which a
model file names by config."""

from __future__ import annotations

import copy
import numbers
from pathlib import Path

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..._utils.checks import check_signal_info, check_signals, unpack_data
from ..published import standard_positions
from ..torch_estimator import TorchEstimator, network_config
from .encoder import FoundationEncoder, load_encoder
from .tokens import resample_trials, trials_to_tokens

__all__ = ["FoundationClassifier", "classifier_network", "pooled_network"]


class _Classifier(torch.nn.Module):
    def __init__(self, encoder: FoundationEncoder, n_outputs: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Sequential(torch.nn.LayerNorm(encoder.d_model), torch.nn.Dropout(dropout),
                                        torch.nn.Linear(encoder.d_model, n_outputs))

    def forward(self, tokens):
        return self.head(self.encoder.pooled(tokens, padded=False))


class _Pooled(torch.nn.Module):
    def __init__(self, encoder: FoundationEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, tokens):
        return self.encoder.pooled(tokens, padded=False)


def classifier_network(encoder: dict, n_outputs: int, dropout: float) -> _Classifier:
    """A new encoder (``encoder``: :class:`FoundationEncoder`'s arguments) with a classification head."""
    return _Classifier(FoundationEncoder(**encoder), int(n_outputs), float(dropout))


def pooled_network(encoder: dict) -> _Pooled:
    """A new encoder (``encoder``: :class:`FoundationEncoder`'s arguments) giving pooled embeddings."""
    return _Pooled(FoundationEncoder(**encoder))


def _positions_array(positions, n_chans, owner):
    array = np.asarray(positions, dtype=np.float64)
    if array.shape != (n_chans, 3) or not np.isfinite(array).all():
        raise ValueError(f"{owner}: positions must be finite, shaped (n_channels, 3) = ({n_chans}, 3) in metres; "
                         f"got shape {array.shape}")
    return array


class FoundationClassifier(ClassifierMixin, TorchEstimator):
    """Fine-tuning or linear probing of a (pretrained) :class:`FoundationEncoder` on labelled trials.

    Trials are resampled to the encoder's rate, cut into patches and placed by their electrodes'
    positions (from a DecodingData's montage, or ``positions``), so one encoder serves any montage.
    ``mode="finetune"`` trains the encoder and a linear head together through
    :class:`~neurodecode.training.Trainer` (early stopping on a stratified validation split);
    ``mode="linear"`` keeps the encoder frozen and fits a logistic regression on the mean of its
    token embeddings.

    Parameters
    ----------
    pretrained : str, path, FoundationEncoder or None
        A file written by :func:`save_encoder`, an encoder (copied, never changed), or None for a
        new randomly initialised encoder built from ``encoder_params`` (training from scratch).
    encoder_params : dict or None
        Arguments of :class:`FoundationEncoder` when ``pretrained`` is None.
    mode : {"finetune", "linear"}
    positions : array-like of shape (n_channels, 3) or None
        Electrode positions in metres, in channel order; None takes them from a DecodingData's
        montage, else looks the channel names up on MNE's standard 10-05 montage.
    ch_names : sequence of str or None
        Channel names of plain arrays (the benchmark binds them); a DecodingData brings its own.
    sfreq : float or None
        Sampling rate of the trials in Hz; None takes a DecodingData's.
    max_epochs : int
    batch_size : int
    lr : float
        Peak AdamW rate of fine-tuning.
    weight_decay : float
    val_fraction : float
    patience : int or None
    dropout : float
        Dropout before the classification head.
    C : float
        Inverse regularisation of the linear probe's logistic regression.
    device : str
    precision : {"auto", "bf16", "fp32"}
    random_state : int
    verbose : bool

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
    module_ : torch.nn.Module
        Fine-tuning: the encoder with its head; linear probing: the frozen encoder (pooled).
    probe_ : sklearn Pipeline or None
        The linear probe (standardisation, logistic regression); None when fine-tuning.
    positions_ : ndarray, shape (n_channels, 3)
    sfreq_ : float
    ch_names_ : tuple of str or None
    n_chans_, n_times_ : int
    history_ : list of dict
        The trainer's records (empty for linear probing).
    """

    _parameter_constraints = {
        "mode": [StrOptions({"finetune", "linear"})],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 2, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "val_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "patience": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "C": [Interval(numbers.Real, 0, None, closed="neither")],
        "device": [str],
        "precision": [StrOptions({"auto", "bf16", "fp32"})],
        "random_state": [Interval(numbers.Integral, 0, None, closed="left")],
        "verbose": ["boolean"],
    }

    def __init__(self, pretrained=None, encoder_params=None, *, mode="finetune", positions=None, ch_names=None,
                 sfreq=None,
                 max_epochs=30, batch_size=32, lr=1e-4, weight_decay=0.05, val_fraction=0.2, patience=10, dropout=0.1,
                 C=1.0, device="auto", precision="auto", random_state=0, verbose=False):
        self.pretrained = pretrained
        self.encoder_params = encoder_params
        self.mode = mode
        self.positions = positions
        self.ch_names = ch_names
        self.dropout = dropout
        self.C = C
        super().__init__(sfreq=sfreq, max_epochs=max_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         val_fraction=val_fraction, patience=patience, device=device, precision=precision,
                         random_state=random_state, verbose=verbose)

    def _encoder(self) -> FoundationEncoder:
        if self.pretrained is None:
            params = dict(self.encoder_params or {})
            return FoundationEncoder(**params)
        if self.encoder_params is not None:
            raise ValueError("FoundationClassifier: encoder_params is for a new encoder; a pretrained one brings its "
                             "own (set encoder_params=None)")
        if isinstance(self.pretrained, FoundationEncoder):
            return copy.deepcopy(self.pretrained)
        if isinstance(self.pretrained, (str, Path)):
            return load_encoder(self.pretrained)
        raise ValueError(f"FoundationClassifier: pretrained must be None, a FoundationEncoder or a path to one written "
                         f"by save_encoder; got {type(self.pretrained).__name__}")

    def _tokens(self, X, sfreq, positions, encoder_sfreq, patch_size) -> np.ndarray:
        return trials_to_tokens(resample_trials(X, sfreq, encoder_sfreq), positions, patch_size, encoder_sfreq)

    def fit(self, X, y):
        """Resample and tokenize the trials, then fine-tune or fit the linear probe.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_channels, n_times)
            Trials at any rate and montage; a DecodingData brings its electrode positions.
        y : array-like, shape (n_trials,)

        Returns
        -------
        self : FoundationClassifier
        """
        self._validate_params()
        _, info = unpack_data(X)
        X, classes, encoded, sfreq, ch_names = self._training_trials(X, y, sfreq_required=True)
        ch_names = ch_names if ch_names is not None else (None if self.ch_names is None else tuple(self.ch_names))
        positions = self._resolve_positions(info, ch_names, X.shape[1])
        n_chans, n_times = X.shape[1], X.shape[2]
        with self._seeded() as device:
            encoder = self._encoder()
            tokens = self._tokens(X, sfreq, positions, encoder.sfreq, encoder.patch_size)
            signal = dict(n_chans=n_chans, n_times=n_times, n_outputs=len(classes), sfreq=sfreq, ch_names=ch_names,
                          positions=positions)
            if self.mode == "linear":
                spec = network_config("neurodecode", "FoundationPooledNetwork", {"encoder": dict(encoder.config)},
                                      **signal)
                self._keep_network(_Pooled(encoder), spec, device=device)
                self.probe_ = self._fit_probe(self._embed(tokens), encoded)
                self.history_, self.best_epoch_ = [], None
            else:
                spec = network_config("neurodecode", "FoundationClassifierNetwork",
                                      {"encoder": dict(encoder.config), "n_outputs": len(classes),
                                       "dropout": float(self.dropout)}, **signal)
                net = _Classifier(encoder, len(classes), self.dropout)
                self._train(net, tokens, encoded, self._train_config(self.max_epochs, compile=False), spec)
                self.probe_ = None
        self.classes_ = classes
        self.positions_ = positions
        self.sfreq_, self.ch_names_ = sfreq, ch_names
        self.n_chans_, self.n_times_ = n_chans, n_times
        return self

    def file_problem(self) -> str | None:
        """An encoder object as ``pretrained`` cannot go into a model file (its path can)."""
        if isinstance(self.pretrained, torch.nn.Module):
            return ("its parameter pretrained holds an encoder object, which a model file cannot hold: pass the "
                    "path of the encoder's file (save_encoder) instead")
        return None

    def _resolve_positions(self, info, ch_names, n_chans):
        name = type(self).__name__
        positions = self.positions if self.positions is not None else (None if info is None else info.positions)
        if positions is None and ch_names is not None:
            if len(ch_names) != n_chans:
                raise ValueError(f"{name}: {len(ch_names)} channel names for {n_chans} channels")
            positions = standard_positions(ch_names)
            unknown = [c for c, p in zip(ch_names, positions) if not np.isfinite(p).all()]
            if unknown:
                raise ValueError(f"{name}: channels {unknown[:5]} are not on the standard 10-05 montage: pass "
                                 "positions=... (n_channels x 3, metres) or a DecodingData with a montage")
        if positions is None:
            raise ValueError(f"{name}: electrode positions are unknown: pass a DecodingData whose montage has them, "
                             "ch_names=... (10-05 names) or positions=... (n_channels x 3, metres)")
        return _positions_array(positions, n_chans, name)

    def _fit_probe(self, features, encoded):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000)).fit(features, encoded)

    def _embed(self, tokens):
        return self._outputs(tokens, batch_size=max(2 * int(self.batch_size), 64)).double().numpy()

    def _checked_tokens(self, X):
        check_is_fitted(self, "module_")
        name = type(self).__name__
        X, _, _ = check_signal_info(self, X, reset=False)
        X = check_signals(X, name, n_channels=self.n_chans_)
        encoder = self.module_.encoder
        return self._tokens(X, self.sfreq_, self.positions_, encoder.sfreq, encoder.patch_size)

    def embed(self, X) -> np.ndarray:
        """The encoder's pooled embedding of each trial (the linear probe's input).

        Returns
        -------
        features : ndarray, shape (n_trials, d_model)
        """
        tokens = self._checked_tokens(X)
        module = self.module_ if self.probe_ is not None else _Pooled(self.module_.encoder)
        return self._outputs(tokens, module, batch_size=max(2 * int(self.batch_size), 64)).double().numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, from the linear probe or from the fine-tuned head.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_chans_, n_times)
            Trials at the fitted rate ``sfreq_``, resampled to the encoder's.

        Returns
        -------
        proba : ndarray, shape (n_trials, n_classes)
        """
        tokens = self._checked_tokens(X)
        if self.probe_ is not None:
            return self.probe_.predict_proba(self._embed(tokens))
        logits = self._outputs(tokens, batch_size=max(2 * int(self.batch_size), 64))
        return torch.softmax(logits.double(), dim=1).numpy()
