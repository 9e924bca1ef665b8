"""Augmented covariance (ACM): covariances of delay-embedded signals, and a fast choice of order and lag.

The augmented covariance of Carrara & Papadopoulo (arXiv 2302.04508) stacks ``order`` copies
of a trial shifted by ``0, lag, ..., (order - 1) * lag`` samples and estimates the covariance of
the stacked signal, so that the matrix holds lagged cross-covariances between channels as well
as the spatial ones. :class:`AugmentedCovariance` computes it for one (order, lag).

Choosing (order, lag) is where the cost was: MOABB's reference pipeline refits
embedding + covariance + tangent space + SVC for each of 600 grid points and each inner fold.
:class:`AugmentedCovarianceSelector` instead computes each trial's lagged cross-products once
and assembles the sample covariance of every candidate (order, lag) from them exactly
(:class:`LaggedProducts`), then scores each candidate with one tangent-space map and an inner
cross-validation of a linear classifier on fixed features.
"""

from __future__ import annotations

import numbers
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.model_selection import check_cv, cross_val_score
from sklearn.svm import SVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .._utils.checks import check_signal_info, check_signals
from ..geometry import (ESTIMATORS, covariance_from_sums, covariances, ledoit_wolf_shrinkage_from_moments,
                        oas_shrinkage, shrink, tangent_space)

__all__ = ["delay_embed", "embedded_length", "covariance_from_sums", "AugmentedCovariance",
           "AugmentedCovarianceSelector", "LaggedProducts"]


