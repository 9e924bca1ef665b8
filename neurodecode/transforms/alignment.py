"""Alignment across people, sessions and recordings as scikit-learn transformers.

Each transformer moves every group of trials (a subject, a session or a recording) to a common
reference, so that a decoder trained on some people meets the next person's data where it expects
it. Groups come, in this order, from a ``groups`` argument (routed by scikit-learn's metadata
routing: ``set_fit_request(groups=True)``, ``set_transform_request(groups=True)``), from a
:class:`~neurodecode.data.DecodingData`'s metadata (``by="subject"``, ``"session"`` or
``"recording"``), or from labels encoded the pyRiemann way (``pyriemann.transfer.encode_domains``:
``"domain/label"``); with none of these all the trials form one group.

In ``transform``, a group seen at fit uses the reference it had at fit; a group never seen at fit
gets its own reference from its own trials (unsupervised and transductive: the trials handed to
``transform`` together are the group's whole calibration). Trials given without any group are one
group: the one fitted without groups, else ``target_group`` when set, else a new group.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._utils.checks import check_matrices, check_signal_info, check_signals, unpack_data
from ..geometry import mean_riemann
from ..geometry.alignment import (align_signals, dispersion, geodesic, procrustes_rotation, recenter,
                                  signal_reference, stretch, whitener)

__all__ = ["EuclideanAlignment", "RiemannianRecentering", "RiemannianRotation", "RiemannianStretching",
           "RunningAlignment"]

#: Metadata columns naming each kind of group; "dataset" is put first when the data hold several.
GROUP_COLUMNS = {"subject": ("subject",), "session": ("subject", "session"),
                 "recording": ("subject", "session", "run")}


def _scalar(value):
    """A group label as a plain Python value (numpy scalars become int, str, ...), so references key cleanly."""
    return value.item() if isinstance(value, np.generic) else value


def _is_encoded(y) -> bool:
    """Whether ``y`` holds pyRiemann's ``encode_domains`` labels (``"domain/label"`` strings)."""
    if y is None:
        return False
    y = np.asarray(y)
    return y.ndim == 1 and y.size > 0 and y.dtype.kind in "UO" and all(isinstance(v, str) and "/" in v for v in y)


def resolve_groups(X, y, groups, by: str, owner: str):
    """The trials, one group label per trial (or None) and the class labels, from wherever they are given.

    Parameters
    ----------
    X : DecodingData or array-like of n trials
    y : array-like of shape (n,) or None
        Class labels, possibly encoded by ``pyriemann.transfer.encode_domains``.
    groups : array-like of shape (n,) or None
        Explicit group labels; they take precedence over the DecodingData's metadata and encoded labels.
    by : {"subject", "session", "recording"}
        Which groups a DecodingData's metadata gives.
    owner : str
        The estimator's name, for error messages.

    Returns
    -------
    X : DecodingData or array-like
        As given (the caller checks it).
    groups : ndarray of shape (n,) or None
    y : ndarray of shape (n,) or None
        Decoded class labels when ``y`` was encoded, else ``y`` as given.
    """
    trials, info = unpack_data(X)
    n = len(trials)
    if _is_encoded(y):
        from pyriemann.transfer import decode_domains

        _, y, encoded = decode_domains(None, np.asarray(y))
        groups = encoded if groups is None else groups
    if groups is None and info is not None:
        columns = list(GROUP_COLUMNS[by])
        if X.metadata["dataset"].nunique() > 1:
            columns.insert(0, "dataset")
        groups = X.groups(columns if len(columns) > 1 else columns[0])
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"{owner}: groups must hold one label per trial ({n}); got shape {groups.shape}")
    return X, groups, y


