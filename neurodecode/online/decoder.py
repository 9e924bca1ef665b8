"""Streaming decoding for live use: feed chunks of samples, get a decision every step.

:class:`StreamingDecoder` wraps a *fitted* scikit-learn pipeline whose input is a window
``(1, n_channels, n_window)``. It filters the incoming samples causally
(:class:`~neurodecode.data.stream.CausalBandpass`, the filter the pseudo-online evaluation
uses), keeps the last window in a buffer and, each time a window completes, issues a
decision with its latency.

Incremental covariance
----------------------
When the pipeline's first step is a covariance estimator, recomputing the covariance of every
window repeats almost all of the previous window's work: consecutive windows share
``n_window - n_step`` samples. The decoder instead keeps running sums over the window,
``S1 = sum z_t`` and ``S2 = sum z_t z_t^T`` (plus ``sum |z_t|^2 z_t`` and ``sum |z_t|^4`` for
Ledoit-Wolf), adding the ``n_step`` vectors that enter and removing those that leave, and
builds the covariance from them; the rest of the pipeline (tangent space, classifier) runs on
that matrix. ``z_t`` is the sample itself, or its delay embedding ``[x(t), x(t - lag), ...]``
for an augmented covariance. Every ``refresh`` decisions the sums are recomputed from the
buffer so round-off cannot drift.

Tangent space in one eigendecomposition
---------------------------------------
When a Riemannian ``TangentSpace`` (any mean, Riemannian map, no ``tsupdate``) follows the
covariance, the decoder computes its reference's inverse square root ``W`` once and also keeps
``sum (W z_t)(W z_t)^T``, so the whitened matrix ``W C W`` (shrinkage included) is assembled
in O(dim^2) per decision; its logarithm then costs one LAPACK ``syevd``. For an augmented
covariance of order 4 on 64 channels that eigendecomposition of a 256 x 256 matrix is most of
the decision's time (see ``docs/pseudo_online.md``).

With ``precision="mixed"`` (the default) and a last step that is one scikit-learn linear
classifier, that eigendecomposition runs in float32 (about 1.5 times faster here); the class
scores are formed from it in float64 next to a first-order bound on their error, and when the
bound cannot exclude a change of winner the decision is made again wholly in float64 by the
pipeline's classifier (:class:`_TangentDecider` gives the bound). Labels are therefore those of
the float64 computation; on eegmmidb about 1 decision in 1000 needed the retry.

The first step is recognised as incremental when

* it has a method ``moment_spec()`` returning ``{"order": int, "lag": int, "estimator": str,
  "delays": "ascending" | "descending"}`` (the generic hook), or
* it is pyriemann's :class:`~pyriemann.estimation.Covariances`, or
* it exposes ``order``, ``lag`` and ``estimator`` attributes (an augmented covariance such as
  ``neurodecode.transforms.AugmentedCovariance``; both block orders are tried),

and its estimator is one of ``"scm"`` (centred, divided by n), ``"cov"`` (centred, n - 1),
``"oas"`` or ``"lwf"``. On the first window the decoder checks that the covariance built from
the running sums equals the step's own ``transform`` of that window (relative tolerance
1e-6); if not, it warns and falls back to calling the whole pipeline on each window. The
tangent-space path is checked there too (whitened matrix, tangent vector against pyriemann's
``transform``, scores against the classifier's ``decision_function``); a part that does not
match is not used, and the decoder calls the rest of the pipeline on the covariance instead.
"""

from __future__ import annotations

import time
import warnings
from typing import NamedTuple

import numpy as np
import torch
from scipy.linalg import get_blas_funcs, get_lapack_funcs
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from ..data.stream import CausalBandpass, _n_samples
from ..geometry import covariance_from_sums, invsqrtm, oas_shrinkage, unupper, upper

# scikit-learn's linear classifiers share one predict, argmax(coef_ @ x + intercept_) (or its sign); reached
# through a public class so that no private module is imported.
_LINEAR_PREDICT = LogisticRegression.predict