def _check_order_lag(order, lag) -> tuple[int, int]:
    for name, value in (("order", order), ("lag", lag)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(order), int(lag)


def embedded_length(n_times: int, order: int, lag: int) -> int:
    """Number of samples where all ``order`` delayed copies are defined: ``n_times - (order - 1) * lag``."""
    return n_times - (order - 1) * lag


def _check_length(n_times: int, order: int, lag: int) -> int:
    n = embedded_length(n_times, order, lag)
    if n < 2:
        raise ValueError(f"order={order} and lag={lag} leave {n} sample(s) of the {n_times} per trial "
                         f"(n_times - (order - 1) * lag); a covariance needs at least 2: lower order or lag")
    return n


def delay_embed(X, order: int, lag: int):
    """Stack delayed copies of multichannel signals, keeping only samples where every copy exists.

    Row block ``k`` (``k = 0 .. order - 1``) is the signal advanced by ``k * lag`` samples,
    ``X[..., k * lag : k * lag + n]`` with ``n = n_times - (order - 1) * lag``: nothing wraps
    around (pyRiemann's ``TimeDelayCovariances`` rolls the signal instead). MOABB's
    ``AugmentedDataset`` orders the blocks the same way but, for ``order >= 2``, drops
    ``lag`` more samples at the end: its output is ``delay_embed(X[..., :-lag], order, lag)``.

    Parameters
    ----------
    X : ndarray or tensor of shape (..., n_channels, n_times)
        Signals; any leading axes.
    order : int
        Number of copies (1 returns ``X`` itself).
    lag : int
        Delay between consecutive copies, in samples.

    Returns
    -------
    Z : ndarray or tensor of shape (..., order * n_channels, n_times - (order - 1) * lag)
        Same kind (numpy or torch) as ``X``; block ``k`` holds rows ``k * n_channels`` to
        ``(k + 1) * n_channels - 1``.
    """
    order, lag = _check_order_lag(order, lag)
    if X.ndim < 2:
        raise ValueError(f"X must have shape (..., n_channels, n_times); got shape {tuple(X.shape)}")
    n = _check_length(X.shape[-1], order, lag)
    blocks = [X[..., k * lag:k * lag + n] for k in range(order)]
    if isinstance(X, torch.Tensor):
        return torch.cat(blocks, dim=-2)
    return np.concatenate(blocks, axis=-2)


def _check_estimator(estimator) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")


class LaggedProducts:
    """Exact augmented covariances for many (order, lag) pairs from one pass over the trials.

    Block ``(i, j)`` of the embedded sample covariance is a lagged cross-product of the original
    signal, ``sum_u x_u x_{u+d}^T`` with ``d = (j - i) * lag``, over a range of ``u`` that
    depends on (order, lag). The full-range product is computed once per delay ``d``; a
    candidate's range differs from it only by ``i * lag`` samples at the start and
    ``(order - 1 - j) * lag`` at the end, which are subtracted (a product over at most
    ``(order - 1) * lag`` samples). Block means come from cumulative sums over time.

    Parameters
    ----------
    X : ndarray of shape (n_trials, n_channels, n_times)
        Trials (checked finite, 3-D).
    max_delay : int
        Largest ``(order - 1) * lag`` that will be asked for.

    Notes
    -----
    Memory: ``(max_delay + 1) * n_trials * n_channels**2`` floats for the lagged products.
    Each trial is centred on its own mean first: covariances do not change (every block is
    centred again), and the subtraction of large uncentred sums is avoided.
    """

    def __init__(self, X, max_delay: int):
        X = check_signals(X, type(self).__name__)
        n_times = X.shape[-1]
        if not 0 <= max_delay <= n_times - 2:
            raise ValueError(f"max_delay must be in [0, n_times - 2 = {n_times - 2}]; got {max_delay}")
        x = torch.from_numpy(X)
        self._x = x - x.mean(dim=-1, keepdim=True)
        self.n_times = n_times
        self.max_delay = int(max_delay)
        self._full = torch.stack([self._x[..., :n_times - d] @ self._x[..., d:].transpose(-1, -2)
                                  for d in range(self.max_delay + 1)])
        zero = torch.zeros(*self._x.shape[:-1], 1, dtype=self._x.dtype)
        self._cumsum = torch.cat([zero, self._x.cumsum(dim=-1)], dim=-1)

    def _block_sums(self, order: int, lag: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Uncentred block sums (n_trials, order*C, order*C) and block means (n_trials, order, C)."""
        x, T = self._x, self.n_times
        n_trials, n_channels = x.shape[:2]
        dim = order * n_channels
        sums = torch.empty(n_trials, dim, dim, dtype=x.dtype)
        for i in range(order):
            for j in range(i, order):
                d = (j - i) * lag
                block = self._full[d].clone()
                head = i * lag
                if head:
                    block -= x[..., :head] @ x[..., d:d + head].transpose(-1, -2)
                tail = (order - 1 - j) * lag
                if tail:
                    start = T - d - tail
                    block -= x[..., start:T - d] @ x[..., start + d:T].transpose(-1, -2)
                rows, cols = slice(i * n_channels, (i + 1) * n_channels), slice(j * n_channels, (j + 1) * n_channels)
                sums[:, rows, cols] = block
                if i != j:
                    sums[:, cols, rows] = block.transpose(-1, -2)
        starts = torch.arange(order) * lag
        means = (self._cumsum[..., starts + n] - self._cumsum[..., starts]).transpose(-1, -2) / n
        return sums, means

    def covariances(self, order: int, lag: int, estimator: str = "scm") -> np.ndarray:
        """Augmented covariances of every trial, equal to ``AugmentedCovariance(order, lag, estimator)``.

        Parameters
        ----------
        order, lag : int
            With ``(order - 1) * lag <= max_delay``.
        estimator : {"scm", "oas", "lwf"}

        Returns
        -------
        C : ndarray of shape (n_trials, order * n_channels, order * n_channels)
        """
        order, lag = _check_order_lag(order, lag)
        _check_estimator(estimator)
        if (order - 1) * lag > self.max_delay:
            raise ValueError(f"(order - 1) * lag = {(order - 1) * lag} exceeds max_delay={self.max_delay}")
        n = _check_length(self.n_times, order, lag)
        sums, means = self._block_sums(order, lag, n)
        flat_means = means.reshape(means.shape[0], -1)
        S = sums / n - flat_means[:, :, None] * flat_means[:, None, :]
        if estimator == "oas":
            S = shrink(S, oas_shrinkage(S, n))
        elif estimator == "lwf":
            S = shrink(S, ledoit_wolf_shrinkage_from_moments(S, self._fourth_moment(order, lag, n, means), n))
        return S.numpy()

    def _fourth_moment(self, order: int, lag: int, n: int, means: torch.Tensor) -> torch.Tensor:
        """``sum_t ||z_t - m||^4`` of the embedded, centred signal: O(order * n_channels * n) per trial."""
        sq = torch.zeros(self._x.shape[0], n, dtype=self._x.dtype)
        for k in range(order):
            sq += ((self._x[..., k * lag:k * lag + n] - means[:, k, :, None]) ** 2).sum(dim=1)
        return (sq ** 2).sum(dim=-1)


class AugmentedCovariance(TransformerMixin, BaseEstimator):
    """Covariance matrices of delay-embedded trials (the augmented covariance matrix).

    Parameters
    ----------
    order : int, default=1
        Number of delayed copies; 1 gives the plain spatial covariance.
    lag : int, default=1
        Delay between consecutive copies, in samples.
    estimator : {"scm", "oas", "lwf"}, default="oas"
        ``"scm"``: ``sklearn.covariance.empirical_covariance`` of the embedded signal (centred,
        divided by the number of samples); ``"oas"`` / ``"lwf"``: scikit-learn's OAS /
        Ledoit-Wolf of the embedded signal, which stay SPD when ``order * n_channels``
        approaches or exceeds the number of samples.

    Attributes
    ----------
    n_channels_in_ : int
        Channels of the trials seen in ``fit``.
    n_times_in_ : int
        Samples per trial seen in ``fit``.
    sfreq_ : float or None
        Sampling rate of the DecodingData seen in ``fit``; None for a plain array.
    ch_names_ : tuple of str or None
        Channel names of the DecodingData seen in ``fit``; None for a plain array.

    Notes
    -----
    Each trial keeps ``n_times - (order - 1) * lag`` samples (see :func:`delay_embed`).

    ``fit`` and ``transform`` take a DecodingData or an array. After a fit on a DecodingData,
    one given to ``transform`` must have the same channels in the same order and the same
    sampling rate (``lag`` counts samples: at another rate it is another delay), else
    ``ValueError``.
    """

    def __init__(self, order=1, lag=1, estimator="oas"):
        self.order = order
        self.lag = lag
        self.estimator = estimator

    def _validate(self, X, reset: bool) -> tuple:
        _check_order_lag(self.order, self.lag)
        _check_estimator(self.estimator)
        X, sfreq, ch_names = check_signal_info(self, X, reset=reset)
        X = check_signals(X, type(self).__name__)
        _check_length(X.shape[-1], self.order, self.lag)
        return X, sfreq, ch_names

    def fit(self, X, y=None):
        """Check parameters and the trial shape.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
        y : ignored

        Returns
        -------
        self : AugmentedCovariance
        """
        X, self.sfreq_, self.ch_names_ = self._validate(X, reset=True)
        self.n_channels_in_, self.n_times_in_ = X.shape[1], X.shape[2]
        return self

    def transform(self, X):
        """Augmented covariances of each trial.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)

        Returns
        -------
        C : ndarray of shape (n_trials, order * n_channels, order * n_channels)
            SPD for ``"oas"``/``"lwf"``; for ``"scm"`` only when there are more samples than rows.
        """
        check_is_fitted(self, "n_channels_in_")
        X = self._validate(X, reset=False)[0]
        if X.shape[1] != self.n_channels_in_:
            raise ValueError(f"X has {X.shape[1]} channels; {self.n_channels_in_} were seen in fit")
        return covariances(delay_embed(X, self.order, self.lag), self.estimator)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags


class AugmentedCovarianceSelector(TransformerMixin, BaseEstimator):
    """Augmented covariance whose (order, lag) is chosen by a cheap inner cross-validation.

    ``fit`` scores candidate (order, lag) pairs on the training trials and keeps the best;
    ``transform`` returns the augmented covariances at that pair. Candidates are all of
    ``orders x lags`` (order 1 once, since its lag is irrelevant) except those whose
    dimension ``order * n_channels`` exceeds ``max_dim_ratio`` times the number of embedded
    samples, where even a shrunk covariance is mostly prior.

    Scoring a candidate: exact augmented covariances of all training trials assembled from
    lagged products computed once (:class:`LaggedProducts`), shrunk with ``estimator``, mapped
    to the tangent space at their arithmetic mean (computed once on all training trials,
    without labels), and the mean ``scoring`` of ``classifier`` over the ``cv`` inner folds of
    those fixed tangent vectors. The plain covariance (order 1) is always a candidate, so the
    choice is never worse than it by the inner estimate.

    Any number of classes works: ``scoring="auto"`` is ROC AUC for two classes and balanced
    accuracy for more (e.g. left/right/idle windows), where plain ROC AUC is undefined. A
    candidate whose inner score fails or is NaN on any fold is left out of the choice (with a
    warning); if every candidate fails, ``fit`` raises a ``ValueError`` naming the first failure.

    Parameters
    ----------
    orders : iterable of int, default=range(1, 11)
        Candidate orders; 1 is added if absent.
    lags : iterable of int, default=range(1, 11)
        Candidate lags, in samples.
    estimator : {"scm", "oas", "lwf"}, default="oas"
        Covariance estimator (see :class:`AugmentedCovariance`).
    cv : int or cross-validation splitter, default=3
        Inner folds (an int means ``StratifiedKFold`` without shuffling, as ``check_cv`` gives).
    scoring : "auto", str or callable, default="auto"
        Any scikit-learn scorer. ``"auto"``: ``"roc_auc"`` for two classes,
        ``"balanced_accuracy"`` for more. (``"roc_auc_ovr"`` would need ``predict_proba``,
        which the default linear SVC lacks; balanced accuracy, unlike accuracy, is not won
        by always answering a dominant idle class.)
    classifier : estimator or None, default=None
        Classifier on tangent vectors; None means ``SVC(kernel="linear")``.
    max_dim_ratio : float, default=0.5
        Skip candidates with ``order * n_channels > max_dim_ratio * (n_times - (order - 1) * lag)``.
    beam : int or None, default=3
        None scores every candidate. An int searches order by order: all lags at the second
        smallest order, then at each higher order only the ``beam`` lags that scored best at the
        order below, stopping once an order's best score falls below the best so far. The
        cost then grows with the number of orders, not with orders x lags.
    rule : {"best", "one_se"}, default="one_se"
        ``"best"`` keeps the highest mean inner score. ``"one_se"`` keeps the smallest order
        with a candidate within one standard error (``std_test_score / sqrt(n_folds)``) of the
        best, and that order's best lag: with few trials the inner scores are noisy, and a
        larger matrix has to win clearly to be kept.

    Attributes
    ----------
    order_, lag_ : int
        Chosen pair.
    scoring_ : str or callable
        The scoring used (``"auto"`` resolved).
    cv_results_ : dict of ndarray
        One entry per candidate: ``order``, ``lag``, ``mean_test_score`` (NaN for a candidate
        that could not be scored), ``std_test_score``, ``score_time`` (seconds, covariance +
        tangent map + inner CV), ``rank_test_score`` (NaN scores rank last).
    n_channels_in_ : int
    sfreq_ : float or None
        Sampling rate of the DecodingData seen in ``fit``; None for a plain array.
    ch_names_ : tuple of str or None
        Channel names of the DecodingData seen in ``fit``; None for a plain array.

    Notes
    -----
    ``fit`` and ``transform`` take a DecodingData or an array, as :class:`AugmentedCovariance`
    does. ``y`` must be passed even with a DecodingData (``fit(data, data.y)``, and
    ``pipe.fit(data, data.y)`` in a Pipeline, whose later steps need it too).
    """

    def __init__(self, orders=range(1, 11), lags=range(1, 11), estimator="oas", cv=3, scoring="auto",
                 classifier=None, max_dim_ratio=0.5, beam=3, rule="one_se"):
        self.orders = orders
        self.lags = lags
        self.estimator = estimator
        self.cv = cv
        self.scoring = scoring
        self.classifier = classifier
        self.max_dim_ratio = max_dim_ratio
        self.beam = beam
        self.rule = rule

    def _candidates(self, n_channels: int, n_times: int) -> dict[int, list[int]]:
        orders = sorted({_check_order_lag(o, 1)[0] for o in self.orders} | {1})
        lags = sorted({_check_order_lag(1, lag)[1] for lag in self.lags})
        if not lags:
            raise ValueError("lags must name at least one lag")
        if not (isinstance(self.max_dim_ratio, numbers.Real) and self.max_dim_ratio > 0):
            raise ValueError(f"max_dim_ratio must be a positive number; got {self.max_dim_ratio!r}")
        if self.beam is not None and (isinstance(self.beam, bool) or not isinstance(self.beam, numbers.Integral)
                                      or self.beam < 1):
            raise ValueError(f"beam must be None or an integer >= 1; got {self.beam!r}")
        by_order = {1: [lags[0]]}
        for order in orders[1:]:
            fitting = [lag for lag in lags if embedded_length(n_times, order, lag) >= 2
                       and order * n_channels <= self.max_dim_ratio * embedded_length(n_times, order, lag)]
            if fitting:
                by_order[order] = fitting
        return by_order

    def fit(self, X, y=None):
        """Score the candidate (order, lag) pairs on the training trials and keep the best.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
        y : array-like of shape (n_trials,)
            Required, also with a DecodingData (``fit(data, data.y)``).

        Returns
        -------
        self : AugmentedCovarianceSelector
        """
        name = type(self).__name__
        _check_estimator(self.estimator)
        if self.rule not in ("best", "one_se"):
            raise ValueError(f"rule must be 'best' or 'one_se'; got {self.rule!r}")
        X, sfreq, ch_names = check_signal_info(self, X, reset=True)
        X = check_signals(X, name)
        if y is None:
            # Taking data.y here would not help a Pipeline: its later steps would still get y=None.
            raise ValueError(f"{name} is supervised: y is required; with a DecodingData call fit(data, data.y) "
                             "(pipe.fit(data, data.y) for a Pipeline)")
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},) to match X; got {y.shape}")
        check_classification_targets(y)
        n_classes = np.unique(y).size
        scoring = self.scoring
        if isinstance(scoring, str) and scoring == "auto":
            scoring = "roc_auc" if n_classes == 2 else "balanced_accuracy"
        n_channels, n_times = X.shape[1:]
        by_order = self._candidates(n_channels, n_times)
        classifier = SVC(kernel="linear") if self.classifier is None else self.classifier
        cv = check_cv(self.cv, y, classifier=True)
        products = LaggedProducts(X, max((o - 1) * max(lags) for o, lags in by_order.items()))
        pairs, means, stds, times, failures = [], [], [], [], []

        def score(order, lag):
            start = time.perf_counter()
            C = torch.from_numpy(products.covariances(order, lag, self.estimator))
            features = tangent_space(C, C.mean(dim=0)).numpy()
            try:
                scores = cross_val_score(clone(classifier), features, y, cv=cv, scoring=scoring, error_score="raise")
            except Exception as err:  # noqa: BLE001 - any failure leaves this candidate out; all failing raises below
                scores, reason = np.full(1, np.nan), err
            else:
                reason = None if np.isfinite(scores).all() else f"the scorer returned {scores.tolist()}"
            if reason is not None:
                failures.append(((order, lag), reason))
            pairs.append((order, lag))
            means.append(scores.mean() if reason is None else np.nan)
            stds.append(scores.std() if reason is None else np.nan)
            times.append(time.perf_counter() - start)
            # -inf rather than NaN: the beam's ranking and stopping compare these.
            return means[-1] if reason is None else -np.inf

        best_so_far, previous = -np.inf, None
        for order, lags in by_order.items():
            if self.beam is not None and previous is not None:
                lags = [lag for lag in sorted(previous, key=previous.get, reverse=True)[:self.beam] if lag in lags]
                if not lags:
                    break
            scored = {lag: score(order, lag) for lag in lags}
            if self.beam is not None and order > 1:
                if max(scored.values()) < best_so_far:
                    break
                previous = scored
            best_so_far = max(best_so_far, *scored.values())
        means, stds = np.asarray(means), np.asarray(stds)
        valid = ~np.isnan(means)
        if failures:
            (order, lag), reason = failures[0]
            detail = (f"first: (order={order}, lag={lag}): "
                      f"{type(reason).__name__ + ': ' if isinstance(reason, Exception) else ''}{reason}")
            if not valid.any():
                hint = (f"; y has {n_classes} classes: scoring='auto' uses balanced accuracy beyond two"
                        if n_classes > 2 and scoring != "balanced_accuracy" else "")
                raise ValueError(f"{name}: no candidate (order, lag) could be scored with scoring={scoring!r} "
                                 f"({detail}){hint}") from (reason if isinstance(reason, Exception) else None)
            warnings.warn(f"{name}: {len(failures)} of {len(pairs)} candidates could not be scored with "
                          f"scoring={scoring!r} and were left out of the choice ({detail})", UserWarning,
                          stacklevel=2)
        # Ties go to the earliest candidate, the smallest order then lag: the cheaper matrix.
        best = int(np.nanargmax(means))
        if self.rule == "one_se":
            orders = np.array([p[0] for p in pairs])
            within = valid & (means >= means[best] - stds[best] / np.sqrt(cv.get_n_splits(X, y)))
            smallest = orders == orders[within].min()
            best = int(np.argmax(np.where(smallest & valid, means, -np.inf)))
        self.order_, self.lag_ = pairs[best]
        self.scoring_ = scoring
        self.cv_results_ = {
            "order": np.array([p[0] for p in pairs]), "lag": np.array([p[1] for p in pairs]),
            "mean_test_score": means, "std_test_score": stds, "score_time": np.asarray(times),
            "rank_test_score": (np.argsort(np.argsort(-means, kind="stable"), kind="stable") + 1),
        }
        self.n_channels_in_ = n_channels
        self.n_times_in_ = n_times
        self.sfreq_, self.ch_names_ = sfreq, ch_names
        return self

    def transform(self, X):
        """Augmented covariances at the chosen (order, lag).

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)

        Returns
        -------
        C : ndarray of shape (n_trials, order_ * n_channels, order_ * n_channels)
        """
        check_is_fitted(self, "order_")
        X = check_signals(check_signal_info(self, X, reset=False)[0], type(self).__name__)
        if X.shape[1] != self.n_channels_in_:
            raise ValueError(f"X has {X.shape[1]} channels; {self.n_channels_in_} were seen in fit")
        _check_length(X.shape[-1], self.order_, self.lag_)
        return covariances(delay_embed(X, self.order_, self.lag_), self.estimator)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags
