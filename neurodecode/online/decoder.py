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
that matrix. A Riemannian ``TangentSpace`` right after the covariance is applied with its
whitening matrix precomputed (checked on the first window against pyriemann's own
``transform``), since pyriemann recomputes it on every call. ``z_t`` is the sample itself, or its
delay embedding ``[x(t), x(t - lag), ...]``
for an augmented covariance. Every ``refresh`` decisions the sums are recomputed from the
buffer so round-off cannot drift.

The first step is recognised as incremental when

* it has a method ``moment_spec()`` returning ``{"order": int, "lag": int, "estimator": str,
  "delays": "ascending" | "descending"}`` (the generic hook), or
* it is pyriemann's :class:`~pyriemann.estimation.Covariances`, or
* it exposes ``order``, ``lag`` and ``estimator`` attributes (an augmented covariance such as
  ``neurodecode.transforms.AugmentedCovariance``; both block orders are tried),

and its estimator is one of ``"scm"`` (centred, divided by n), ``"cov"`` (centred, n - 1),
``"oas"`` or ``"lwf"``. On the first window the decoder checks that the covariance built from
the running sums equals the step's own ``transform`` of that window (relative tolerance
1e-6); if not, it warns and falls back to calling the whole pipeline on each window.
"""

from __future__ import annotations

import time
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..data.stream import CausalBandpass, _n_samples
from ..geometry import covariance_from_sums, tangent_space

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
    """Running sums over the (delay-embedded) vectors of the current window."""

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

    def embed(self, buf: np.ndarray, t0: int, t1: int) -> np.ndarray:
        """Embedded vectors for times ``t0..t1-1`` of ``buf``, shape (t1 - t0, dim)."""
        return np.concatenate([buf[:, t0 - k:t1 - k] for k in self.offsets], axis=0).T

    def reset(self, buf: np.ndarray, end: int) -> None:
        Z = self.embed(buf, end - self.n, end)
        self.s1 = Z.sum(axis=0)
        self.s2 = Z.T @ Z
        if self.estimator == "lwf":
            sq = np.einsum("ij,ij->i", Z, Z)
            self.v3 = sq @ Z
            self.a4 = float(sq @ sq)

    def update(self, buf: np.ndarray, end_old: int, end_new: int) -> None:
        Zin = self.embed(buf, end_old, end_new)
        Zout = self.embed(buf, end_old - self.n, end_new - self.n)
        self.s1 += Zin.sum(axis=0) - Zout.sum(axis=0)
        self.s2 += Zin.T @ Zin - Zout.T @ Zout
        if self.estimator == "lwf":
            sq_in, sq_out = np.einsum("ij,ij->i", Zin, Zin), np.einsum("ij,ij->i", Zout, Zout)
            self.v3 += sq_in @ Zin - sq_out @ Zout
            self.a4 += float(sq_in @ sq_in - sq_out @ sq_out)

    def covariance(self) -> np.ndarray:
        extra = {"sum_sq_z": self.v3, "sum_sq_sq": self.a4} if self.estimator == "lwf" else {}
        return covariance_from_sums(self.s1, self.s2, self.n, self.estimator, **extra)


class _FastTangentSpace:
    """Riemannian tangent-space vector of one matrix at a fitted reference.

    pyriemann's ``TangentSpace.transform`` re-validates its input on every call, several times
    the cost of the one eigendecomposition the projection needs; a decoder deciding every step
    cannot afford that. The projection itself is :func:`neurodecode.geometry.tangent_space`.
    """

    def __init__(self, ts):
        self.reference = np.asarray(ts.reference_, dtype=np.float64)

    def __call__(self, cov: np.ndarray) -> np.ndarray:
        return tangent_space(cov[None], self.reference)


def _fast_tangent_space(rest, cov: np.ndarray):
    """A faster ``rest.predict`` for ``TangentSpace(metric="riemann") -> ...``, checked on ``cov``; else None."""
    try:
        from pyriemann.tangentspace import TangentSpace
    except ImportError:  # pyriemann is a dependency; this only guards odd installs
        return None
    first = rest.steps[0][1]
    riemann = ("riemann", {"mean": "riemann", "map": "riemann"})
    if len(rest.steps) < 2 or type(first) is not TangentSpace or first.metric not in riemann \
            or getattr(first, "tsupdate", False):
        return None
    fast = _FastTangentSpace(first)
    reference = first.transform(cov[None])
    if not np.allclose(fast(cov), reference, rtol=1e-6, atol=1e-9 * np.abs(reference).max()):
        return None
    tail = rest[1:]
    return lambda c: tail.predict(fast(c))


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

    Attributes
    ----------
    mode_ : {"incremental", "per_window"}
        The path in use (set by the first decision).
    latencies_ : list of float
        Latency of every decision so far, in seconds.
    """

    def __init__(self, pipeline, *, sfreq: float, window_s: float = 1.0, step_s: float = 0.0625,
                 fmin: float | None = 8.0, fmax: float | None = 32.0, filter_order: int = 4,
                 incremental="auto", refresh: int | None = None):
        self.pipeline = pipeline
        self.sfreq = sfreq
        self.window_s = window_s
        self.step_s = step_s
        self.fmin = fmin
        self.fmax = fmax
        self.filter_order = filter_order
        self.incremental = incremental
        self.refresh = refresh
        self._started = False

    # -- state --------------------------------------------------------------------------
    def reset(self) -> "StreamingDecoder":
        """Validate the settings and forget the stream (filter state, buffer, sums, latencies)."""
        check_is_fitted(self.pipeline)
        if self.incremental not in ("auto", True, False):
            raise ValueError(f"incremental must be 'auto', True or False, got {self.incremental!r}")
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
        reference = np.asarray(self.pipeline.steps[0][1].transform(window[None]))[0]
        for spec in self._candidates:
            moments = _RunningMoments(window.shape[0], self.n_window_, spec["order"], spec["lag"],
                                      spec["estimator"], spec.get("delays", "ascending"))
            if moments.dim != reference.shape[-1]:
                continue
            moments.reset(self._buf, end)
            cov = moments.covariance()
            if np.allclose(cov, reference, rtol=1e-6, atol=1e-9 * np.abs(reference).max()):
                self._moments, self.mode_ = moments, "incremental"
                self._predict_cov = (_fast_tangent_space(self._rest, cov)
                                     or (lambda c: self._rest.predict(c[None])))
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
            if self.mode_ == "incremental":
                return self._predict_cov(self._moments.covariance())[0]
        if self.mode_ == "per_window":
            return self.pipeline.predict(self._buf[None, :, local - self.n_window_:local])[0]
        self._since_refresh += 1
        if prev_end is None or self._since_refresh >= self.refresh_:
            self._moments.reset(self._buf, local)
            self._since_refresh = 0
        else:
            self._moments.update(self._buf, prev_end - self._buf_start, local)
        return self._predict_cov(self._moments.covariance())[0]

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
