"""fMRI functional connectomes (correlation, partial correlation, tangent) as one transformer.

The semantics are nilearn's ``ConnectivityMeasure`` (0.14), computed on the batched geometry:
one covariance per subject (Ledoit-Wolf by default), correlation from the covariance of
z-scored signals, partial correlation from the precision matrix, and the tangent connectome
``logm(M^{-1/2} C M^{-1/2})`` at the Riemannian mean ``M`` of the training covariances.
Vectors follow nilearn's ``sym_matrix_to_vec`` so features are interchangeable with nilearn's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..geometry import ESTIMATORS, covariances, invsqrtm, log_map, mean_riemann
from .._utils.checks import check_signals, unpack_data
from .._utils.device import resolve_device

KINDS = ("correlation", "partial correlation", "tangent", "covariance")


def _subject_list(X, name: str) -> list:
    """Subjects of ``X`` as a list of arrays, before any per-subject check."""
    X = unpack_data(X)[0]  # a DecodingData: one trial per subject
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim != 3:
            raise ValueError(f"{name}: X must be a list of (n_rois, n_times) arrays or one array of shape "
                             f"(n_subjects, n_rois, n_times); got an array of shape {X.shape}"
                             + (" (wrap a single subject in a list)" if X.ndim == 2 else ""))
        return list(X)
    if isinstance(X, (str, bytes)) or not hasattr(X, "__len__"):
        raise ValueError(f"{name}: X must be a list of (n_rois, n_times) arrays; got {type(X).__name__}")
    return list(X)


def check_subjects(X, name: str, *, n_rois: int | None = None) -> list[np.ndarray]:
    """Validate subject time series and return them as float64 arrays of shape (n_rois, n_times_i).

    Parameters
    ----------
    X : list of ndarray of shape (n_rois, n_times_i), ndarray of shape (n_subjects, n_rois, n_times), \
            or DecodingData
        A list or object array of subjects; lengths may differ between subjects; ROI counts may not.
    name : str
        The estimator named in errors.
    n_rois : int or None
        ROI count seen in ``fit``, required in ``transform``.
    """
    subjects = _subject_list(X, name)
    if not subjects:
        raise ValueError(f"{name}: X holds no subject")
    arrays = []
    for i, subject in enumerate(subjects):
        subject = np.asarray(subject)
        if subject.ndim != 2:
            raise ValueError(f"{name}: subject {i} must have shape (n_rois, n_times); got {subject.shape}")
        arrays.append(subject)
    counts = sorted({a.shape[0] for a in arrays})
    if len(counts) > 1:
        first = {c: next(i for i, a in enumerate(arrays) if a.shape[0] == c) for c in counts}
        raise ValueError(f"{name}: subjects have different ROI counts {counts} (first subject with each: {first}); "
                         "every subject needs the same ROIs, in shape (n_rois, n_times)")
    # The shared checks see each subject as a one-trial batch; the prefix says which subject failed.
    return [check_signals(a[None], f"{name}: subject {i}", n_channels=n_rois)[0] for i, a in enumerate(arrays)]


def constant_rois(signals: np.ndarray) -> np.ndarray:
    """Mask of the ROIs whose time series is constant, up to rounding.

    Parameters
    ----------
    signals : ndarray of shape (n_rois, n_times)

    Returns
    -------
    mask : ndarray of bool, shape (n_rois,)
    """
    std = signals.std(axis=1)
    # Relative to the subject's scale: a constant non-zero series leaves rounding noise after centring.
    scale = max(float(np.abs(signals).max()), np.finfo(np.float64).tiny)
    return std <= 4 * np.finfo(np.float64).eps * scale


def _standardize(signals: np.ndarray) -> np.ndarray:
    """Z-score each ROI over time; constant ROIs become all-zero series."""
    centred = signals - signals.mean(axis=1, keepdims=True)
    std = centred.std(axis=1, keepdims=True)
    return np.where(constant_rois(signals)[:, None], 0.0, centred / np.where(std > 0, std, 1.0))


def _cov_to_corr(C: torch.Tensor) -> torch.Tensor:
    """``C_ij / sqrt(C_ii C_jj)`` with unit diagonal; rows of a zero-variance ROI become 0."""
    d = torch.diagonal(C, dim1=-2, dim2=-1)
    inv = torch.where(d > 0, 1.0 / d.clamp(min=torch.finfo(C.dtype).tiny).sqrt(), torch.zeros_like(d))
    R = C * inv[..., :, None] * inv[..., None, :]
    eye = torch.eye(C.shape[-1], dtype=torch.bool, device=C.device)
    return torch.where(eye, torch.ones_like(R), R)


def vectorize_connectomes(M: torch.Tensor, discard_diagonal: bool = False) -> torch.Tensor:
    """nilearn's ``sym_matrix_to_vec``: the lower triangle row by row, diagonal divided by sqrt(2).

    This is not :func:`neurodecode.geometry.upper` (pyRiemann's upper triangle with off-diagonal
    entries times sqrt(2)); both keep the Frobenius norm up to a factor sqrt(2), but the order and
    scale differ, and nilearn's is the one connectome users compare against.

    Parameters
    ----------
    M : tensor of shape (..., n, n)
        Symmetric matrices.
    discard_diagonal : bool
        Drop the diagonal (the vector then holds the off-diagonal values, unscaled).

    Returns
    -------
    v : tensor of shape (..., n (n + 1) / 2), or (..., n (n - 1) / 2) without the diagonal
    """
    n = M.shape[-1]
    rows, cols = torch.tril_indices(n, n, offset=-1 if discard_diagonal else 0, device=M.device)
    v = M[..., rows, cols]
    if discard_diagonal:
        return v
    divisor = torch.ones(len(rows), dtype=M.dtype, device=M.device)
    divisor[rows == cols] = math.sqrt(2.0)
    return v / divisor


class Connectome(BaseEstimator, TransformerMixin):
    """Functional connectome of each subject's ROI time series, with nilearn's semantics.

    Parameters
    ----------
    kind : {"correlation", "partial correlation", "tangent", "covariance"}, default="correlation"
        ``"correlation"``: the covariance of the z-scored signals (shrunk by ``estimator``),
        rescaled to a unit diagonal. ``"partial correlation"``: ``-P_ij / sqrt(P_ii P_jj)`` for the
        precision ``P`` (inverse covariance), unit diagonal. ``"covariance"``: the covariance
        itself. ``"tangent"``: ``logm(M^{-1/2} C M^{-1/2})`` where ``M`` is the Riemannian mean of
        the training covariances (Varoquaux et al. 2010).
    estimator : {"lwf", "oas", "scm"}, default="lwf"
        Covariance estimator of each subject (scikit-learn's definitions). Ledoit-Wolf is
        nilearn's default; shrinkage keeps covariances positive definite when ROIs outnumber
        time points or when some ROIs are constant, which partial correlation and tangent need.
    vectorize : bool, default=True
        Return nilearn's vector of each matrix (lower triangle row by row, diagonal divided by
        sqrt(2)) instead of the matrix.
    discard_diagonal : bool, default=False
        Leave the diagonal out of the vectors (only with ``vectorize=True``).
    device : str or None, default="cpu"
        ``"cpu"``, ``"cuda"``..., or None for the GPU when present. Results are float64 numpy.

    Attributes
    ----------
    n_rois_ : int
        ROIs per subject seen in ``fit``.
    mean_ : ndarray of shape (n_rois, n_rois)
        For ``"tangent"``, the Riemannian (geometric) mean of the training covariances, the
        reference point; otherwise the arithmetic mean of the training connectomes.
    whitening_ : ndarray of shape (n_rois, n_rois) or None
        ``mean_ ** -1/2`` for ``"tangent"``, else None.

    Notes
    -----
    Input is ROIs first, time second, (n_rois, n_times) per subject, as everywhere in this
    package (nilearn takes (n_times, n_rois)). Subjects may have different lengths.

    Constant ROIs (e.g. all-zero cerebellar signals cut off by the field of view) get, in
    ``"correlation"``, correlation 0 with every other ROI and 1 on the diagonal, whatever the
    estimator. With a shrinkage estimator their covariance row is zero except for a positive
    diagonal (the shrinkage target), so the covariance stays positive definite and partial
    correlation (again 0 off the diagonal) and tangent are defined; this is what nilearn computes
    too. With ``estimator="scm"`` the covariance is singular and partial correlation and tangent
    raise an error rather than return NaN.
    """

    def __init__(self, kind="correlation", estimator="lwf", vectorize=True, discard_diagonal=False, device="cpu"):
        self.kind = kind
        self.estimator = estimator
        self.vectorize = vectorize
        self.discard_diagonal = discard_diagonal
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    def _check_params(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}; got {self.estimator!r}")
        if self.discard_diagonal and not self.vectorize:
            raise ValueError("discard_diagonal=True needs vectorize=True (matrices always keep their diagonal)")
        resolve_device(self.device)

    def _covariances(self, subjects: list[np.ndarray]) -> torch.Tensor:
        """Covariance (of z-scored signals for "correlation") per subject, (n_subjects, n_rois, n_rois)."""
        device = resolve_device(self.device)
        if self.kind == "correlation":
            subjects = [_standardize(s) for s in subjects]
        n = subjects[0].shape[0]
        out = torch.empty(len(subjects), n, n, dtype=torch.float64, device=device)
        # One batched call per scan length (ABIDE has one length per site).
        lengths = np.array([s.shape[1] for s in subjects])
        for length in np.unique(lengths):
            index = np.nonzero(lengths == length)[0]
            batch = torch.from_numpy(np.stack([subjects[i] for i in index])).to(device)
            out[torch.from_numpy(index).to(device)] = covariances(batch, self.estimator)
        return out

    def _context(self, subjects: list[np.ndarray]) -> str:
        flat = [i for i, s in enumerate(subjects) if constant_rois(s).any()]
        return (f"{type(self).__name__}(kind={self.kind!r}, estimator={self.estimator!r}); subjects with "
                f"constant ROIs: {flat[:10]}{' ...' if len(flat) > 10 else ''}")

    def _connectomes(self, C: torch.Tensor, subjects: list[np.ndarray]) -> torch.Tensor:
        """Matrices of the chosen kind from the covariances (tangent needs the fitted reference)."""
        try:
            if self.kind == "correlation":
                return _cov_to_corr(C)
            if self.kind == "partial correlation":
                L, info = torch.linalg.cholesky_ex(C)
                failed = torch.nonzero(info > 0).flatten().tolist()
                if failed:
                    raise ValueError(f"the covariances of subject(s) {failed[:10]} are not positive definite, so "
                                     "they have no inverse; use a shrinkage estimator such as 'lwf' or 'oas'")
                precision = torch.cholesky_inverse(L)
                partial = -_cov_to_corr(precision)
                eye = torch.eye(C.shape[-1], dtype=torch.bool, device=C.device)
                return torch.where(eye, torch.ones_like(partial), partial)
            if self.kind == "tangent":
                return log_map(C, torch.from_numpy(self.mean_).to(C.device))
            return C
        except ValueError as err:
            raise ValueError(f"{self._context(subjects)}: {err}") from err

    def _output(self, M: torch.Tensor) -> np.ndarray:
        if self.vectorize:
            M = vectorize_connectomes(M, self.discard_diagonal)
        return M.cpu().numpy()

    def _fit(self, X, *, transform: bool) -> torch.Tensor | None:
        """Learn the reference; return the training connectomes (matrices) when ``transform``."""
        self._check_params()
        subjects = check_subjects(X, type(self).__name__)
        C = self._covariances(subjects)
        self.n_rois_ = subjects[0].shape[0]
        if self.kind == "tangent":
            try:
                self.mean_ = mean_riemann(C).cpu().numpy()
            except ValueError as err:
                raise ValueError(f"{self._context(subjects)}: {err}") from err
            self.whitening_ = invsqrtm(self.mean_)
            return self._connectomes(C, subjects) if transform else None
        M = self._connectomes(C, subjects)
        mean = M.mean(dim=0)
        self.mean_ = (0.5 * (mean + mean.T)).cpu().numpy()
        self.whitening_ = None
        return M

    def fit(self, X, y=None):
        """Compute the reference: the mean covariance (tangent) or mean connectome (other kinds).

        Parameters
        ----------
        X : list of ndarray of shape (n_rois, n_times_i), ndarray of shape (n_subjects, n_rois, n_times), \
                or DecodingData
            One time series per subject, ROIs first.
        y : ignored

        Returns
        -------
        self : Connectome
        """
        self._fit(X, transform=False)
        return self

    def fit_transform(self, X, y=None):
        """``fit(X).transform(X)``, estimating each covariance once.

        Parameters
        ----------
        X : list of ndarray of shape (n_rois, n_times_i), ndarray of shape (n_subjects, n_rois, n_times), \
                or DecodingData
        y : ignored

        Returns
        -------
        connectomes : ndarray of shape (n_subjects, n_features) or (n_subjects, n_rois, n_rois)
        """
        return self._output(self._fit(X, transform=True))

    def transform(self, X):
        """Connectome of each subject.

        Parameters
        ----------
        X : list of ndarray of shape (n_rois, n_times_i), ndarray of shape (n_subjects, n_rois, n_times), \
                or DecodingData

        Returns
        -------
        connectomes : ndarray of shape (n_subjects, n_features) or (n_subjects, n_rois, n_rois)
            ``n_features`` is ``n_rois (n_rois + 1) / 2``, or ``n_rois (n_rois - 1) / 2`` with
            ``discard_diagonal=True``.
        """
        check_is_fitted(self, "n_rois_")
        subjects = check_subjects(X, type(self).__name__, n_rois=self.n_rois_)
        return self._output(self._connectomes(self._covariances(subjects), subjects))
