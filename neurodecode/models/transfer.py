"""Decoding a person the model has never seen: pretraining on many subjects, then calibration to the new one.

:class:`TransferClassifier` wraps any classifier (a classical pipeline or a torch-backed network)
with per-group alignment (docs/alignment.md): at fit every source group (a subject, a session or a
recording) is moved to a common reference by its own trials, and the estimator is pretrained on the
aligned trials of all of them. A new person is then met in one of three ways:

* calibration with unlabelled trials: their alignment reference is computed from those trials
  (recentring only);
* calibration with labelled trials: the same reference and, with ``calibration="finetune"``, a
  torch network fine-tuned on them through the one :class:`~neurodecode.training.Trainer` (a lower
  learning rate), or a classical pipeline's last step refitted on the pooled source and target
  features (in ``fit`` only, where the source trials are at hand);
* no calibration at all: at prediction, the trials handed over together are their own reference
  (transductive), or the sources' mean reference when they are too few (``min_trials``).

Calibration data arrive either through ``fit`` (``X_target_unlabeled``, ``X_target_labeled`` and
``y_target_labeled``, the names MOABB's ``CrossSubjectEvaluation(cs_mode=...)`` routes through
scikit-learn's metadata routing; ``subjects`` is MOABB's name for the source groups) or through
:meth:`TransferClassifier.calibrate` on a fitted model (``neurodecode calibrate``).
"""

from __future__ import annotations

import copy
import dataclasses
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, check_random_state

from .._utils.checks import check_matrices, check_signal_info, check_signals, unpack_data
from ..data.container import DecodingData
from ..geometry import mean_riemann
from ..geometry.alignment import align_signals, recenter, signal_reference, whitener
from ..transforms.alignment import GROUP_COLUMNS, EuclideanAlignment, RiemannianRecentering, resolve_groups
from .torch_estimator import TorchEstimator

__all__ = ["TransferClassifier"]

def _default_estimator():
    from sklearn.linear_model import LogisticRegression

    from ..transforms import Covariances, TangentSpace

    return make_pipeline(Covariances("oas"), TangentSpace(), LogisticRegression(max_iter=1000))


def _rewrap(trials, like):
    """``trials`` in ``like``'s DecodingData (same labels, metadata, signal info), or as they are."""
    if isinstance(like, DecodingData):
        return DecodingData(trials, like.y, like.metadata, like.info)
    return trials


def _split(keys):
    """Indices of each group key, in order of first appearance."""
    order = {}
    for i, key in enumerate(keys):
        order.setdefault(key, []).append(i)
    return {key: np.asarray(index) for key, index in order.items()}


def _key(value):
    return value.item() if isinstance(value, np.generic) else value


class TransferClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Pretrain a classifier on many aligned subjects; calibrate it to a new person with or without labels.

    Parameters
    ----------
    estimator : estimator or None, default=None
        The classifier pretrained on the aligned trials (cloned at fit). None: Covariances("oas") +
        TangentSpace + LogisticRegression. With ``alignment="riemannian"`` it must be a Pipeline
        whose first step makes SPD covariance matrices: the recentring goes right after that step.
        Fine-tuning needs a :class:`~neurodecode.models.DeepClassifier`, alone or as the last step.
    alignment : {"euclidean", "riemannian"} or None, default="euclidean"
        ``"euclidean"``: each group's signals whitened by their mean covariance (He & Wu 2020);
        ``"riemannian"``: each group's covariances recentred at their Riemannian mean (as
        pyRiemann's ``TLCenter``); None: no alignment (only fine-tuning calibrates).
    by : {"subject", "session", "recording"}, default="subject"
        The groups a DecodingData's metadata gives (routed ``groups``/``subjects`` win over it).
    calibration : {"finetune", "recenter"} or None, default="finetune"
        What target trials routed to ``fit`` are used for. ``"recenter"``: their alignment
        reference only (labels unused); ``"finetune"``: also, with labels, a network fine-tuned
        on them, or a classical pipeline's last step refitted on pooled source and target
        features; None: the routed target trials are ignored.
    finetune_epochs : int or None, default=None
        Epochs of fine-tuning; None: the network's own CPU/GPU budget (``NEURODECODE_DEEP_EPOCHS``,
        else 10 on a CPU, see :func:`~neurodecode.models.default_max_epochs`).
    finetune_lr_scale : float, default=0.1
        Fine-tuning learning rate as a fraction of the network's ``lr``.
    min_trials : int, default=10
        At prediction, a group without a reference (no calibration) is aligned by its own trials
        when at least this many are handed over together, else by the sources' mean reference.
    random_state : int or None, default=None
        Seed of fine-tuning; None: the network's own ``random_state``.

    Attributes
    ----------
    estimator_ : estimator
        The pretrained (and, after fine-tuning or a refit, calibrated) estimator.
    alignment_ : EuclideanAlignment, RiemannianRecentering or None
        The source groups' references (``alignment_.references_``).
    source_reference_ : ndarray of shape (n_channels, n_channels) or None
        The mean of the source references (arithmetic for Euclidean alignment, Riemannian for
        recentring): the reference of a group handed over with fewer than ``min_trials`` trials.
    target_reference_ : ndarray of shape (n_channels, n_channels) or None
        The calibrated person's reference; None before any calibration.
    calibration_ : {"finetuned", "refitted", "recentred"} or None
        What the last calibration did.
    n_calibration_ : int
        Trials of the last calibration (0: none).
    groups_ : list
        The source groups, in order of first appearance.
    classes_ : ndarray of shape (n_classes,)
    sfreq_ : float or None
    ch_names_ : tuple of str or None
    n_channels_ : int

    Notes
    -----
    ``X`` is a DecodingData or an array of shape (n_trials, n_channels, n_times) (SPD matrices of
    shape (n_trials, n, n) when ``alignment="riemannian"`` and ``estimator`` is not a Pipeline).

    Which reference aligns a trial at prediction, in this order: the reference of its group when
    that group was a source group at fit; the calibrated person's (``target_reference_``) when the
    model was calibrated, since a calibrated model is one person's (a DecodingData's placeholder
    subject, a MOABB test block and trials given without groups all count as that person); else the
    reference of the trials of its group handed over together (at least ``min_trials``), or the
    sources' mean reference. Trials given without any group are one group (the one fitted without
    groups if there was one).
    """

    __metadata_request__fit = {"groups": True, "subjects": True, "X_target_unlabeled": True,
                               "X_target_labeled": True, "y_target_labeled": True}
    __metadata_request__predict = {"groups": True}
    __metadata_request__predict_proba = {"groups": True}

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "alignment": [StrOptions({"euclidean", "riemannian"}), None],
        "by": [StrOptions(set(GROUP_COLUMNS))],
        "calibration": [StrOptions({"finetune", "recenter"}), None],
        "finetune_epochs": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "finetune_lr_scale": [Interval(numbers.Real, 0, None, closed="neither")],
        "min_trials": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator=None, *, alignment="euclidean", by="subject", calibration="finetune",
                 finetune_epochs=None, finetune_lr_scale=0.1, min_trials=10, random_state=None):
        self.estimator = estimator
        self.alignment = alignment
        self.by = by
        self.calibration = calibration
        self.finetune_epochs = finetune_epochs
        self.finetune_lr_scale = finetune_lr_scale
        self.min_trials = min_trials
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    # -- the pieces of the estimator -----------------------------------------------------------

    def _head_tail(self, estimator):
        """(step making covariances or None, the rest): where the recentring goes."""
        if self.alignment != "riemannian" or not isinstance(estimator, Pipeline):
            return None, estimator
        if len(estimator.steps) < 2:
            raise ValueError("TransferClassifier: alignment='riemannian' needs a Pipeline of a covariance step and a "
                             f"classifier; got a Pipeline of {len(estimator.steps)} step")
        return estimator[:1], estimator[1:]

    def _torch_step(self):
        """The DeepClassifier to fine-tune and the steps before it (None when the estimator has none)."""
        from .deep import DeepClassifier

        model = self.estimator_
        if isinstance(model, DeepClassifier):
            return model, None
        if isinstance(model, Pipeline) and isinstance(model.steps[-1][1], DeepClassifier):
            return model.steps[-1][1], (model[:-1] if len(model.steps) > 1 else None)
        if isinstance(model, TorchEstimator) or (isinstance(model, Pipeline) and any(
                isinstance(s, TorchEstimator) for _, s in model.steps)):
            raise ValueError(f"TransferClassifier: fine-tuning supports a DeepClassifier (alone or as the last step); "
                             f"got {type(model).__name__}")
        return None, None

    # -- references ----------------------------------------------------------------------------

    def _reference(self, trials):
        if self.alignment == "euclidean":
            return signal_reference(trials)
        return mean_riemann(trials, tol=self.alignment_.tol, maxiter=self.alignment_.maxiter)

    def _apply(self, trials, reference):
        if self.alignment == "euclidean":
            return align_signals(trials, whitener(reference, self.alignment_.rcond))
        return recenter(trials, reference)

    def _mean_reference(self, references):
        stack = np.stack(references)
        if self.alignment == "euclidean":
            return stack.mean(axis=0)
        return mean_riemann(stack, tol=self.alignment_.tol, maxiter=self.alignment_.maxiter)

    def _aligned_input(self, trials):
        """Checked trials to align: signals (Euclidean) or SPD matrices (Riemannian, after the head)."""
        name = type(self).__name__
        if self.alignment == "euclidean":
            return check_signals(trials, name, n_channels=self.n_channels_)
        return check_matrices(trials, name, n_channels=self.n_channels_)

    def _align_for_prediction(self, trials, keys):
        out = np.empty_like(trials)
        fitted = self.alignment_.references_
        for key, index in _split(keys).items():
            if key is not None and key in fitted:
                reference = fitted[key]
            elif self.target_reference_ is not None:
                reference = self.target_reference_
            elif key in fitted:
                reference = fitted[key]
            elif len(index) >= self.min_trials:
                reference = self._reference(trials[index])
            else:
                reference = self.source_reference_
            out[index] = self._apply(trials[index], reference)
        return out

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, X, y, groups=None, subjects=None, X_target_unlabeled=None, X_target_labeled=None,
            y_target_labeled=None):
        """Pretrain on the source groups, each aligned by its own reference; then calibrate on target trials if given.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
            The source trials.
        y : ndarray of shape (n_trials,)
        groups : ndarray of shape (n_trials,) or None
            Each trial's group (routed: requested by default); None takes a DecodingData's metadata
            (``by``), else ``subjects``.
        subjects : ndarray of shape (n_trials,) or None
            MOABB's name for the groups (its ``CrossSubjectEvaluation`` routes the training subjects).
        X_target_unlabeled : ndarray of shape (n_calibration, n_channels, n_times) or None
            A new person's trials without labels: their reference.
        X_target_labeled : ndarray of shape (n_calibration, n_channels, n_times) or None
            A new person's labelled trials: their reference and, with ``calibration="finetune"``,
            fine-tuning (or a refit of the last step of a classical pipeline).
        y_target_labeled : ndarray of shape (n_calibration,) or None
            Labels of ``X_target_labeled``, encoded as ``y``.

        Returns
        -------
        self : TransferClassifier
        """
        self._validate_params()
        name = type(self).__name__
        given = X
        X, groups, y = resolve_groups(X, y, groups if groups is not None else subjects, self.by, name)
        trials, self.sfreq_, self.ch_names_ = check_signal_info(self, X, reset=True)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(trials):
            raise ValueError(f"{name}: y must be 1-D with one label per trial; got shape {y.shape} for {len(trials)} "
                             "trials")
        if (X_target_labeled is None) != (y_target_labeled is None):
            raise ValueError(f"{name}: X_target_labeled and y_target_labeled go together; got only one of them")
        estimator = clone(self.estimator if self.estimator is not None else _default_estimator())
        head, tail = self._head_tail(estimator)
        keys = [None] * len(trials) if groups is None else [_key(g) for g in groups]
        self.groups_ = list(dict.fromkeys(keys))
        self.target_reference_, self.calibration_, self.n_calibration_ = None, None, 0
        features = None  # the source trials as the last step sees them, for a pooled refit
        if self.alignment is None:
            self.alignment_, self.source_reference_ = None, None
            self.n_channels_ = np.asarray(trials).shape[1] if np.ndim(trials) >= 2 else 0
            estimator.fit(given, y)
        else:
            if self.alignment == "euclidean":
                self.alignment_ = EuclideanAlignment(by=self.by)
                inputs = trials
            else:
                self.alignment_ = RiemannianRecentering(by=self.by)
                inputs = given if head is None else head.fit_transform(given, y)
            aligned = self.alignment_.fit_transform(inputs, groups=np.asarray(keys, dtype=object)
                                                    if groups is not None else None)
            self.n_channels_ = self.alignment_.n_channels_
            self.source_reference_ = self._mean_reference(list(self.alignment_.references_.values()))
            aligned = _rewrap(aligned, given) if head is None and self.alignment == "euclidean" else aligned
            tail.fit(aligned, y)
            features = aligned
        self.estimator_ = estimator
        self.classes_ = np.asarray(estimator.classes_)
        if self.calibration is not None and (X_target_unlabeled is not None or X_target_labeled is not None):
            reference_trials = [t for t in (X_target_labeled, X_target_unlabeled) if t is not None]
            self._calibrate(reference_trials, X_target_labeled, y_target_labeled, self.calibration,
                            source=(features, y))
        return self

    def calibrate(self, X, y=None):
        """Adapt the fitted model to a new person: recentring on their trials, and fine-tuning when labelled.

        The new person's reference replaces any earlier calibration's. With labels and
        ``calibration="finetune"`` a network is fine-tuned from its current weights (calibrate a
        freshly loaded pretrained model for each new person); a classical pipeline is only
        recentred (the source trials its pooled refit needs are not kept after ``fit``).
        ``calibration=None`` or ``"recenter"``: recentring only.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
            The new person's calibration trials.
        y : ndarray of shape (n_trials,) or None
            Their labels (in ``classes_``); None: recentring only.

        Returns
        -------
        self : TransferClassifier
        """
        check_is_fitted(self, "estimator_")
        mode = "finetune" if self.calibration == "finetune" else "recenter"
        self._calibrate([X], X if y is not None else None, y, mode, source=None)
        return self

    def _calibrate(self, reference_trials, X_labeled, y_labeled, mode, source):
        name = type(self).__name__
        head, tail = self._head_tail(self.estimator_)
        n_calibration = sum(len(unpack_data(t)[0]) for t in reference_trials)
        if n_calibration == 0:
            return
        if self.alignment is not None:
            parts = []
            for given in reference_trials:
                trials = check_signal_info(self, given, reset=False)[0]
                parts.append(self._aligned_input(trials if head is None else head.transform(given)))
            self.target_reference_ = self._reference(np.concatenate(parts))
        done = "recentred" if self.alignment is not None else None
        if mode == "finetune" and X_labeled is not None:
            y_labeled = np.asarray(y_labeled)
            unknown = sorted(set(np.unique(y_labeled).tolist()) - set(self.classes_.tolist()))
            if unknown:
                raise ValueError(f"{name}: calibration labels {unknown} are not among the fitted classes "
                                 f"{self.classes_.tolist()}")
            inputs = self._prediction_input(X_labeled, None)
            step, upstream = self._torch_step()
            if step is not None:
                self._finetune(step, inputs if upstream is None else upstream.transform(inputs), y_labeled)
                done = "finetuned"
            elif source is not None and source[0] is not None and isinstance(tail, Pipeline) and len(tail.steps) > 1:
                before, last = tail[:-1], tail.steps[-1][1]
                pooled = np.concatenate([before.transform(source[0]), before.transform(inputs)])
                last.fit(pooled, np.concatenate([source[1], y_labeled]))
                done = "refitted"
        self.calibration_, self.n_calibration_ = done, n_calibration

    def _finetune(self, step, X, y):
        """Fine-tune ``step``'s network on aligned trials through the one Trainer, at a lower learning rate."""
        from .deep import default_max_epochs

        epochs = self.finetune_epochs if self.finetune_epochs is not None else default_max_epochs(step.device)
        trials = check_signals(unpack_data(X)[0], type(self).__name__, n_channels=step.n_chans_)
        encoded = np.searchsorted(step.classes_, y).astype(np.int64)
        seed = step.random_state if self.random_state is None else self.random_state
        tuned = copy.copy(step)
        tuned.random_state = (int(seed) if isinstance(seed, numbers.Integral)
                              else int(check_random_state(seed).randint(2**31 - 1)))
        # Few trials: no validation split, no early stopping; the pretrained weights are the start.
        config = dataclasses.replace(tuned._train_config(epochs, label_smoothing=step.label_smoothing, compile=False),
                                     lr=float(step.lr) * float(self.finetune_lr_scale), val_fraction=0.0,
                                     patience=None).validate()
        network = copy.deepcopy(step.module_).train()
        with tuned._seeded():
            tuned._train(network, (trials / step.scale_).astype(np.float32), encoded, config, step._network)
        step.module_, step.history_, step.best_epoch_ = tuned.module_, tuned.history_, tuned.best_epoch_

    # -- predicting ----------------------------------------------------------------------------

    def _prediction_input(self, X, groups):
        """What the estimator's classifying part gets: the trials aligned by the rule of the class notes."""
        check_is_fitted(self, "estimator_")
        if self.alignment is None:
            return X
        head, _ = self._head_tail(self.estimator_)
        given = X
        X, groups, _ = resolve_groups(X, None, groups, self.by, type(self).__name__)
        trials = check_signal_info(self, X, reset=False)[0]
        inputs = self._aligned_input(trials if head is None else head.transform(given))
        keys = [None] * len(inputs) if groups is None else [_key(g) for g in groups]
        aligned = self._align_for_prediction(inputs, keys)
        return _rewrap(aligned, given) if head is None else aligned

    def _classifier(self):
        _, tail = self._head_tail(self.estimator_)
        return tail if self.alignment is not None else self.estimator_

    def _has_proba(self):
        estimator = getattr(self, "estimator_", None)
        estimator = estimator if estimator is not None else (self.estimator or _default_estimator())
        return hasattr(estimator, "predict_proba")

    @available_if(_has_proba)
    def predict_proba(self, X, groups=None):
        """Class probabilities of the aligned trials.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
        groups : ndarray of shape (n_trials,) or None
            Each trial's group (routed: requested by default); None takes a DecodingData's metadata.

        Returns
        -------
        proba : ndarray of shape (n_trials, n_classes)
        """
        inputs = self._prediction_input(X, groups)  # checks first that the model is fitted
        return self._classifier().predict_proba(inputs)

    def predict(self, X, groups=None):
        """The class of each aligned trial.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
        groups : ndarray of shape (n_trials,) or None

        Returns
        -------
        y : ndarray of shape (n_trials,)
        """
        inputs = self._prediction_input(X, groups)  # checks first that the model is fitted
        return self._classifier().predict(inputs)
