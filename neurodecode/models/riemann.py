"""Minimum distance to Riemannian mean classifiers (MDM, FgMDM) on the batched geometry, CPU or GPU.

Both follow pyRiemann's definitions (``pyriemann.classification.MDM`` / ``FgMDM`` with
``metric="riemann"``) so that predictions are the same: class centroids are affine-invariant
means, a matrix goes to the class of the nearest centroid, and ``predict_proba`` is the softmax of
minus the squared distances. FgMDM first filters the matrices geodesically: tangent vectors at the
training mean are projected on the span of a shrinkage LDA's discriminant directions
(scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")``, computed in the
space of the trials: :func:`shrinkage_lda_directions`), mapped back to the manifold, and
classified by MDM.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ..geometry import distance_riemann, mean_riemann, tangent_space, untangent_space
from ..geometry._backend import batched, to_tensor
from .._utils.device import resolve_device
from .._utils.checks import check_matrices

_CONSTRAINTS = {
    "tol": [Interval(numbers.Real, 0, None, closed="neither")],
    "maxiter": [Interval(numbers.Integral, 1, None, closed="left")],
    "device": [str, None],
    "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), None],
}


def _labels(y, n: int, name: str):
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name}: y must hold one label per matrix ({n}); got shape {y.shape}")
    check_classification_targets(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"{name}: y holds a single class ({classes[0]!r}); a classifier needs at least two")
    return y, classes


def _weights(sample_weight, n: int, name: str) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name}: sample_weight must be {n} finite non-negative numbers")
    return w


def shrinkage_lda_directions(X: np.ndarray, y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``coef_`` of ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y)``, in O(n^2 d).

    scikit-learn forms the d x d within-class covariance (Ledoit-Wolf shrunk, per class, on
    standardised features) and solves it by least squares, O(d^3): 2,080 features of 64-channel
    tangent vectors take seconds, 18,528 (augmented covariances of order 3) do not fit in memory.
    That covariance is a positive diagonal plus a matrix of rank <= n_samples,
    ``Sigma = diag(l) + A^T A`` with ``A``'s rows ``sqrt(p_k (1 - s_k) / n_k) (x - mean_k)``, so
    ``Sigma^{-1} B`` follows from an n x n system (Woodbury). Each class's Ledoit-Wolf shrinkage
    ``s_k`` is computed from Gram matrices of the same n rows: the same estimate, not an approximation.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    classes : ndarray of shape (n_classes,)
        Sorted labels.

    Returns
    -------
    coef : ndarray of shape (1, n_features) for two classes (class 1 minus class 0), else (n_classes, n_features)
    """
    n, d = X.shape
    diag = np.zeros(d)
    rows, means = [], []
    for c in classes:
        Xk = X[y == c]
        nk = len(Xk)
        prior = nk / n
        mean = Xk.mean(axis=0)
        centred = Xk - mean
        scale = np.sqrt((centred ** 2).mean(axis=0))
        scale[scale == 0] = 1.0  # StandardScaler leaves constant features unscaled
        Z = centred / scale
        Z2 = Z ** 2
        mu = Z2.sum() / (nk * d)
        gram = Z @ Z.T
        delta_sum = (gram ** 2).sum() / nk ** 2
        beta = ((Z2.sum(axis=1) ** 2).sum() / nk - delta_sum) / (d * nk)
        delta = (delta_sum - 2.0 * mu * Z2.sum() / nk + d * mu ** 2) / d
        shrink = 0.0 if beta == 0 else min(beta, delta) / delta
        diag += prior * shrink * mu * scale ** 2
        rows.append(np.sqrt(prior * (1.0 - shrink) / nk) * centred)
        means.append(mean)
    M = np.stack(means)
    if not (diag > 0).all():
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y)
        return lda.coef_
    A = np.concatenate(rows)
    B = M.T / diag[:, None]
    Ad = A / diag
    inner = np.eye(len(A)) + Ad @ A.T
    coef = (B - Ad.T @ np.linalg.solve(inner, A @ B)).T
    if len(classes) == 2:
        return (coef[1] - coef[0])[None, :]
    return coef


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class MDM(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Minimum distance to the class Riemannian means.

    Parameters
    ----------
    tol : float, default=1e-8
        Stopping tolerance of each class mean (gradient norm, pyRiemann's rule).
    maxiter : int, default=50
        Iterations of each class mean at most.
    device : str or None, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``..., or None for the GPU when present.
    batch_size : int or None, default=None
        Matrices per batch on the device when computing distances (None: all at once).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    covmeans_ : ndarray of shape (n_classes, n_channels, n_channels)
        Riemannian mean of each class's training matrices.
    n_channels_ : int
    """

    _parameter_constraints = dict(_CONSTRAINTS)

    def __init__(self, tol=1e-8, maxiter=50, device="cpu", batch_size=None):
        self.tol = tol
        self.maxiter = maxiter
        self.device = device
        self.batch_size = batch_size

    def fit(self, X, y, sample_weight=None):
        """Riemannian mean of each class.

        Parameters
        ----------
        X : ndarray of shape (n_matrices, n_channels, n_channels)
            SPD matrices.
        y : ndarray of shape (n_matrices,)
        sample_weight : ndarray of shape (n_matrices,) or None
            Weights of the matrices within their class mean.

        Returns
        -------
        self : MDM
        """
        self._validate_params()
        name = type(self).__name__
        X = check_matrices(X, name)
        y, self.classes_ = _labels(y, len(X), name)
        w = _weights(sample_weight, len(X), name)
        self.covmeans_ = self._class_means(X, y, w)
        self.n_channels_ = X.shape[1]
        return self

    def _class_means(self, X, y, w) -> np.ndarray:
        T = to_tensor(X, device=resolve_device(self.device), dtype=torch.float64)[0]
        return np.stack([
            mean_riemann(T[torch.as_tensor(y == c, device=T.device)], weights=w[y == c], tol=self.tol,
                         maxiter=self.maxiter).cpu().numpy()
            for c in self.classes_])

    def _distances(self, X) -> np.ndarray:
        check_is_fitted(self, "covmeans_")
        X = check_matrices(X, type(self).__name__, n_channels=self.n_channels_)
        device = resolve_device(self.device)
        T = to_tensor(X, device=device, dtype=torch.float64)[0]
        means = to_tensor(self.covmeans_, device=device, dtype=torch.float64)[0]
        D = batched(lambda part: distance_riemann(means[:, None], part[None]).transpose(0, 1), T, self.batch_size)
        return D.cpu().numpy()

    def transform(self, X):
        """Riemannian distance of each matrix to each class mean.

        Parameters
        ----------
        X : ndarray of shape (n_matrices, n_channels, n_channels)

        Returns
        -------
        distances : ndarray of shape (n_matrices, n_classes)
        """
        return self._distances(X)

    def predict(self, X):
        """Class of the nearest mean.

        Parameters
        ----------
        X : ndarray of shape (n_matrices, n_channels, n_channels)

        Returns
        -------
        y_pred : ndarray of shape (n_matrices,)
        """
        return self.classes_[self._distances(X).argmin(axis=1)]

    def predict_proba(self, X):
        """Softmax of minus the squared distances (pyRiemann's definition).

        Parameters
        ----------
        X : ndarray of shape (n_matrices, n_channels, n_channels)

        Returns
        -------
        proba : ndarray of shape (n_matrices, n_classes)
        """
        return _softmax(-self._distances(X) ** 2)


class FgMDM(MDM):
    """MDM after geodesic filtering by a shrinkage LDA in the tangent space (Barachant et al., 2013).

    Parameters
    ----------
    tol : float, default=1e-8
        Stopping tolerance of every Riemannian mean (the reference and the class means).
    maxiter : int, default=50
    device : str or None, default="cpu"
        ``"cpu"``, ``"cuda"``..., or None for the GPU when present. The LDA runs on the CPU.
    batch_size : int or None, default=None
        Matrices per batch on the device when filtering and computing distances.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    reference_ : ndarray of shape (n_channels, n_channels)
        Riemannian mean of all training matrices: the tangent point of the filter.
    projector_ : ndarray of shape (n_features, n_features)
        Orthogonal projector on the LDA's discriminant directions, ``n_features = n (n + 1) / 2``.
    covmeans_ : ndarray of shape (n_classes, n_channels, n_channels)
        Riemannian means of the filtered training matrices of each class.
    n_channels_ : int
    """

    def fit(self, X, y, sample_weight=None):
        """Fit the tangent-space filter, then the class means of the filtered matrices.

        Parameters
        ----------
        X : ndarray of shape (n_matrices, n_channels, n_channels)
            SPD matrices.
        y : ndarray of shape (n_matrices,)
        sample_weight : ndarray of shape (n_matrices,) or None
            Weights in the Riemannian means (the LDA is unweighted, as in pyRiemann).

        Returns
        -------
        self : FgMDM
        """
        self._validate_params()
        name = type(self).__name__
        X = check_matrices(X, name)
        y, self.classes_ = _labels(y, len(X), name)
        w = _weights(sample_weight, len(X), name)
        T = to_tensor(X, device=resolve_device(self.device), dtype=torch.float64)[0]
        reference = mean_riemann(T, weights=w, tol=self.tol, maxiter=self.maxiter)
        vectors = batched(lambda part: tangent_space(part, reference), T, self.batch_size).cpu().numpy()
        W = shrinkage_lda_directions(vectors, y, self.classes_)
        self.reference_ = reference.cpu().numpy()
        self.projector_ = W.T @ np.linalg.pinv(W @ W.T) @ W
        self.n_channels_ = X.shape[1]
        self.covmeans_ = self._class_means(self._filter_vectors(vectors), y, w)
        return self

    def _filter_vectors(self, vectors: np.ndarray) -> np.ndarray:
        device = resolve_device(self.device)
        V = to_tensor(vectors @ self.projector_, device=device, dtype=torch.float64)[0]
        ref = to_tensor(self.reference_, device=device, dtype=torch.float64)[0]
        return batched(lambda part: untangent_space(part, ref), V, self.batch_size).cpu().numpy()

    def filter(self, X):
        """Geodesically filtered matrices.

        Parameters
        ----------
        X : ndarray of shape (n_matrices, n_channels, n_channels)

        Returns
        -------
        X_filtered : ndarray of shape (n_matrices, n_channels, n_channels)
        """
        check_is_fitted(self, "projector_")
        X = check_matrices(X, type(self).__name__, n_channels=self.n_channels_)
        device = resolve_device(self.device)
        T = to_tensor(X, device=device, dtype=torch.float64)[0]
        ref = to_tensor(self.reference_, device=device, dtype=torch.float64)[0]
        return self._filter_vectors(batched(lambda part: tangent_space(part, ref), T, self.batch_size).cpu().numpy())

    def _distances(self, X) -> np.ndarray:
        return super()._distances(self.filter(X))