_ESTIMATORS = ("scm", "cov", "oas", "lwf")


class Decision(NamedTuple):
    """One decision of the streaming decoder.

    Attributes
    ----------
    end_sample : int
        Index (from the first sample pushed) of the first sample after the decided window.
    end_time : float
        ``end_sample / sfreq`` in seconds; the window covers ``[end_time - window_s, end_time)``.
    label
        The pipeline's prediction for that window.
    latency_s : float
        Seconds from the call to :meth:`StreamingDecoder.push` that completed the window to
        the decision (filtering, buffer and covariance update, rest of the pipeline).
    """

    end_sample: int
    end_time: float
    label: object
    latency_s: float


def _moment_candidates(step) -> list:
    """Possible incremental specs for a pipeline's first step (empty: not incremental)."""
    hook = getattr(step, "moment_spec", None)
    if callable(hook):
        spec = dict(hook())
        specs = [spec]
    else:
        try:
            from pyriemann.estimation import Covariances
        except ImportError:  # pyriemann is a dependency; this only guards odd installs
            Covariances = ()
        if Covariances and isinstance(step, Covariances):
            specs = [{"order": 1, "lag": 1, "estimator": step.estimator, "delays": "ascending"}]
        elif all(hasattr(step, a) for a in ("order", "lag", "estimator")):
            specs = [{"order": step.order, "lag": step.lag, "estimator": step.estimator, "delays": d}
                     for d in ("ascending", "descending")]
        else:
            return []
    return [s for s in specs if isinstance(s["estimator"], str) and s["estimator"] in _ESTIMATORS
            and int(s["order"]) >= 1 and int(s["lag"]) >= 1]


