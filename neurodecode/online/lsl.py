"""Live decoding of Lab Streaming Layer (LSL) EEG streams with a trained model.

:class:`LSLDecoder` connects to an LSL EEG stream (through mne-lsl's bindings to liblsl),
checks the stream against the model's contract (its card's channels, by name, and sampling
rate), pushes every received sample, in the model's channel order and training unit, through a
:class:`~neurodecode.online.StreamingDecoder` (causal band-pass with carried state, the model's
window, a decision every step) and publishes each decision on an LSL outlet: the class index,
the class probabilities and the lag, stamped with the LSL time of the window's last sample.

* **Same decisions as offline.** The samples pushed are exactly those received, so the decisions
  are those of a :class:`~neurodecode.online.StreamingDecoder` run offline over the same samples
  (``record=True`` keeps them to check it).
* **Dropouts.** No sample for ``dropout_s`` seconds, or timestamps jumping by more than that,
  is a dropout: it is logged and shown, the decoder forgets the stream (filter state, partial
  window) and, when samples come back (the same inlet, or a new outlet of the same name found
  again), decoding resumes with a fresh window: no decision ever mixes samples from both sides
  of a gap, and none from before the gap is published after it. After ``give_up_s`` without
  samples, :class:`LSLStreamLostError`.
* **Markers.** An optional marker stream (strings, or mne-lsl's one-hot annotation streams)
  gives cues; a cue of one of the model's classes at LSL time ``t`` labels the trial interval
  ``[t + tmin, t + tmax]`` of the card, and a decision whose window it covers for at least half
  of that interval is scored against it (the rule of ``neurodecode predict``). Running accuracy,
  nMCC and Wolpaw's ITR follow.
* **Session log.** JSON lines, flushed as they are written: the session's settings, every
  decision, marker, dropout and resumption, and a summary (:func:`read_session_log`).

LSL discovery sends multicast and broadcast packets unless told otherwise. liblsl reads its
configuration from the file named by the environment variable ``LSLAPICFG`` when LSL is first
used; :func:`use_loopback_config` points it at :data:`LOOPBACK_CONFIG`, shipped with the
package, which keeps every packet on 127.0.0.1 (tests, examples, replays on one machine).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator

from .._utils.threads import threads
from ..data.errors import NeurodecodeDataError
from ..data.stream import cue_window_labels
from .decoder import StreamingDecoder

#: liblsl configuration that keeps LSL on this machine: discovery asks 127.0.0.1 only (no
#: multicast or broadcast), ``KnownPeers = {127.0.0.1}``, IPv6 off.
LOOPBACK_CONFIG = Path(__file__).with_name("lsl_loopback.cfg")

#: Channels of the decision outlet besides one ``proba_<class>`` per class.
OUTLET_CHANNELS = ("class", "lag_ms")

_UNITS = {"V": 0, "mV": -3, "uV": -6}


class LSLError(NeurodecodeDataError):
    """A live LSL session that cannot start or go on."""


class LSLStreamNotFoundError(LSLError):
    """No stream of that name (and source id) appeared within the timeout."""


class LSLStreamLostError(LSLError):
    """The stream sent nothing for longer than ``give_up_s`` and was not found again."""


def use_loopback_config(path=None) -> Path:
    """Point liblsl at a configuration file through ``LSLAPICFG`` (default: :data:`LOOPBACK_CONFIG`).

    liblsl reads the file once, when LSL is first used in the process (creating a stream
    info, an inlet or an outlet, or resolving streams), so call this before that.

    Parameters
    ----------
    path : path-like or None
        A liblsl configuration file; None: the loopback-only file shipped with neurodecode.

    Returns
    -------
    path : Path
        The file now named by ``LSLAPICFG``.
    """
    path = Path(path) if path is not None else LOOPBACK_CONFIG
    if not path.is_file():
        raise LSLError(f"LSL configuration file {path} does not exist")
    os.environ["LSLAPICFG"] = str(path.resolve())
    return path


def _lsl():
    """mne-lsl's bindings, imported when first needed so that importing neurodecode loads no liblsl."""
    try:
        from mne_lsl import lsl
    except ImportError as err:  # a dependency; this names it for an odd install
        raise LSLError(f"live decoding needs mne-lsl ({err})") from None
    return lsl


def _lost_error():
    """The exception mne-lsl raises when an inlet's outlet is gone (not part of its public names)."""
    from mne_lsl.lsl import _utils

    return getattr(_utils, "LostError", RuntimeError)


def _destroy(inlet) -> None:
    """Close an inlet and free it now.

    An inlet that is only closed keeps a receiver thread trying to reach a vanished outlet, and
    liblsl's resolver waits on it for seconds; mne-lsl's explicit destructor ends it.
    """
    inlet.close_stream()
    destroy = getattr(inlet, "_del", None)
    if callable(destroy):
        destroy()