class _GroupAlignment(TransformerMixin, BaseEstimator):
    """Per-group references learned in ``fit``, applied in ``transform``; subclasses say what a reference is."""

    _parameter_constraints = {
        "by": [StrOptions(set(GROUP_COLUMNS))],
        "target_group": "no_validation",
    }

    # -- what a subclass defines ---------------------------------------------------------------
    def _check_input(self, X, *, reset: bool) -> np.ndarray:
        raise NotImplementedError

    def _reference(self, X):
        """The fitted state of one group, from its trials ``X`` (a tuple of arrays)."""
        raise NotImplementedError

    def _apply(self, X, reference) -> np.ndarray:
        raise NotImplementedError

    # -- shared machinery ----------------------------------------------------------------------
    def _group_keys(self, groups, n):
        if groups is None:
            return [None] * n
        return [_scalar(g) for g in groups]

    def _split(self, keys):
        """Indices of each group, in order of first appearance."""
        order = {}
        for i, key in enumerate(keys):
            order.setdefault(key, []).append(i)
        return {key: np.asarray(index) for key, index in order.items()}

    def fit(self, X, y=None, groups=None):
        """Learn each group's reference.

        Parameters
        ----------
        X : DecodingData or ndarray
            Trials; see the class for the shape.
        y : ndarray of shape (n_trials,) or None
            Class labels; labels encoded by ``pyriemann.transfer.encode_domains`` give the groups.
        groups : ndarray of shape (n_trials,) or None
            Group of each trial (routed with ``set_fit_request(groups=True)``).

        Returns
        -------
        self
        """
        self._validate_params()
        X, groups, y = resolve_groups(X, y, groups, self.by, type(self).__name__)
        trials = self._check_input(X, reset=True)
        self._fit_groups(trials, y, self._group_keys(groups, len(trials)))
        return self

    def _fit_groups(self, trials, y, keys):
        self.references_ = {key: self._reference(trials[index]) for key, index in self._split(keys).items()}
        if self.target_group is not None and self.target_group not in self.references_:
            raise ValueError(f"{type(self).__name__}: target_group {self.target_group!r} is not among the fitted "
                             f"groups {list(self.references_)[:10]}")

    def _transform_keys(self, groups, n):
        if groups is not None:
            return self._group_keys(groups, n)
        if None in self.references_:
            return [None] * n
        return [self.target_group] * n

    def transform(self, X, groups=None):
        """Align each group by its reference (its own trials' reference for a group not seen at fit).

        Parameters
        ----------
        X : DecodingData or ndarray
            Trials; see the class for the shape.
        groups : ndarray of shape (n_trials,) or None
            Group of each trial (routed with ``set_transform_request(groups=True)``).

        Returns
        -------
        X_new : ndarray of the same shape as X
        """
        check_is_fitted(self, "references_")
        X, groups, _ = resolve_groups(X, None, groups, self.by, type(self).__name__)
        trials = self._check_input(X, reset=False)
        out = np.empty_like(trials)
        for key, index in self._split(self._transform_keys(groups, len(trials))).items():
            reference = self.references_.get(key)
            if reference is None:
                reference = self._reference(trials[index])
            out[index] = self._apply(trials[index], reference)
        return out

    def fit_transform(self, X, y=None, groups=None):
        """``fit`` then ``transform`` of the same trials, with the same groups.

        Parameters
        ----------
        X : DecodingData or ndarray
        y : ndarray of shape (n_trials,) or None
        groups : ndarray of shape (n_trials,) or None

        Returns
        -------
        X_new : ndarray of the same shape as X
        """
        _, resolved, _ = resolve_groups(X, y, groups, self.by, type(self).__name__)
        return self.fit(X, y, groups=groups).transform(X, groups=resolved)


