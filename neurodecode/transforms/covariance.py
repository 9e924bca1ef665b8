"""Covariance and tangent-space transformers on the batched geometry (CPU or GPU)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..geometry import ESTIMATORS, covariances, mean_riemann, tangent_space
from ..geometry._backend import batched, to_tensor
from .._utils.device import resolve_device
from .._utils.checks import check_matrices, check_signal_info, check_signals

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}; got {dtype!r}")
    return DTYPES[dtype]


class Covariances(BaseEstimator, TransformerMixin):
    """Spatial covariance matrices of trials.

    Parameters
    ----------
    estimator : {"scm", "oas", "lwf"}, default="oas"
        Sample covariance, OAS or Ledoit-Wolf shrinkage (scikit-learn's definitions). Shrinkage
        keeps matrices positive definite when channels approach the number of samples.
    device : str or None, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``..., or None for the GPU when present.
    dtype : {"float64", "float32"}, default="float64"
        Precision of the computation; the output is float64 numpy either way.
    batch_size : int or None, default=None
        Trials per batch on the device (None: all at once).

    Attributes
    ----------
    n_channels_ : int
        Channels seen in ``fit``.
    sfreq_ : float or None
        Sampling rate of the DecodingData seen in ``fit``; None for a plain array.
    ch_names_ : tuple of str or None
        Channel names of the DecodingData seen in ``fit``; None for a plain array.

    Notes
    -----
    ``fit`` and ``transform`` take a DecodingData or an array. A DecodingData given to
    ``transform`` after a fit on a DecodingData must have the same channels in the same order
    (a permuted covariance would meet a classifier trained on another layout) and the same
    sampling rate, else ``ValueError``.
    """

    def __init__(self, estimator="oas", device="cpu", dtype="float64", batch_size=None):
        self.estimator = estimator
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size

    def fit(self, X, y=None):
        """Check the parameters and remember the channels.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)
        y : ignored

        Returns
        -------
        self : Covariances
        """
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}; got {self.estimator!r}")
        resolve_device(self.device)
        resolve_dtype(self.dtype)
        X, sfreq, ch_names = check_signal_info(self, X, reset=True)
        X = check_signals(X, type(self).__name__)
        self.sfreq_, self.ch_names_ = sfreq, ch_names
        self.n_channels_ = X.shape[1]
        return self

    def transform(self, X):
        """Covariance of each trial.

        Parameters
        ----------
        X : DecodingData or ndarray of shape (n_trials, n_channels, n_times)

        Returns
        -------
        C : ndarray of shape (n_trials, n_channels, n_channels)
        """
        check_is_fitted(self, "n_channels_")
        X = check_signals(check_signal_info(self, X, reset=False)[0], type(self).__name__, n_channels=self.n_channels_)
        T, _ = to_tensor(X, device=resolve_device(self.device), dtype=resolve_dtype(self.dtype))
        C = batched(lambda part: covariances(part, self.estimator), T, self.batch_size)
        return C.cpu().numpy().astype(np.float64, copy=False)


class TangentSpace(BaseEstimator, TransformerMixin):
    """Project SPD matrices to the tangent space at their Riemannian mean.

    ``fit`` computes the affine-invariant mean of the training matrices; ``transform`` maps each
    matrix with ``upper(logm(M^{-1/2} C M^{-1/2}))`` (pyRiemann's vectorisation, so the features
    equal pyRiemann's ``TangentSpace(metric="riemann")`` to numerical precision).

    Parameters
    ----------
    tol : float, default=1e-8
        Stopping tolerance of the mean's gradient descent.
    maxiter : int, default=50
        Iterations of the mean at most.
    device : str or None, default="cpu"
        As in :class:`Covariances`.
    dtype : {"float64", "float32"}, default="float64"
        Precision of the tangent-space maps (the mean is computed in float64 either way).
    batch_size : int or None, default=None

    Attributes
    ----------
    reference_ : ndarray of shape (n_channels, n_channels)
        The Riemannian mean of the training matrices.
    n_channels_ : int
    """

    def __init__(self, tol=1e-8, maxiter=50, device="cpu", dtype="float64", batch_size=None):
        self.tol = tol
        self.maxiter = maxiter
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size

    def fit(self, X, y=None, sample_weight=None):
        """Riemannian mean of the training matrices.

        Parameters
        ----------
        X : ndarray of shape (n_trials, n_channels, n_channels)
            SPD matrices.
        y : ignored
        sample_weight : ndarray of shape (n_trials,) or None
        """
        resolve_dtype(self.dtype)
        X = check_matrices(X, type(self).__name__)
        # The mean is always computed in float64: in float32 the gradient stalls near 1e-3 and the
        # descent never meets its tolerance. Only the per-trial maps use the requested precision.
        T = to_tensor(X, device=resolve_device(self.device), dtype=torch.float64)[0]
        self.reference_ = mean_riemann(T, weights=sample_weight, tol=self.tol, maxiter=self.maxiter).cpu().numpy()
        self.n_channels_ = X.shape[1]
        return self

    def transform(self, X):
        """Tangent vectors at the training mean.

        Parameters
        ----------
        X : ndarray of shape (n_trials, n_channels, n_channels)

        Returns
        -------
        V : ndarray of shape (n_trials, n_channels * (n_channels + 1) / 2)
        """
        check_is_fitted(self, "reference_")
        X = check_matrices(X, type(self).__name__, n_channels=self.n_channels_)
        device, dtype = resolve_device(self.device), resolve_dtype(self.dtype)
        T = to_tensor(X, device=device, dtype=dtype)[0]
        ref = to_tensor(self.reference_, device=device, dtype=dtype)[0]
        V = batched(lambda part: tangent_space(part, ref), T, self.batch_size)
        return V.cpu().numpy().astype(np.float64, copy=False)