class _RunningMoments:
    """Running sums over the (delay-embedded) vectors of the current window.

    With a whitening matrix ``W`` (:meth:`whiten`), also ``sum (W z_t)(W z_t)^T``: the tangent
    map then needs no product of ``dim x dim`` matrices per decision (see :class:`_TangentDecider`).
    """

    def __init__(self, n_channels: int, n_window: int, order: int, lag: int, estimator: str, delays: str):
        self.order, self.lag, self.estimator = int(order), int(lag), estimator
        self.span = (self.order - 1) * self.lag
        self.n = n_window - self.span
        if self.n < 2:
            raise ValueError(f"a window of {n_window} samples leaves {self.n} embedded vectors for order "
                             f"{order} and lag {lag}")
        ks = np.arange(self.order) * self.lag
        self.offsets = ks if delays == "ascending" else ks[::-1]
        self.dim = n_channels * self.order
        self.W = None

    def embed(self, buf: np.ndarray, t0: int, t1: int) -> np.ndarray:
        """Embedded vectors for times ``t0..t1-1`` of ``buf``, shape (t1 - t0, dim)."""
        return np.concatenate([buf[:, t0 - k:t1 - k] for k in self.offsets], axis=0).T

    def whiten(self, W: np.ndarray, buf: np.ndarray, end: int) -> None:
        """Keep whitened second moments from now on (``W`` symmetric, shape (dim, dim))."""
        self.W = W
        self.reset(buf, end)

    @property
    def _tracks_whitened(self) -> bool:
        return self.W is not None and self.estimator != "lwf"

    def reset(self, buf: np.ndarray, end: int) -> None:
        Z = self.embed(buf, end - self.n, end)
        self.s1 = Z.sum(axis=0)
        self.s2 = Z.T @ Z
        if self._tracks_whitened:
            Zw = Z @ self.W
            self.s2w = Zw.T @ Zw
        if self.estimator == "lwf":
            sq = np.einsum("ij,ij->i", Z, Z)
            self.v3 = sq @ Z
            self.a4 = float(sq @ sq)

    def update(self, buf: np.ndarray, end_old: int, end_new: int) -> None:
        Zin = self.embed(buf, end_old, end_new)
        Zout = self.embed(buf, end_old - self.n, end_new - self.n)
        # One product for the vectors entering (+) and leaving (-): half the dim x dim temporaries.
        Z = np.concatenate([Zin, Zout])
        sign = np.concatenate([np.ones(len(Zin)), -np.ones(len(Zout))])[:, None]
        self.s1 += Zin.sum(axis=0) - Zout.sum(axis=0)
        self.s2 += Z.T @ (sign * Z)
        if self._tracks_whitened:
            Zw = Z @ self.W
            self.s2w += Zw.T @ (sign * Zw)
        if self.estimator == "lwf":
            sq_in, sq_out = np.einsum("ij,ij->i", Zin, Zin), np.einsum("ij,ij->i", Zout, Zout)
            self.v3 += sq_in @ Zin - sq_out @ Zout
            self.a4 += float(sq_in @ sq_in - sq_out @ sq_out)

    def covariance(self) -> np.ndarray:
        extra = {"sum_sq_z": self.v3, "sum_sq_sq": self.a4} if self.estimator == "lwf" else {}
        return covariance_from_sums(self.s1, self.s2, self.n, self.estimator, **extra)

    def whitened_covariance(self, Winv2: np.ndarray) -> np.ndarray:
        """``W C W`` of the window's covariance ``C``, from the whitened sums (``Winv2 = W @ W``).

        Shrinkage ``(1 - s) S + s mu I`` becomes ``(1 - s) W S W + s mu W^2``; ``s`` and ``mu``
        come from the unwhitened ``S`` (O(dim^2)). Ledoit-Wolf goes through
        :func:`covariance_from_sums` and two products instead (its fourth moment lives there).
        Round-off may leave the result asymmetric by a few ulps; LAPACK reads one triangle.
        """
        if not self._tracks_whitened:
            return self.W @ self.covariance() @ self.W
        n = self.n
        mw = self.W @ (self.s1 / n)
        scale, ridge = 1.0, 0.0
        if self.estimator == "cov":
            scale = n / (n - 1)
        elif self.estimator == "oas":
            m = self.s1 / n
            S = _GER(-1.0, m, m, a=(self.s2 / n).T, overwrite_a=1).T
            s = float(oas_shrinkage(torch.from_numpy(S), n))
            scale, ridge = 1.0 - s, s * float(np.trace(S)) / self.dim
        # In place on the Fortran view (A is symmetric): no dim x dim temporaries.
        A = _GER(-scale, mw, mw, a=(self.s2w * (scale / n)).T, overwrite_a=1).T
        if ridge:
            A = _AXPY(Winv2.ravel(), A.reshape(-1), a=ridge).reshape(A.shape)
        return A


_SYEVD = {np.dtype(t): get_lapack_funcs("syevd", dtype=np.dtype(t)) for t in (np.float32, np.float64)}
_SYRK, _GER, _AXPY = get_blas_funcs(("syrk", "ger", "axpy"), dtype=np.float64)