class EuclideanAlignment(_GroupAlignment):
    """Euclidean alignment of signals (He & Wu, IEEE TBME 2020): each group whitened by its mean covariance.

    For each group, ``R = (1 / n) sum_i X_i X_iᵀ / n_times`` (the trials' covariances, not centred,
    averaged arithmetically) and every trial becomes ``R^{-1/2} X_i``, so that the group's mean
    covariance is the identity. Eigenvalues of ``R`` below ``rcond`` times the largest are raised to
    it before the inverse square root.

    Parameters
    ----------
    by : {"subject", "session", "recording"}, default="subject"
        The groups a DecodingData's metadata gives (a session is a subject's session, a recording
        a session's run; the dataset is added when the data hold several).
    target_group : object or None, default=None
        The fitted group whose reference aligns trials given to ``transform`` without any group.
    rcond : float, default=1e-10
        Relative eigenvalue floor of the reference.

    Attributes
    ----------
    references_ : dict
        Group label (None: fitted without groups) to that group's mean covariance,
        ndarray of shape (n_channels, n_channels).
    n_channels_ : int
    sfreq_ : float or None
        Sampling rate of the DecodingData seen in ``fit``; None for a plain array.
    ch_names_ : tuple of str or None

    Notes
    -----
    ``fit`` and ``transform`` take X of shape (n_trials, n_channels, n_times) or a DecodingData;
    the output has the same shape.
    """

    _parameter_constraints = {
        **_GroupAlignment._parameter_constraints,
        "rcond": [Interval(numbers.Real, 0, 1, closed="left")],
    }

    def __init__(self, by="subject", target_group=None, rcond=1e-10):
        self.by = by
        self.target_group = target_group
        self.rcond = rcond

    def _check_input(self, X, *, reset):
        name = type(self).__name__
        if reset:
            X, self.sfreq_, self.ch_names_ = check_signal_info(self, X, reset=True)
            X = check_signals(X, name)
            self.n_channels_ = X.shape[1]
            return X
        return check_signals(check_signal_info(self, X, reset=False)[0], name, n_channels=self.n_channels_)

    def _reference(self, X):
        return signal_reference(X)

    def _apply(self, X, reference):
        return align_signals(X, whitener(reference, self.rcond))


class RiemannianRecentering(_GroupAlignment):
    """Riemannian recentring of covariances (Zanini et al. 2018): each group's Riemannian mean to the identity.

    For each group, ``M`` is the affine-invariant (Karcher) mean of its matrices and every matrix
    becomes ``M^{-1/2} C_i M^{-1/2}``. Equal to ``pyriemann.transfer.TLCenter`` (``fit_transform``
    on the training domains, ``transform`` with ``target_domain``): see docs/alignment.md.

    Parameters
    ----------
    by : {"subject", "session", "recording"}, default="subject"
        As in :class:`EuclideanAlignment` (a DecodingData reaches this step only when it is first).
    target_group : object or None, default=None
        The fitted group whose mean recentres matrices given to ``transform`` without any group
        (pyRiemann's ``target_domain``).
    tol : float, default=1e-8
        Stopping tolerance of the mean (:func:`~neurodecode.geometry.mean_riemann`).
    maxiter : int, default=50

    Attributes
    ----------
    references_ : dict
        Group label (None: fitted without groups) to its Riemannian mean, ndarray of shape (n, n).
    n_channels_ : int

    Notes
    -----
    ``fit`` and ``transform`` take SPD matrices of shape (n_matrices, n_channels, n_channels).
    """

    _parameter_constraints = {
        **_GroupAlignment._parameter_constraints,
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "maxiter": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, by="subject", target_group=None, tol=1e-8, maxiter=50):
        self.by = by
        self.target_group = target_group
        self.tol = tol
        self.maxiter = maxiter

    def _check_input(self, X, *, reset):
        name = type(self).__name__
        if reset:
            X = check_matrices(X, name)
            self.n_channels_ = X.shape[1]
            return X
        return check_matrices(X, name, n_channels=self.n_channels_)

    def _mean(self, X):
        return mean_riemann(X, tol=self.tol, maxiter=self.maxiter)

    def _reference(self, X):
        return self._mean(X)

    def _apply(self, X, reference):
        return recenter(X, reference)