class LiveDecision(NamedTuple):
    """One published decision.

    Attributes
    ----------
    index : int
        Decisions published so far in the session, before this one.
    segment : int
        Stretch of uninterrupted samples the window lies in (0, then +1 after each dropout).
    lsl_time : float
        LSL time (local clock) of the window's last sample: the time the decision refers to.
    time_s : float
        ``lsl_time`` minus the LSL time of the session's first sample.
    window_start_s : float
        Time of the window's first sample, on the same scale as ``time_s``.
    label : int
        Index of the decided class in the card's ``class_names``.
    class_name : str
    proba : tuple of float
        Probability of each class in ``class_names`` order (NaN when the model has no
        ``predict_proba``).
    true : int or None
        Class of the cue covering the window (see the module notes), None when no cue does.
    latency_ms : float
        From the window's last sample's LSL timestamp to the decision published on the outlet.
    processing_ms : float
        From the moment the chunk holding that sample was received to the decision published.
    """

    index: int
    segment: int
    lsl_time: float
    time_s: float
    window_start_s: float
    label: int
    class_name: str
    proba: tuple
    true: int | None
    latency_ms: float
    processing_ms: float


class _ProbaRecorder(BaseEstimator):
    """The model's final estimator, predicting as itself and keeping each call's probabilities.

    :class:`StreamingDecoder` returns labels only; wrapping the last step lets the probabilities
    of the very features it decided on be published with no second pass through the pipeline.
    ``predict`` stays the estimator's own, so labels equal the unwrapped model's.
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y=None):
        self.estimator.fit(X, y)
        return self

    def __sklearn_is_fitted__(self):
        return True

    def predict(self, X):
        if hasattr(self.estimator, "predict_proba"):
            self.probas.extend(np.asarray(self.estimator.predict_proba(X), dtype=float))
        return self.estimator.predict(X)

    def drain(self) -> list:
        out, self.probas[:] = list(self.probas), []
        return out


def _with_recorder(model):
    """``(model with its final step wrapped, recorder)``; the fitted steps are shared, not copied."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        recorder = _ProbaRecorder(model.steps[-1][1])
        wrapped = Pipeline(model.steps[:-1] + [(model.steps[-1][0], recorder)])
    else:
        recorder = _ProbaRecorder(model)
        wrapped = recorder
    recorder.probas = []
    return wrapped, recorder


def _class_index(value, class_names) -> int:
    """A model output (label k, or a class name) as an index into ``class_names``."""
    if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(class_names):
        return int(value)
    if str(value) in class_names:
        return list(class_names).index(str(value))
    raise LSLError(f"the model predicted {value!r}, which is not one of the card's classes {list(class_names)}")