def _eigh(A: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """Eigenvalues (ascending) and eigenvectors of symmetric ``A`` by LAPACK ``syevd`` in ``dtype``; None if not SPD."""
    # A's transpose is Fortran-ordered and equal to A: a plain copy LAPACK then overwrites in place.
    work = A.T.astype(dtype, order="F")
    lam, U, info = _SYEVD[np.dtype(dtype)](work, compute_v=1, lower=0, overwrite_a=1)
    if info != 0 or not lam[0] > 0:
        return None
    return lam, U


class _TangentDecider:
    """Covariance -> Riemannian TangentSpace -> rest of the pipeline, fast enough for every step.

    Built on the first window only if it reproduces pyriemann's ``TangentSpace.transform`` (and,
    for a linear classifier, its ``decision_function``) there; else the decoder does not use it.

    * The reference's inverse square root ``W`` is computed once, and the running sums carry
      ``W z_t`` too, so the whitened matrix ``A = W C W`` costs O(dim^2), not two products.
    * One LAPACK ``syevd`` (divide and conquer: faster than ``syevr`` and ``syev`` at these
      sizes here) per decision gives ``logm(A)``; pyriemann's ``transform`` also re-validates its
      input and recomputes ``W`` on every call.
    * ``precision="mixed"`` with a last step that is a plain linear classifier (the ``predict``
      scikit-learn's linear classifiers share, ``LogisticRegression.predict``: the class of the
      largest ``coef_ @ v + intercept_``, or its sign for two classes): the eigendecomposition
      runs in float32, the scores are formed from its eigenpairs in float64, and the label is
      kept only when the error bound below cannot change the winner; otherwise the decision is
      made again, wholly in float64, by the pipeline's own classifier (``n_float64_retries``).

    Error bound (mixed precision). Let ``(lam, U)`` be the float32 eigenpairs of ``A``,
    ``E = A - U diag(lam) U^T`` and ``F = U^T U - I`` (both in float64), and ``L`` the tangent
    matrix built from them. Writing ``U = Q H`` (``Q`` orthogonal, ``H = I + F/2``) and
    expanding the matrix logarithm to first order in the eigenbasis (its divided differences
    are at most ``1 / lam_min``; the non-orthogonality term is ``F_ij`` times
    ``(log lam_i + log lam_j) / 2 - (lam_i + lam_j) / 2 * (log lam_i - log lam_j) / (lam_i - lam_j)``,
    at most ``max|log lam| + 1 + log(lam_max / lam_min) / 2`` in size) gives

        ``|L - logm(A)|_F <= |E|_F / lam_min + |F|_F (max|log lam| + 1 + log(cond) / 2)``.

    A score difference between two classes moves by at most that times the norm of the
    difference of their weight vectors. ``|E|_F`` and ``|F|_F`` are estimated from
    ``_N_PROBES`` fixed Gaussian probes ``x`` (the mean of ``|E x|^2`` is ``|E|_F^2``), in
    float64 at O(dim^2) each. On eegmmidb windows of orders 1, 2 and 4 the bound was at least 8 and
    typically 30 to 40 times the measured error of the tangent vector, and hundreds of times the
    measured error of the scores.
    """

    _N_PROBES = 8
    _SAFETY = 1.0

    def __init__(self, ts, tail, precision: str):
        self.W = np.asarray(invsqrtm(np.asarray(ts.reference_, dtype=np.float64)))
        self.Winv2 = self.W @ self.W
        self.tail = tail
        dim = self.W.shape[0]
        self.triu = np.flatnonzero(np.triu(np.ones((dim, dim), dtype=bool)))
        self.weights = np.asarray(upper(np.ones((dim, dim))))
        self.linear = None
        if precision == "mixed" and len(tail.steps) == 1:
            clf = tail.steps[0][1]
            if type(clf).predict is _LINEAR_PREDICT and np.ndim(getattr(clf, "coef_", None)) == 2:
                coef = np.asarray(clf.coef_, dtype=np.float64)
                # <unupper(c), L>_F = c . upper(L); with the strict lower triangle's weight moved
                # onto the upper one, the scores need only the upper triangle of L, read in the
                # Fortran order LAPACK and BLAS return.
                omega = np.asarray(unupper(coef))
                omega = (np.triu(omega) + np.triu(omega, 1)).transpose(0, 2, 1)
                pairs = coef[:, None, :] - coef[None, :, :]
                self.linear = (clf, omega.reshape(coef.shape[0], -1),
                               np.asarray(clf.intercept_, dtype=np.float64).ravel(),
                               np.linalg.norm(coef, axis=1), np.linalg.norm(pairs, axis=2))
                self.probes = np.random.default_rng(0).standard_normal((dim, self._N_PROBES))
        self.n_float64_retries = 0

    # -- the two precisions ----------------------------------------------------------------
    def log64(self, A: np.ndarray) -> np.ndarray:
        eig = _eigh(A, np.float64)
        if eig is None:
            raise ValueError("the whitened window covariance is not positive definite; use a shrinkage "
                             "estimator such as 'oas' or 'lwf'")
        lam, U = eig
        return (U * np.log(lam)) @ U.T

    def vector(self, L: np.ndarray) -> np.ndarray:
        return L.ravel()[self.triu] * self.weights

    def predict64(self, A: np.ndarray):
        return self.tail.predict(self.vector(self.log64(A))[None])[0]

    def predict_mixed(self, A: np.ndarray):
        """The label from a float32 eigendecomposition when the error bound allows it, else None."""
        clf, omega, intercept, norms, pair_norms = self.linear
        eig = _eigh(A, np.float32)
        if eig is None:
            return None
        lam, U = eig[0].astype(np.float64), eig[1].astype(np.float64)
        log_lam = np.log(lam)
        # Upper triangle of U diag(log lam) U^T as two rank-k updates (half a product each);
        # eigenvalues ascend, so the negative logarithms are the first columns.
        cut = int(np.searchsorted(log_lam, 0.0))
        upper_L = _SYRK(1.0, U[:, cut:] * np.sqrt(log_lam[cut:]), lower=0)
        upper_L = _SYRK(-1.0, U[:, :cut] * np.sqrt(-log_lam[:cut]), beta=1.0, c=upper_L, overwrite_c=1, lower=0)
        scores = omega @ upper_L.ravel(order="F") + intercept
        # |U^T U - I|_F = |U U^T - I|_F (similar symmetric matrices): both residuals reuse U^T X.
        X = self.probes
        k = X.shape[1]
        UtX = U.T @ X
        back = U @ np.concatenate([lam[:, None] * UtX, UtX], axis=1)
        e = np.linalg.norm(A @ X - back[:, :k]) / np.sqrt(k)
        f = np.linalg.norm(back[:, k:] - X) / np.sqrt(k)
        err = self._SAFETY * (e / lam[0] + f * (np.abs(log_lam).max() + 1.0 + 0.5 * np.log(lam[-1] / lam[0])))
        # Summation order differs from scikit-learn's: a relative hair on top of the bound.
        slack = 1e-9 * (1.0 + np.abs(scores).max())
        if scores.size == 1:
            return None if abs(scores[0]) <= err * norms[0] + slack else clf.classes_[int(scores[0] > 0)]
        top = int(np.argmax(scores))
        gaps = scores[top] - scores
        gaps[top] = np.inf
        return None if np.any(gaps <= err * pair_norms[top] + slack) else clf.classes_[top]

    def __call__(self, A: np.ndarray):
        if self.linear is not None:
            label = self.predict_mixed(A)
            if label is not None:
                return label
            self.n_float64_retries += 1
        return self.predict64(A)

    def check(self, A: np.ndarray, cov: np.ndarray, ts) -> bool:
        """Whether this decider reproduces ``ts.transform`` (and the classifier's scores) on ``cov``."""
        L = self.log64(A)
        v = self.vector(L)
        reference = ts.transform(cov[None])[0]
        if not np.allclose(v, reference, rtol=1e-6, atol=1e-9 * np.abs(reference).max()):
            return False
        if self.linear is not None:
            clf, omega, intercept = self.linear[:3]
            expected = np.asarray(clf.decision_function(v[None]), dtype=np.float64).ravel()
            if not np.allclose(omega @ L.ravel(order="F") + intercept, expected, rtol=1e-9,
                               atol=1e-9 * (1.0 + np.abs(expected).max())):
                self.linear = None
        return True


def _tangent_decider(rest, cov: np.ndarray, moments: _RunningMoments, buf: np.ndarray, end: int,
                     precision: str):
    """A :class:`_TangentDecider` for ``TangentSpace(metric="riemann") -> ...`` checked on ``cov``; else None.

    On success ``moments`` carries whitened sums from now on.
    """
    try:
        from pyriemann.tangentspace import TangentSpace
    except ImportError:  # pyriemann is a dependency; this only guards odd installs
        return None
    first = rest.steps[0][1]
    # Only the map matters once reference_ is fitted (e.g. a log-Euclidean mean, Riemannian map).
    metric = first.metric.get("map") if isinstance(first.metric, dict) else first.metric
    if len(rest.steps) < 2 or type(first) is not TangentSpace or metric != "riemann" \
            or getattr(first, "tsupdate", False) or np.shape(first.reference_) != cov.shape:
        return None
    decider = _TangentDecider(first, rest[1:], precision)
    moments.whiten(decider.W, buf, end)
    A = moments.whitened_covariance(decider.Winv2)
    expected = decider.W @ cov @ decider.W
    if not (np.allclose(A, expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max()) and decider.check(A, cov, first)):
        moments.W = None
        return None
    return decider


def _as_given(X):
    return X


class StreamingDecoder:
    """Decode a live stream with a fitted pipeline, one decision per step.

    Parameters
    ----------
    pipeline : fitted estimator
        Predicts from windows ``X`` of shape (n_windows, n_channels, n_window), e.g. a fitted
        ``Covariances -> TangentSpace -> LogisticRegression`` pipeline.
    sfreq : float
        Sampling rate of the pushed samples, in Hz.
    window_s, step_s : float
        Window length and decision interval in seconds (whole numbers of samples).
        Decisions fall where :func:`~neurodecode.data.stream.sliding_windows` puts windows:
        the first when ``window_s`` has arrived, then every ``step_s``.
    fmin, fmax : float or None
        Causal band-pass applied to pushed samples (both None: samples arrive filtered).
    filter_order : int
        Butterworth order of that filter.
    incremental : {"auto", True, False}
        ``"auto"``: running covariance sums when the first step allows it (see the module
        notes), else the whole pipeline on each window. True: require the incremental path
        (error otherwise). False: always call the pipeline on each window.
    refresh : int or None
        Recompute the running sums from the buffer every ``refresh`` decisions (None:
        every ``ceil(window / step)`` decisions, once per window length).
    precision : {"mixed", "float64"}
        Arithmetic of the tangent-space eigendecomposition on the incremental path when the
        pipeline is ``covariance -> TangentSpace -> one linear classifier``. ``"mixed"``: float32,
        with every decision whose class scores are too close for float32 made again in float64
        (so labels are those of the float64 computation; see the module notes). ``"float64"``:
        always float64. Other pipelines always use float64.
    to_model : callable or None
        ``to_model(X)`` for windows ``X`` of shape (n, n_channels, n_window) gives what the
        pipeline is handed, wherever windows reach it: every window on the per-window path, and
        the first window, on which the incremental path is checked against the first step's
        ``transform``. A live session passes the signal contract
        (:func:`neurodecode.contract.signal.model_input`), so that the model's own checks see
        the rate and channel order of what it decodes. None: the windows themselves.

    Attributes
    ----------
    mode_ : {"incremental", "per_window"}
        The path in use (set by the first decision).
    latencies_ : list of float
        Latency of every decision so far, in seconds.
    n_float64_retries_ : int
        Decisions of the mixed-precision path made again in float64 since the last reset.
    """

    def __init__(self, pipeline, *, sfreq: float, window_s: float = 1.0, step_s: float = 0.0625,
                 fmin: float | None = 8.0, fmax: float | None = 32.0, filter_order: int = 4,
                 incremental="auto", refresh: int | None = None, precision: str = "mixed", to_model=None):
        self.pipeline = pipeline
        self.sfreq = sfreq
        self.window_s = window_s
        self.step_s = step_s
        self.fmin = fmin
        self.fmax = fmax
        self.filter_order = filter_order
        self.incremental = incremental
        self.refresh = refresh
        self.precision = precision
        self.to_model = to_model
        self._started = False

    # -- state --------------------------------------------------------------------------
    def reset(self) -> "StreamingDecoder":
        """Validate the settings and forget the stream (filter state, buffer, sums, latencies)."""
        check_is_fitted(self.pipeline)
        if self.incremental not in ("auto", True, False):
            raise ValueError(f"incremental must be 'auto', True or False, got {self.incremental!r}")
        if self.precision not in ("mixed", "float64"):
            raise ValueError(f"precision must be 'mixed' or 'float64', got {self.precision!r}")
        if self.to_model is not None and not callable(self.to_model):
            raise TypeError(f"to_model must be None or a callable, got {type(self.to_model).__name__}")
        self._model_input = self.to_model if self.to_model is not None else _as_given
        self.n_window_ = _n_samples(self.window_s, self.sfreq, "window_s")
        self.n_step_ = _n_samples(self.step_s, self.sfreq, "step_s")
        if self.n_step_ > self.n_window_:
            raise ValueError(f"step_s={self.step_s} is longer than window_s={self.window_s}")
        self.refresh_ = self.refresh or int(np.ceil(self.n_window_ / self.n_step_))
        self._filter = CausalBandpass(self.sfreq, self.fmin, self.fmax, self.filter_order)
        steps = getattr(self.pipeline, "steps", None)
        self._candidates = _moment_candidates(steps[0][1]) if steps and self.incremental is not False else []
        if self.incremental is True and not self._candidates:
            raise ValueError("incremental=True but the pipeline's first step offers no running-sum path "
                             f"({type(steps[0][1]).__name__ if steps else type(self.pipeline).__name__})")
        self._rest = self.pipeline[1:] if self._candidates else None
        self._buf = None
        self._n_seen = 0  # samples pushed so far
        self._next_end = self.n_window_  # end sample of the next window to decide
        self._last_end = None  # end sample of the last decided window
        self._moments = None
        self._tangent = None
        self._since_refresh = 0
        self.mode_ = None
        self.latencies_ = []
        self._started = True
        return self

    def _append(self, filtered: np.ndarray) -> None:
        # Keep at least one window plus one step of history; compact when the array fills.
        keep = self.n_window_ + self.n_step_ + 1
        if self._buf is None:
            self._buf = np.empty((filtered.shape[0], 4 * keep + filtered.shape[1]))
            self._buf_start, self._buf_len = 0, 0  # stream index of buf[:, 0], samples held
        if self._buf_len + filtered.shape[1] > self._buf.shape[1]:
            drop = max(0, self._buf_len - keep)
            held = self._buf[:, drop:self._buf_len].copy()
            size = max(self._buf.shape[1], held.shape[1] + filtered.shape[1])
            self._buf = np.empty((filtered.shape[0], size))
            self._buf[:, :held.shape[1]] = held
            self._buf_start += drop
            self._buf_len = held.shape[1]
        self._buf[:, self._buf_len:self._buf_len + filtered.shape[1]] = filtered
        self._buf_len += filtered.shape[1]

    # -- deciding -----------------------------------------------------------------------
    def _choose_path(self, end: int) -> None:
        """On the first window: keep the running-sum path only if it reproduces the first step."""
        self.mode_ = "per_window"
        if not self._candidates:
            return
        window = self._buf[:, end - self.n_window_:end]
        reference = np.asarray(self.pipeline.steps[0][1].transform(self._model_input(window[None])))[0]
        for spec in self._candidates:
            moments = _RunningMoments(window.shape[0], self.n_window_, spec["order"], spec["lag"],
                                      spec["estimator"], spec.get("delays", "ascending"))
            if moments.dim != reference.shape[-1]:
                continue
            moments.reset(self._buf, end)
            cov = moments.covariance()
            if np.allclose(cov, reference, rtol=1e-6, atol=1e-9 * np.abs(reference).max()):
                self._moments, self.mode_ = moments, "incremental"
                self._tangent = _tangent_decider(self._rest, cov, moments, self._buf, end, self.precision)
                return
        message = (f"running sums do not reproduce {type(self.pipeline.steps[0][1]).__name__}.transform on the "
                   "first window")
        if self.incremental is True:
            raise ValueError(message)
        warnings.warn(message + "; calling the whole pipeline on each window instead", RuntimeWarning, stacklevel=3)

    def _decide(self, end: int, prev_end: int | None):
        local = end - self._buf_start
        if self.mode_ is None:
            self._choose_path(local)
        elif self.mode_ == "incremental":
            self._since_refresh += 1
            if prev_end is None or self._since_refresh >= self.refresh_:
                self._moments.reset(self._buf, local)
                self._since_refresh = 0
            else:
                self._moments.update(self._buf, prev_end - self._buf_start, local)
        if self.mode_ == "per_window":
            return self.pipeline.predict(self._model_input(self._buf[None, :, local - self.n_window_:local]))[0]
        if self._tangent is not None:
            return self._tangent(self._moments.whitened_covariance(self._tangent.Winv2))
        return self._rest.predict(self._moments.covariance()[None])[0]

    @property
    def n_float64_retries_(self) -> int:
        tangent = getattr(self, "_tangent", None)
        return 0 if tangent is None else tangent.n_float64_retries

    def push(self, chunk) -> list:
        """Feed the next samples; return the decisions of the windows they complete.

        Parameters
        ----------
        chunk : ndarray of shape (n_channels, n_times)
            New raw samples (any ``n_times``, including 0), in the units the pipeline was
            trained on.

        Returns
        -------
        decisions : list of Decision
            One per window completed by this chunk, in time order (often 0 or 1).
        """
        t_start = time.perf_counter()
        if not self._started:
            self.reset()
        chunk = np.asarray(chunk, dtype=float)
        if chunk.ndim != 2:
            raise ValueError(f"push expects a chunk of shape (n_channels, n_times), got {chunk.shape}")
        if not np.isfinite(chunk).all():
            raise ValueError("push: the chunk holds NaN or infinite samples")
        if chunk.shape[1] == 0:
            return []
        self._append(self._filter.process(chunk))
        self._n_seen += chunk.shape[1]
        decisions = []
        while self._next_end <= self._n_seen:
            end = self._next_end
            label = self._decide(end, self._last_end)
            latency = time.perf_counter() - t_start
            self.latencies_.append(latency)
            decisions.append(Decision(end, end / self.sfreq, label, latency))
            self._last_end = end
            self._next_end += self.n_step_
        return decisions

    def latency_summary(self) -> dict:
        """Median, 99th percentile and maximum latency in milliseconds over the decisions so far."""
        lat = np.asarray(self.latencies_) * 1e3
        if lat.size == 0:
            return {"n_decisions": 0, "median_ms": np.nan, "p99_ms": np.nan, "max_ms": np.nan}
        return {"n_decisions": int(lat.size), "median_ms": float(np.median(lat)),
                "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}


def decode_stream(decoder: StreamingDecoder, signal, chunk_size: int):
    """Push a whole recording through a decoder in chunks of ``chunk_size`` samples.

    Parameters
    ----------
    decoder : StreamingDecoder
        Reset before use.
    signal : ndarray of shape (n_channels, n_samples)
        Raw samples.
    chunk_size : int
        Samples per push (e.g. the step, as a live amplifier would deliver them).

    Returns
    -------
    decisions : list of Decision
    """
    signal = np.asarray(signal)
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    decoder.reset()
    out = []
    for i in range(0, signal.shape[1], int(chunk_size)):
        out.extend(decoder.push(signal[:, i:i + int(chunk_size)]))
    return out


__all__ = ["Decision", "StreamingDecoder", "decode_stream"]