class RiemannianStretching(RiemannianRecentering):
    """Stretching of covariances (Rodrigues et al. 2019): each group's dispersion brought to one value.

    For each group, ``M`` its Riemannian mean (the identity with ``centered=True``) and ``d`` the
    mean squared Riemannian distance of its matrices to ``M``; every matrix becomes
    ``M^{1/2} (M^{-1/2} C_i M^{-1/2})^{sqrt(dispersion / d)} M^{1/2}``, which multiplies each distance
    to ``M`` by ``sqrt(dispersion / d)``. As ``pyriemann.transfer.TLScale``; needs no labels.

    Parameters
    ----------
    by : {"subject", "session", "recording"}, default="subject"
    target_group : object or None, default=None
        As in :class:`RiemannianRecentering`.
    dispersion : float, default=1.0
        The dispersion every group ends with (pyRiemann's ``final_dispersion``).
    centered : bool, default=False
        Whether the matrices were recentred beforehand (the mean is then taken as the identity).
    tol : float, default=1e-8
    maxiter : int, default=50

    Attributes
    ----------
    references_ : dict
        Group label to ``(M, d)``: the mean (ndarray of shape (n, n)) and the dispersion (float).
    n_channels_ : int

    Notes
    -----
    ``fit`` and ``transform`` take SPD matrices of shape (n_matrices, n_channels, n_channels).
    """

    _parameter_constraints = {
        **RiemannianRecentering._parameter_constraints,
        "dispersion": [Interval(numbers.Real, 0, None, closed="neither")],
        "centered": ["boolean"],
    }

    def __init__(self, by="subject", target_group=None, dispersion=1.0, centered=False, tol=1e-8, maxiter=50):
        self.by = by
        self.target_group = target_group
        self.dispersion = dispersion
        self.centered = centered
        self.tol = tol
        self.maxiter = maxiter

    def _reference(self, X):
        M = np.eye(X.shape[-1]) if self.centered else self._mean(X)
        return M, float(dispersion(X, M))

    def _apply(self, X, reference):
        M, spread = reference
        if spread == 0:
            return X.copy()
        return stretch(X, M, np.sqrt(self.dispersion / spread))