class _SessionLog:
    """JSON lines written and flushed one by one, so that a crash loses at most the line being written."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fh = open(self.path, "x", encoding="utf-8")
        except FileExistsError:
            raise LSLError(f"session log {self.path} already exists; choose another file") from None

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(record, allow_nan=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class _LiveLine:
    """One status line: rewritten in place on a terminal, printed every ``every_s`` seconds otherwise."""

    def __init__(self, stream, every_s: float = 5.0):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every_s = every_s
        self._last = -math.inf
        self._shown = False

    def show(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if force or now - self._last >= 0.2:
                self.stream.write("\r" + text + "\x1b[K")
                self.stream.flush()
                self._last, self._shown = now, True
        elif force or now - self._last >= self.every_s:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now

    def note(self, text: str) -> None:
        """A line of its own (a dropout, a resumption) that stays on screen."""
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._shown = False

    def end(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()


def read_session_log(path) -> dict:
    """A session log as tables, ready for :func:`~neurodecode.reports.plot_timeline`.

    Parameters
    ----------
    path : path-like
        A log written by :class:`LSLDecoder` (``log=``) or ``neurodecode online --log``.

    Returns
    -------
    log : dict
        ``session`` (the first record: stream, model, settings), ``decisions`` (DataFrame, one
        row per decision: the fields of :class:`LiveDecision`, ``proba_<class>`` columns in
        place of ``proba``), ``markers`` (DataFrame: ``lsl_time``, ``time_s``, ``marker``,
        ``label``), ``events`` (DataFrame of the other records: dropouts, resumptions,
        warnings) and ``summary`` (the last record's summary, or None if the session did not end
        cleanly). ``class_names`` as in the session record. For a timeline of the scored
        decisions: ``d = log["decisions"].dropna(subset=["true"])``, then
        ``plot_timeline(d.time_s, d.true.astype(int), d.label, log["class_names"])``.
    """
    import pandas as pd

    records = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            # Only the last line can be cut short (a session killed mid-write); anything else is damage.
            if number < len(lines):
                raise LSLError(f"{path}: line {number} is not JSON") from None
    if not records or records[0].get("type") != "session":
        raise LSLError(f"{path} is not a neurodecode live session log (no session record first)")
    session = records[0]
    class_names = session["class_names"]
    decisions = pd.DataFrame([r for r in records if r.get("type") == "decision"],
                             columns=["index", "segment", "lsl_time", "time_s", "window_start_s", "label",
                                      "class_name", "proba", "true", "latency_ms", "processing_ms"])
    proba = np.array([list(p) for p in decisions["proba"]], dtype=float).reshape(len(decisions), len(class_names))
    for k, name in enumerate(class_names):
        decisions[f"proba_{name}"] = proba[:, k]
    decisions = decisions.drop(columns="proba")
    decisions["true"] = decisions["true"].astype("Int64")
    markers = pd.DataFrame([r for r in records if r.get("type") == "marker"],
                           columns=["lsl_time", "time_s", "marker", "label"])
    markers["label"] = markers["label"].astype("Int64")
    events = pd.DataFrame([r for r in records if r.get("type") not in ("session", "decision", "marker", "end")])
    ends = [r for r in records if r.get("type") == "end"]
    return {"session": session, "class_names": class_names, "decisions": decisions, "markers": markers,
            "events": events, "summary": ends[-1]["summary"] if ends else None}


class LSLDecoder:
    """Decode a live LSL EEG stream with a trained model and publish each decision on LSL.

    Parameters
    ----------
    model : fitted estimator
        Predicts from windows ``(n, n_channels, n_times)`` of the card's channels.
    card : ModelCard
        The model's card (:func:`neurodecode.batch.load_model`): ``ch_names``, ``sfreq``,
        ``window`` (one window is ``card.n_times`` samples), ``paradigm["band"]`` (the causal
        band-pass; the training filter was zero-phase, which no live decoder can be),
        ``class_names`` and ``unit``.
    stream : str
        Name of the LSL EEG stream.
    match : callable
        ``match(raw, card, resample=False) -> (raw, report)``: the channel contract,
        :func:`neurodecode.batch.match_recording`. It is passed in because the online stage
        comes before the batch stage (``docs/design.md``); the stream's channels are checked
        by the very rules ``neurodecode predict`` applies to a file (exact names, else a unique
        match up to case and padding dots; missing channels refused, all named).
    source_id : str or None
        Only a stream with this LSL source id (needed when several streams share the name).
    step_s : float or None
        Seconds between decisions, a whole number of samples; None: a quarter of the window,
        as ``neurodecode predict``.
    markers : str or None
        Name of a marker stream whose cues score the decisions.
    events : dict or None
        Marker -> class name, for markers that are not named as the card's classes
        (``{"T1": "left_hand", "T2": "right_hand"}``).
    outlet : str, False or None
        Name of the decision outlet (None: ``"<stream>-decisions"``; False: publish nothing).
    log : path-like or None
        Session log to create (JSON lines; an existing file is refused).
    display : file-like, False or None
        Where the live status line goes (None: ``sys.stdout``; False: nowhere).
    timeout_s : float
        How long :meth:`connect` waits for the stream (and the marker stream) to appear.
    dropout_s : float
        Silence, or a jump of the timestamps, longer than this is a dropout.
    give_up_s : float
        Silence longer than this ends the session with :class:`LSLStreamLostError`.
    stream_unit : {None, "V", "mV", "uV"}
        Unit of the stream's samples; None: as the stream declares it for each channel
        (undeclared: volts, mne-lsl's reading of the LSL description).
    incremental : {"auto", True, False}
        Passed to :class:`StreamingDecoder`.
    probabilities : bool
        Publish class probabilities. They are recorded from the model's final step as the
        streaming decoder calls it, which keeps that decoder off paths that skip the final step
        (its mixed-precision linear-classifier shortcut); False publishes NaN instead and lets
        the decoder take its fastest path. Labels are the same either way.
    record : bool
        Keep every sample pushed to the decoder (``recorded_``), to replay the session offline.
    n_threads : int
        BLAS and torch threads while decoding (one: small matrices run fastest on one thread).

    Attributes
    ----------
    decisions_ : list of LiveDecision
    order_ : ndarray of int
        Stream channel feeding each of the card's channels.
    match_report_ : dict
        ``match``'s report on the stream (``extra_channels``, ``reordered``, ``renamed``).
    scale_ : ndarray of shape (n_channels,)
        Factor from the stream's samples to the model's training unit, per card channel.
    recorded_ : list of dict
        With ``record=True``, one per segment: ``data`` (n_channels, n_samples) as pushed,
        ``timestamps`` (n_samples,) in local LSL time.
    events_ : list of dict
        Dropouts, resumptions and warnings, as logged.
    """

    def __init__(self, model, card, *, stream: str, match, source_id: str | None = None,
                 step_s: float | None = None, markers: str | None = None, events: dict | None = None,
                 outlet=None, log=None, display=None, timeout_s: float = 10.0, dropout_s: float = 0.5,
                 give_up_s: float = 30.0, stream_unit: str | None = None, incremental="auto",
                 probabilities: bool = True, record: bool = False, n_threads: int = 1):
        self.model = model
        self.card = card
        self.stream = stream
        self.match = match
        self.source_id = source_id
        self.step_s = step_s
        self.markers = markers
        self.events = events
        self.outlet = outlet
        self.log = log
        self.display = display
        self.timeout_s = timeout_s
        self.dropout_s = dropout_s
        self.give_up_s = give_up_s
        self.stream_unit = stream_unit
        self.incremental = incremental
        self.probabilities = probabilities
        self.record = record
        self.n_threads = n_threads
        self._connected = False

    # -- setting up ---------------------------------------------------------------------
    def _check_params(self) -> None:
        for name in ("timeout_s", "dropout_s", "give_up_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.give_up_s < self.dropout_s:
            raise ValueError(f"give_up_s={self.give_up_s} is shorter than dropout_s={self.dropout_s}")
        if self.stream_unit not in (None, *_UNITS):
            raise ValueError(f"stream_unit must be None or one of {list(_UNITS)}, got {self.stream_unit!r}")
        if not isinstance(self.stream, str) or not self.stream:
            raise ValueError(f"stream must be a stream name, got {self.stream!r}")
        if not callable(self.match):
            raise TypeError("match must be the contract check neurodecode.batch.match_recording")

    def _resolve(self, name: str, timeout: float, *, source_id=None, regular: bool = True):
        """The one stream of that name (and source id), or None if none answers within ``timeout``."""
        lsl = _lsl()
        found = lsl.resolve_streams(timeout=timeout, name=name, minimum=1)
        found = [s for s in found if source_id is None or s.source_id == source_id]
        found = [s for s in found if (s.sfreq > 0) == regular] or found
        if not found:
            return None
        if len({s.source_id for s in found}) > 1:
            raise LSLError(f"several LSL streams are named {name!r} (source ids "
                           f"{sorted({s.source_id for s in found})}); pick one with source_id / --source-id")
        return found[0]

    def _not_found(self, what: str, name: str, source_id=None) -> LSLStreamNotFoundError:
        config = os.environ.get("LSLAPICFG")
        where = (f"LSL discovery as configured by LSLAPICFG={config}" if config
                 else "LSL discovery with liblsl's default configuration")
        sid = f" with source id {source_id!r}" if source_id else ""
        return LSLStreamNotFoundError(f"no LSL {what} stream named {name!r}{sid} appeared within {self.timeout_s:g} s "
                                      f"({where}); is the amplifier or player running?")

    def _open(self, sinfo, timeout: float | None = None):
        """Inlet on ``sinfo``, its channel contract checked; sets the channel order and the scale."""
        import mne

        lsl = _lsl()
        where = f"LSL stream {self.stream!r}"
        # recover=False: a lost outlet is noticed at once and found again by name (_reconnect).
        inlet = lsl.StreamInlet(sinfo, max_buffered=max(30, int(self.give_up_s) + 10), recover=False)
        timeout = self.timeout_s if timeout is None else timeout
        try:
            inlet.open_stream(timeout=timeout)
            full = inlet.get_sinfo(timeout=timeout)
            offset = inlet.time_correction(timeout=timeout)
        except (TimeoutError, _lost_error()):
            raise LSLStreamNotFoundError(f"{where} was found but did not answer within {timeout:g} s") from None
        sfreq = float(full.sfreq)
        if not math.isclose(sfreq, float(self.card.sfreq), rel_tol=1e-9):
            _destroy(inlet)
            raise LSLError(f"{where}: sampled at {sfreq:g} Hz but model {self.card.name!r} was trained at "
                           f"{float(self.card.sfreq):g} Hz; live decoding does not resample: stream at "
                           f"{float(self.card.sfreq):g} Hz or train at {sfreq:g} Hz")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mne-lsl warns about descriptions it completes with defaults
            info = full.get_channel_info()
        names = list(info["ch_names"])
        try:
            probe = mne.io.RawArray(np.zeros((len(names), 1)), info, verbose="error")
        except ValueError as err:  # duplicate or unusable channel names
            _destroy(inlet)
            raise LSLError(f"{where}: its channels cannot be matched by name ({err})") from None
        try:
            _, report = self.match(probe, self.card, resample=False)
        except NeurodecodeDataError as err:
            _destroy(inlet)
            message = str(err).splitlines()[0]
            raise LSLError(f"{where}: {message.removeprefix('recording: ')}") from None
        renamed = [report["renamed"].get(n, n) for n in names]
        order = np.array([renamed.index(c) for c in self.card.ch_names])
        if self.stream_unit is None:
            unit_mul = np.array([info["chs"][i]["unit_mul"] for i in order], dtype=float)
        else:
            unit_mul = np.full(len(order), float(_UNITS[self.stream_unit]))
        scale = 10.0 ** unit_mul * float(self.card.scale)
        return inlet, order, scale, report, offset, full.source_id

    def _open_markers(self):
        lsl = _lsl()
        sinfo = self._resolve(self.markers, self.timeout_s, regular=False)
        if sinfo is None:
            raise self._not_found("marker", self.markers)
        inlet = lsl.StreamInlet(sinfo, max_buffered=360, recover=True)
        inlet.open_stream(timeout=self.timeout_s)
        full = inlet.get_sinfo(timeout=self.timeout_s)
        names = full.get_channel_names() or [str(k) for k in range(full.n_channels)]
        return inlet, names, inlet.time_correction(timeout=self.timeout_s)

    def _make_outlet(self):
        lsl = _lsl()
        name = f"{self.stream}-decisions" if self.outlet is None else str(self.outlet)
        channels = [OUTLET_CHANNELS[0], *[f"proba_{c}" for c in self.card.class_names], OUTLET_CHANNELS[1]]
        info = lsl.StreamInfo(name=name, stype="decisions", n_channels=len(channels), sfreq=0.0, dtype="float64",
                              source_id=f"neurodecode:{self.stream}:{self._source_id}")
        info.set_channel_names(channels)
        return lsl.StreamOutlet(info, chunk_size=1), name

    def connect(self) -> "LSLDecoder":
        """Find the stream (and the marker stream), check the contract, open the outlet and the log.

        Returns
        -------
        self

        Raises
        ------
        LSLStreamNotFoundError
            The stream did not appear within ``timeout_s``.
        LSLError
            The stream breaks the model's contract (missing channels, all named; another
            sampling rate), or the log file exists.
        """
        self._check_params()
        self.close()
        lsl = _lsl()
        self._n_window = int(self.card.n_times)
        sfreq = float(self.card.sfreq)
        self._n_step = (max(1, self._n_window // 4) if self.step_s is None
                        else int(round(float(self.step_s) * sfreq)))
        if self.step_s is not None and (self._n_step < 1 or abs(self.step_s * sfreq - self._n_step) > 1e-6):
            raise ValueError(f"step_s={self.step_s} s is not a whole number of samples at {sfreq:g} Hz")
        band = (self.card.paradigm or {}).get("band") or (None, None)
        self._wrapped, self._recorder = _with_recorder(self.model) if self.probabilities else (self.model, None)
        self._decoder = StreamingDecoder(self._wrapped, sfreq=sfreq, window_s=self._n_window / sfreq,
                                         step_s=self._n_step / sfreq, fmin=band[0], fmax=band[1],
                                         incremental=self.incremental)
        self._decoder.reset()
        self._class_names = [str(c) for c in self.card.class_names]
        self._proba_order = self._proba_columns()
        event_map = dict(self.events or {})
        self._marker_class = {m: self._class_names.index(c) for m, c in event_map.items() if c in self._class_names}
        unknown = sorted({c for c in event_map.values() if c not in self._class_names})
        if unknown:
            raise ValueError(f"events name class(es) {unknown} that model {self.card.name!r} does not have "
                             f"(its classes: {self._class_names})")
        if self.log is not None and Path(self.log).exists():  # before any waiting on the network
            raise LSLError(f"session log {self.log} already exists; choose another file")
        sinfo = self._resolve(self.stream, self.timeout_s, source_id=self.source_id)
        if sinfo is None:
            raise self._not_found("EEG", self.stream, self.source_id)
        self._inlet, self.order_, self.scale_, self.match_report_, self._offset, self._source_id = self._open(sinfo)
        self._marker_inlet = None
        if self.markers:
            self._marker_inlet, self._marker_names, self._marker_offset = self._open_markers()
        self._outlet, outlet_name = self._make_outlet() if self.outlet is not False else (None, None)
        self._log = _SessionLog(self.log) if self.log is not None else None
        self._line = _LiveLine(sys.stdout if self.display is None else self.display) if self.display is not False \
            else None
        self.decisions_, self.events_, self.recorded_ = [], [], []
        self._cues = []
        self._y_true, self._y_pred = [], []
        self._t0 = None  # LSL time of the session's first sample
        self._segment = -1
        self._seg_samples = 0
        self._last_ts = None
        self._last_wall = lsl.local_clock()
        self._lost_since = None  # local clock at the start of a dropout not yet over
        self._unit_checked = False
        self._mode = None
        self._connected = True
        tmin, tmax = self.card.window
        self._write({"type": "session", "stream": self.stream, "source_id": self._source_id,
                     "model": self.card.name, "pipeline": self.card.pipeline_name, "class_names": self._class_names,
                     "sfreq": sfreq, "window_samples": self._n_window, "step_samples": self._n_step,
                     "band": list(band), "trial_interval": [tmin, tmax], "markers": self.markers,
                     "outlet": outlet_name, "match": {k: self.match_report_[k] for k in
                                                      ("extra_channels", "reordered", "renamed")},
                     "scale": sorted(set(np.round(self.scale_, 12).tolist())), "started_utc": _utc_now(),
                     "dropout_s": self.dropout_s})
        if self._line:
            extra = self.match_report_["extra_channels"]
            self._line.note(f"connected to {self.stream!r}: {len(self.order_)} channels at {sfreq:g} Hz"
                            f"{' (reordered)' if self.match_report_['reordered'] else ''}"
                            f"{f', {len(extra)} extra ignored' if extra else ''}; deciding on "
                            f"{self._n_window} samples every {self._n_step}"
                            f"{f'; publishing on {outlet_name!r}' if outlet_name else ''}")
        return self

    def _proba_columns(self):
        """Column of ``predict_proba`` for each card class (None: the model never gives that class)."""
        final = self.model.steps[-1][1] if hasattr(self.model, "steps") else self.model
        classes = getattr(final, "classes_", None)
        if classes is None:
            return list(range(len(self.card.class_names)))
        cols = {}
        for k, value in enumerate(classes):
            cols[_class_index(value, self._class_names)] = k
        return [cols.get(k) for k in range(len(self._class_names))]

    # -- the loop -----------------------------------------------------------------------
    def _write(self, record: dict) -> None:
        if self._log is not None:
            self._log.write(record)

    def _event(self, kind: str, message: str, **fields) -> None:
        record = {"type": kind, "message": message, "wall_utc": _utc_now(), **fields}
        self.events_.append(record)
        self._write(record)
        if self._line:
            self._line.note(f"[{kind}] {message}")

    def _start_dropout(self, reason: str, now: float) -> None:
        self._lost_since = now
        last = None if self._last_ts is None else round(self._last_ts - self._t0, 4)
        self._event("dropout", f"{reason}; the partial window is dropped and decoding restarts when samples return",
                    segment=self._segment, last_sample_time_s=last)
        self._decoder.reset()  # filter state and partial window belong to the stream before the gap
        if self._recorder is not None:
            self._recorder.drain()

    def _new_segment(self, first_ts: float, now: float) -> None:
        self._segment += 1
        self._seg_samples = 0
        if self.record:
            self.recorded_.append({"data": [], "timestamps": []})
        if self._lost_since is not None:
            self._event("resumed", f"samples again after {now - self._lost_since:.2f} s; new window from "
                                   f"{first_ts - self._t0:.3f} s", segment=self._segment,
                        first_sample_time_s=round(first_ts - self._t0, 4))
            self._lost_since = None

    def _reconnect(self, now: float) -> None:
        """During a dropout: look for the stream again (a restarted amplifier is a new outlet)."""
        remaining = self.give_up_s - (now - self._lost_since)
        if remaining <= 0:
            raise LSLStreamLostError(f"LSL stream {self.stream!r} was lost {now - self._lost_since:.1f} s ago and "
                                     f"not found again (give_up_s={self.give_up_s:g})")
        sinfo = self._resolve(self.stream, min(0.5, remaining), source_id=self._source_id or None)
        if sinfo is None:
            return
        try:
            # Bounded by what is left: a resolver may still list an outlet that is already gone.
            inlet, order, scale, report, offset, _ = self._open(sinfo, timeout=max(0.1, min(self.timeout_s, remaining)))
        except LSLStreamNotFoundError:
            return
        if not (np.array_equal(order, self.order_) and np.allclose(scale, self.scale_)):
            self._event("warning", "the stream came back with another channel layout; its new order is used")
        self._inlet, self.order_, self.scale_, self.match_report_, self._offset = inlet, order, scale, report, offset
        self._last_wall = _lsl().local_clock()

    def _pull_markers(self) -> None:
        if self._marker_inlet is None:
            return
        data, stamps = self._marker_inlet.pull_chunk(timeout=0.0)
        for k, ts in enumerate(stamps):
            if isinstance(data, list):
                names = [str(data[k][0])]
            elif data.shape[1] == 1:
                value = float(data[k, 0])
                names = [str(int(value)) if value.is_integer() else str(value)]
            else:  # mne-lsl's one-hot annotation stream: the channel of the description is non-zero
                names = [self._marker_names[c] for c in np.nonzero(data[k])[0]]
            for name in names:
                label = self._marker_class.get(name, self._class_names.index(name) if name in self._class_names
                                               else None)
                t = float(ts) + self._marker_offset
                if label is not None:
                    self._cues.append((t, label))
                self._write({"type": "marker", "lsl_time": t,
                             "time_s": None if self._t0 is None else t - self._t0, "marker": name, "label": label})

    def _check_unit(self, x: np.ndarray) -> None:
        """Warn once if samples read as volts look like microvolts (an undeclared unit)."""
        self._unit_checked = True
        if self.stream_unit is None and self.card.scale != 1.0 and np.all(self.scale_ == self.card.scale):
            typical = float(np.median(np.abs(x / self.card.scale)))
            if typical > 1e-2:
                self._event("warning", f"the stream's samples are read as volts (none declared) but their median "
                                       f"magnitude is {typical:.3g}: microvolts? pass stream_unit='uV' / "
                                       "--stream-unit uV")

    def _to_next_decision(self) -> int:
        """Samples still missing for the next window (StreamingDecoder's: one window, then every step)."""
        n = self._seg_samples if self._segment >= 0 and self._lost_since is None else 0
        if n < self._n_window:
            return self._n_window - n
        return self._n_step - (n - self._n_window) % self._n_step

    def poll(self, timeout_s: float = 0.05) -> list:
        """Wait up to ``timeout_s`` for samples, decode them, publish and log the decisions.

        Returns
        -------
        decisions : list of LiveDecision
            Those published during this call (often 0 or 1).

        Raises
        ------
        LSLStreamLostError
            No sample for ``give_up_s`` seconds and the stream not found again.
        """
        if not self._connected:
            raise LSLError("call connect() before poll()")
        lsl = _lsl()
        if self._inlet is None:
            self._pull_markers()
            self._reconnect(lsl.local_clock())
            if self._inlet is None:
                return []
        lost = False
        try:
            # Wake when the sample completing the next window is in (one wake-up per decision, at the
            # earliest moment it can be made), then take whatever else has arrived.
            data, stamps = self._inlet.pull_chunk(timeout=timeout_s, max_samples=self._to_next_decision())
            if len(stamps):
                more, more_stamps = self._inlet.pull_chunk(timeout=0.0, max_samples=int(self.card.sfreq * 60))
                if len(more_stamps):
                    data, stamps = np.concatenate([data, more]), np.concatenate([stamps, more_stamps])
        except _lost_error():  # the outlet went away (closed, or its machine unreachable)
            data, stamps, lost = None, np.empty(0), True
        received = lsl.local_clock()
        self._pull_markers()
        if not len(stamps):
            if lost or received - self._last_wall > self.dropout_s:
                if self._lost_since is None:
                    self._start_dropout("the stream's outlet closed" if lost else
                                        f"no sample for {received - self._last_wall:.2f} s", received)
                # A silent outlet may be gone for good (a restarted amplifier is a new outlet): look again.
                _destroy(self._inlet)
                self._inlet = None
            return []
        stamps = stamps + self._offset
        self._last_wall = received
        if self._t0 is None:
            self._t0 = float(stamps[0])
        data = np.asarray(data, dtype=float)
        # A gap inside what was pulled at once (a slow poll) splits it: each side is its own stream.
        cuts = np.nonzero(np.diff(stamps) > self.dropout_s)[0] + 1
        out = []
        for idx in np.split(np.arange(len(stamps)), cuts):
            out += self._ingest(data[idx], stamps[idx], received)
        return out

    def _ingest(self, data: np.ndarray, stamps: np.ndarray, received: float) -> list:
        """Push samples without a gap inside (n_samples, n_stream_channels); publish what they complete."""
        if self._last_ts is not None and stamps[0] - self._last_ts > self.dropout_s and self._lost_since is None:
            self._start_dropout(f"timestamps jumped by {stamps[0] - self._last_ts:.2f} s (samples lost)", received)
        if self._segment < 0 or self._lost_since is not None:
            self._new_segment(float(stamps[0]), received)
        x = data.T[self.order_] * self.scale_[:, None]
        if not self._unit_checked:
            self._check_unit(x)
        if self.record:
            self.recorded_[-1]["data"].append(x)
            self.recorded_[-1]["timestamps"].append(stamps.copy())
        before = self._seg_samples
        self._seg_samples += x.shape[1]
        self._last_ts = float(stamps[-1])
        decided = self._decoder.push(x)
        probas = self._recorder.drain() if self._recorder is not None else []
        expected = len(decided) if self._recorder is not None and hasattr(self._recorder.estimator, "predict_proba") \
            else 0
        if len(probas) != expected:
            # The decoder reached the classifier some other way: publishing NaN or stale probabilities
            # beside a label would be worse than stopping.
            raise LSLError(f"internal: {len(decided)} decision(s) but {len(probas)} probability vector(s) recorded")
        return [self._publish(decision, probas[k] if probas else None, stamps, before, received)
                for k, decision in enumerate(decided)]

    def _publish(self, decision, proba, stamps, before: int, received: float) -> LiveDecision:
        lsl = _lsl()
        last = float(stamps[decision.end_sample - 1 - before])
        label = _class_index(decision.label, self._class_names)
        p = [float(proba[c]) if proba is not None and c is not None else (0.0 if proba is not None else math.nan)
             for c in self._proba_order]
        lag_ms = (lsl.local_clock() - last) * 1e3
        if self._outlet is not None:
            self._outlet.push_sample(np.array([label, *p, lag_ms], dtype=np.float64), timestamp=last)
        published = lsl.local_clock()
        start = last - (self._n_window - 1) / float(self.card.sfreq)
        true = None
        if self._cues:
            onsets, labels = zip(*self._cues)
            true = cue_window_labels([start], [last], onsets, labels, *self.card.window)[0][0]
        live = LiveDecision(len(self.decisions_), self._segment, last, last - self._t0, start - self._t0, label,
                            self._class_names[label], tuple(p), true, (published - last) * 1e3,
                            (published - received) * 1e3)
        self.decisions_.append(live)
        self._mode = self._decoder.mode_
        if true is not None:
            self._y_true.append(true)
            self._y_pred.append(label)
        self._write({"type": "decision", **live._asdict(), "proba": list(live.proba)})
        if self._line:
            self._line.show(self._status(live))
        return live

    def _status(self, d: LiveDecision) -> str:
        text = (f"{d.time_s:8.2f} s  #{d.index + 1} {d.class_name} (p={max(d.proba):.2f})  "
                f"lag {d.latency_ms:.1f} ms")
        if self.markers:
            scores = self.scores()
            text += (f"  | scored {scores['n_scored']}" + (f", acc {scores['accuracy']:.2f}, nMCC {scores['nmcc']:.2f}"
                                                           f", ITR {scores['itr']:.1f} bits/min"
                                                           if scores["n_scored"] else ""))
        dropouts = sum(e["type"] == "dropout" for e in self.events_)
        return text + (f"  | dropouts {dropouts}" if dropouts else "")

    def scores(self) -> dict:
        """Running scores of the decisions covered by a cue.

        Returns
        -------
        scores : dict
            ``n_scored``, ``accuracy``, ``balanced_accuracy``, ``nmcc`` and ``itr`` (Wolpaw,
            bits/min, from the balanced accuracy at one decision per step, as the
            pseudo-online evaluation reports it); NaN while nothing is scored.
        """
        from sklearn.metrics import balanced_accuracy_score

        from ..evaluation.metrics import nmcc, wolpaw_itr

        n = len(self._y_true)
        if not n:
            return {"n_scored": 0, "accuracy": math.nan, "balanced_accuracy": math.nan, "nmcc": math.nan,
                    "itr": math.nan}
        y_true, y_pred = np.asarray(self._y_true), np.asarray(self._y_pred)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one class seen so far: sklearn warns, the value is still defined
            bacc = float(balanced_accuracy_score(y_true, y_pred))
            score = float(nmcc(y_true, y_pred))
        return {"n_scored": n, "accuracy": float(np.mean(y_true == y_pred)), "balanced_accuracy": bacc,
                "nmcc": score, "itr": float(wolpaw_itr(bacc, len(self._class_names), self._n_step / self.card.sfreq))}

    def summary(self) -> dict:
        """Decisions, dropouts, latency percentiles (ms) and scores of the session so far."""
        lat = np.array([d.latency_ms for d in self.decisions_])
        proc = np.array([d.processing_ms for d in self.decisions_])

        def pct(a, q):
            return float(np.percentile(a, q)) if a.size else math.nan

        return {"n_decisions": len(self.decisions_), "n_segments": self._segment + 1,
                "dropouts": sum(e["type"] == "dropout" for e in self.events_),
                "latency_p50_ms": pct(lat, 50), "latency_p99_ms": pct(lat, 99),
                "processing_p50_ms": pct(proc, 50), "processing_p99_ms": pct(proc, 99),
                "decoder_path": self._mode, **self.scores()}

    def run(self, duration_s: float | None = None, *, max_decisions: int | None = None) -> dict:
        """Decode until ``duration_s`` seconds have passed or ``max_decisions`` were published.

        Connects first if needed. Ctrl-C ends the session cleanly.

        Returns
        -------
        summary : dict
            See :meth:`summary`; also written as the log's last record.
        """
        if not self._connected:
            self.connect()
        end = math.inf if duration_s is None else time.monotonic() + float(duration_s)
        status = "ended"
        try:
            # Set once for the whole loop: entering threadpoolctl's limits costs more than a decision.
            with threads(self.n_threads):
                while time.monotonic() < end and (max_decisions is None or len(self.decisions_) < max_decisions):
                    self.poll(min(0.05, max(0.0, end - time.monotonic())))
        except KeyboardInterrupt:
            status = "interrupted"
        except LSLStreamLostError as err:
            self._finish("lost", str(err))
            raise
        return self._finish(status)

    def _finish(self, status: str, message: str | None = None) -> dict:
        summary = self.summary()
        if self._line:
            self._line.end()
        self._write({"type": "end", "status": status, "message": message, "wall_utc": _utc_now(), "summary": summary})
        return summary

    def close(self) -> None:
        """Close the inlets, the outlet and the log (connect() opens them again)."""
        for name in ("_inlet", "_marker_inlet"):
            inlet = getattr(self, name, None)
            if inlet is not None:
                _destroy(inlet)
            setattr(self, name, None)
        self._outlet = None
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
            self._log = None
        self._connected = False

    def __enter__(self) -> "LSLDecoder":
        return self if self._connected else self.connect()

    def __exit__(self, *exc) -> None:
        self.close()


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


__all__ = ["LOOPBACK_CONFIG", "LSLDecoder", "LSLError", "LSLStreamLostError", "LSLStreamNotFoundError",
           "LiveDecision", "read_session_log", "use_loopback_config"]