class RiemannianRotation(RiemannianRecentering):
    """Rotation of each group's class means onto the target group's (Riemannian Procrustes, Rodrigues et al. 2019).

    Needs labelled trials of every group, the target's included (a new person's calibration run).
    For each source group, the orthogonal ``Q`` minimising ``sum_k w_k δ²(T_k, Q S_k Qᵀ)`` over the
    classes ``k`` (``S_k``, ``T_k`` the Riemannian class means of the group and of the target) is
    found by :func:`~neurodecode.geometry.alignment.procrustes_rotation`, and every matrix of the
    group becomes ``Q C_i Qᵀ``. The target group and groups not seen at fit are left unchanged (a
    rotation needs labels). Apply it to recentred (and stretched) matrices, as
    ``pyriemann.transfer.TLRotate``.

    Parameters
    ----------
    by : {"subject", "session", "recording"}, default="subject"
    target_group : object or None, default=None
        The group the others are rotated onto; needed when more than one group is fitted.
    metric : {"euclid", "riemann"}, default="euclid"
        δ: the Frobenius or the affine-invariant distance between class means.
    class_weights : array-like of shape (n_classes,) or None, default=None
        Weight of each class (classes in sorted order) in the cost; equal by default.
    tol_step : float, default=1e-9
        The rotation's descent stops once a step moves it by at most this.
    maxiter : int, default=10000
        Descent iterations at most.

    Attributes
    ----------
    references_ : dict
        Group label to its rotation, ndarray of shape (n, n) (the identity for the target).
    target_group_ : object
        The group rotated onto.
    classes_ : ndarray of shape (n_classes,)
    n_channels_ : int

    Notes
    -----
    ``fit`` takes SPD matrices of shape (n_matrices, n_channels, n_channels) and their labels.
    """

    _parameter_constraints = {
        **_GroupAlignment._parameter_constraints,
        "metric": [StrOptions({"euclid", "riemann"})],
        "class_weights": ["array-like", None],
        "tol_step": [Interval(numbers.Real, 0, None, closed="neither")],
        "maxiter": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, by="subject", target_group=None, metric="euclid", class_weights=None, tol_step=1e-9,
                 maxiter=10_000):
        self.by = by
        self.target_group = target_group
        self.metric = metric
        self.class_weights = class_weights
        self.tol_step = tol_step
        self.maxiter = maxiter

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def fit(self, X, y, groups=None):
        """Learn the rotation of each source group onto the target group.

        Parameters
        ----------
        X : ndarray of shape (n_matrices, n_channels, n_channels)
        y : ndarray of shape (n_matrices,)
            Class labels (possibly encoded by ``pyriemann.transfer.encode_domains``).
        groups : ndarray of shape (n_matrices,) or None

        Returns
        -------
        self : RiemannianRotation
        """
        if y is None:
            raise ValueError("RiemannianRotation needs class labels y: it matches class means")
        return super().fit(X, y, groups=groups)

    def _class_means(self, X, y):
        return np.stack([mean_riemann(X[y == c]) for c in self.classes_])

    def _fit_groups(self, trials, y, keys):
        y = np.asarray(y)
        if y.shape != (len(trials),):
            raise ValueError(f"RiemannianRotation: y must hold one label per matrix ({len(trials)}); got {y.shape}")
        index = self._split(keys)
        if self.target_group is not None:
            target = self.target_group
        elif len(index) == 1:
            target = next(iter(index))
        else:
            raise ValueError(f"RiemannianRotation: {len(index)} groups were given; set target_group to the one the "
                             "others are rotated onto")
        if target not in index:
            raise ValueError(f"RiemannianRotation: target_group {target!r} is not among the fitted groups "
                             f"{list(index)[:10]}")
        self.classes_ = np.unique(y)
        for key, rows in index.items():
            missing = set(self.classes_.tolist()) - set(np.unique(y[rows]).tolist())
            if missing:
                raise ValueError(f"RiemannianRotation: group {key!r} has no trial of class(es) {sorted(missing)}; "
                                 "every group needs every class")
        target_means = self._class_means(trials[index[target]], y[index[target]])
        eye = np.eye(trials.shape[-1])
        self.references_ = {
            key: eye if key == target else procrustes_rotation(
                self._class_means(trials[rows], y[rows]), target_means, weights=self.class_weights,
                metric=self.metric, tol_step=self.tol_step, maxiter=self.maxiter)
            for key, rows in index.items()}
        self.target_group_ = target

    def _transform_keys(self, groups, n):
        return [self.target_group_] * n if groups is None else self._group_keys(groups, n)

    def _reference(self, X):
        # A group not seen at fit has no labels to match: it is left where it is.
        return np.eye(X.shape[-1])

    def _apply(self, X, reference):
        out = reference @ X @ reference.T
        return (out + np.swapaxes(out, -1, -2)) / 2


class RunningAlignment(TransformerMixin, BaseEstimator):
    """A reference updated window by window, for a stream or a new recording without labels.

    ``method="euclidean"`` takes signal windows (n_windows, n_channels, n_times) and keeps the mean
    of their covariances ``X Xᵀ / n_times`` (as :class:`EuclideanAlignment`); ``transform`` whitens
    windows by its inverse square root. ``method="riemannian"`` takes covariances
    (n_windows, n, n) and keeps a running Riemannian mean, each new matrix pulling the estimate
    along the geodesic towards it by the window's weight (``M <- M #_w C``); ``transform`` recentres
    by it (as :class:`RiemannianRecentering`).

    ``weighting="cumulative"`` weighs the k-th window ``1 / k``: every window counts the same and the
    Euclidean reference equals the batch one over the same windows. ``"exponential"`` weighs each
    new window ``1 - 2^(-1 / halflife)``: a window's weight halves every ``halflife`` windows, so the
    reference follows slow drift. ``max_windows`` freezes the reference after that many windows:
    the first N seconds of a stream stepping every s seconds are N / s windows.

    Parameters
    ----------
    method : {"euclidean", "riemannian"}, default="euclidean"
    weighting : {"cumulative", "exponential"}, default="cumulative"
    halflife : float, default=50.0
        In windows; used by ``weighting="exponential"``.
    max_windows : int or None, default=None
        Windows taken into the reference at most (None: no limit).
    rcond : float, default=1e-10
        Relative eigenvalue floor of the Euclidean reference.

    Attributes
    ----------
    reference_ : ndarray of shape (n_channels, n_channels)
        The current reference.
    n_windows_ : int
        Windows taken into it.
    n_channels_ : int
    sfreq_ : float or None
        Sampling rate of the DecodingData of the first update (signals); None for arrays.
    ch_names_ : tuple of str or None
    """

    _parameter_constraints = {
        "method": [StrOptions({"euclidean", "riemannian"})],
        "weighting": [StrOptions({"cumulative", "exponential"})],
        "halflife": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_windows": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "rcond": [Interval(numbers.Real, 0, 1, closed="left")],
    }

    def __init__(self, method="euclidean", weighting="cumulative", halflife=50.0, max_windows=None, rcond=1e-10):
        self.method = method
        self.weighting = weighting
        self.halflife = halflife
        self.max_windows = max_windows
        self.rcond = rcond

    def _check_input(self, X, *, reset: bool) -> np.ndarray:
        name = type(self).__name__
        if self.method == "euclidean":
            X, sfreq, ch_names = check_signal_info(self, X, reset=reset)
            X = check_signals(X, name, n_channels=None if reset else self.n_channels_)
            if reset:
                self.sfreq_, self.ch_names_ = sfreq, ch_names
        else:
            X = check_matrices(X, name, n_channels=None if reset else self.n_channels_)
            if reset:
                self.sfreq_, self.ch_names_ = None, None
        if reset:
            self.n_channels_ = X.shape[1]
        return X

    def fit(self, X, y=None):
        """Start a new reference from the windows ``X``, taken in order.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_windows, n_channels, n_times), or (n_windows, n, n)
        y : ignored

        Returns
        -------
        self : RunningAlignment
        """
        for attribute in ("reference_", "n_windows_", "n_channels_", "sfreq_", "ch_names_"):
            self.__dict__.pop(attribute, None)
        return self.partial_fit(X)

    def partial_fit(self, X, y=None):
        """Take the windows ``X``, in order, into the reference.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_windows, n_channels, n_times), or (n_windows, n, n)
        y : ignored

        Returns
        -------
        self : RunningAlignment
        """
        self._validate_params()
        first = not hasattr(self, "reference_")
        X = self._check_input(X, reset=first)
        matrices = signal_reference(X[:, None]) if self.method == "euclidean" else X
        if first:
            self.reference_, self.n_windows_ = None, 0
        decay = 1.0 - 0.5 ** (1.0 / self.halflife)
        for C in matrices:
            if self.max_windows is not None and self.n_windows_ >= self.max_windows:
                break
            self.n_windows_ += 1
            weight = 1.0 / self.n_windows_ if self.weighting == "cumulative" or self.n_windows_ == 1 else decay
            if self.reference_ is None:
                self.reference_ = C.copy()
            elif self.method == "euclidean":
                self.reference_ = self.reference_ + weight * (C - self.reference_)
            else:
                self.reference_ = geodesic(self.reference_, C, weight)
        return self

    def update(self, window):
        """Take one window into the reference.

        Parameters
        ----------
        window : ndarray of shape (n_channels, n_times), or (n, n) for ``method="riemannian"``

        Returns
        -------
        self : RunningAlignment
        """
        window = np.asarray(window)
        if window.ndim != 2:
            raise ValueError(f"RunningAlignment.update takes one window of shape (n_channels, n_times) or (n, n); "
                             f"got shape {window.shape}")
        return self.partial_fit(window[None])

    def transform(self, X):
        """Align windows by the current reference.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_windows, n_channels, n_times), or (n_windows, n, n)

        Returns
        -------
        X_new : ndarray of the same shape as X
        """
        check_is_fitted(self, "reference_")
        X = self._check_input(X, reset=False)
        if self.method == "euclidean":
            return align_signals(X, whitener(self.reference_, self.rcond))
        return recenter(X, self.reference_)

