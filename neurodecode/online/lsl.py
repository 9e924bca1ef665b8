"""Live decoding of Lab Streaming Layer (LSL) EEG streams with a trained model: the decision loop.

:class:`LSLDecoder` composes the pieces of a live session: it opens the stream
(:mod:`~neurodecode.online.stream_io`: the inlet, checked against the model's card by the signal
contract; the decision outlet), pushes every received sample, in the model's channel order and
training unit, through a :class:`~neurodecode.online.StreamingDecoder` (causal band-pass with
carried state, the model's window, a decision every step; windows reach the model through
:func:`neurodecode.contract.signal.model_input`), publishes each decision on the outlet (the
class index, the class probabilities and the lag, stamped with the LSL time of the window's last
sample) and writes it to the session log (:mod:`~neurodecode.online.session_log`).

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
  gives cues that score the decisions (:mod:`~neurodecode.online.live_scores`): running
  accuracy, nMCC and Wolpaw's ITR.
* **Session log.** JSON lines, flushed as they are written: the session's settings, every
  decision, marker, dropout and resumption, and a summary
  (:func:`~neurodecode.online.session_log.read_session_log`).
* **Live strings are data.** Class names, marker names and channel names are written to the log
  by :func:`json.dumps` and to the terminal through :func:`~neurodecode.online.display.printable`.

LSL discovery sends multicast and broadcast packets unless told otherwise; call
:func:`~neurodecode.online.stream_io.use_loopback_config` before LSL is first used to keep every
packet on 127.0.0.1 (tests, examples, replays on one machine).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._utils.threads import threads
from ..contract.model_file import ModelCard
from ..contract.signal import card_signal_info, model_input
from . import stream_io
from .decoder import StreamingDecoder
from .display import StatusLine, status_text
from .errors import LSLError, LSLStreamLostError, LSLStreamNotFoundError
from .live_scores import LiveScores
from .probabilities import class_index, proba_columns, with_recorder
from .session_log import SessionLog, utc_now

__all__ = ["LSLDecoder", "LiveDecision"]


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


class LSLDecoder:
    """Decode a live LSL EEG stream with a trained model and publish each decision on LSL.

    Parameters
    ----------
    model : fitted estimator
        Predicts from windows ``(n, n_channels, n_times)`` of the card's channels.
    card : ModelCard
        The model's card (:func:`neurodecode.contract.model_file.load_model`): ``ch_names``,
        ``sfreq``, ``window`` (one window is ``card.n_times`` samples), ``paradigm["band"]``
        (the causal band-pass; the training filter was zero-phase, which no live decoder can
        be), ``class_names`` and ``unit``. The stream's channels are checked by the rules
        ``neurodecode predict`` applies to a file
        (:func:`neurodecode.contract.signal.match_recording`: exact names, else a unique match
        under :mod:`neurodecode.data.channels`' rule; missing channels refused in one line), and every window
        reaches the model through :func:`neurodecode.contract.signal.model_input`.
    stream : str
        Name of the LSL EEG stream.
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
        :func:`~neurodecode.contract.signal.match_recording`'s report on the stream
        (``extra_channels``, ``reordered``, ``renamed``).
    scale_ : ndarray of shape (n_channels,)
        Factor from the stream's samples to the model's training unit, per card channel.
    recorded_ : list of dict
        With ``record=True``, one per segment: ``data`` (n_channels, n_samples) as pushed,
        ``timestamps`` (n_samples,) in local LSL time.
    events_ : list of dict
        Dropouts, resumptions and warnings, as logged.
    """

    def __init__(self, model, card, *, stream: str, source_id: str | None = None,
                 step_s: float | None = None, markers: str | None = None, events: dict | None = None,
                 outlet=None, log=None, display=None, timeout_s: float = 10.0, dropout_s: float = 0.5,
                 give_up_s: float = 30.0, stream_unit: str | None = None, incremental="auto",
                 probabilities: bool = True, record: bool = False, n_threads: int = 1):
        self.model = model
        self.card = card
        self.stream = stream
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
        if not isinstance(self.card, ModelCard):
            raise TypeError(f"card must be the model's ModelCard (load_model's), got {type(self.card).__name__}")
        for name in ("timeout_s", "dropout_s", "give_up_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.give_up_s < self.dropout_s:
            raise ValueError(f"give_up_s={self.give_up_s} is shorter than dropout_s={self.dropout_s}")
        if self.stream_unit not in (None, *stream_io.UNITS):
            raise ValueError(f"stream_unit must be None or one of {list(stream_io.UNITS)}, got {self.stream_unit!r}")
        if not isinstance(self.stream, str) or not self.stream:
            raise ValueError(f"stream must be a stream name, got {self.stream!r}")

    def _open(self, sinfo, timeout: float) -> stream_io.EEGInlet:
        return stream_io.open_eeg(sinfo, self.card, stream=self.stream, timeout=timeout,
                                  max_buffered=max(30, int(self.give_up_s) + 10), stream_unit=self.stream_unit)

    def _to_model(self, X):
        """Windows as the model is handed them: the signal contract, with the SignalInfo built once per session."""
        return model_input(self.model, X, self.card, self._signal_info)

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
        self._n_window = int(self.card.n_times)
        sfreq = float(self.card.sfreq)
        self._n_step = (max(1, self._n_window // 4) if self.step_s is None
                        else int(round(float(self.step_s) * sfreq)))
        if self.step_s is not None and (self._n_step < 1 or abs(self.step_s * sfreq - self._n_step) > 1e-6):
            raise ValueError(f"step_s={self.step_s} s is not a whole number of samples at {sfreq:g} Hz")
        band = (self.card.paradigm or {}).get("band") or (None, None)
        self._signal_info = card_signal_info(self.card)
        self._wrapped, self._recorder = with_recorder(self.model) if self.probabilities else (self.model, None)
        self._decoder = StreamingDecoder(self._wrapped, sfreq=sfreq, window_s=self._n_window / sfreq,
                                         step_s=self._n_step / sfreq, fmin=band[0], fmax=band[1],
                                         incremental=self.incremental, to_model=self._to_model)
        self._decoder.reset()
        self._class_names = [str(c) for c in self.card.class_names]
        self._proba_order = proba_columns(self.model, self._class_names)
        event_map = dict(self.events or {})
        self._marker_class = {m: self._class_names.index(c) for m, c in event_map.items() if c in self._class_names}
        unknown = sorted({c for c in event_map.values() if c not in self._class_names})
        if unknown:
            raise ValueError(f"events name class(es) {unknown} that model {self.card.name!r} does not have "
                             f"(its classes: {self._class_names})")
        if self.log is not None and Path(self.log).exists():  # before any waiting on the network
            raise LSLError(f"session log {self.log} already exists; choose another file")
        sinfo = stream_io.resolve(self.stream, self.timeout_s, source_id=self.source_id)
        if sinfo is None:
            raise stream_io.not_found("EEG", self.stream, self.timeout_s, self.source_id)
        self._set_inlet(self._open(sinfo, self.timeout_s))
        self._source_id = self._eeg.source_id
        self._marker_inlet = None
        if self.markers:
            self._marker_inlet, self._marker_names, self._marker_offset = stream_io.open_markers(self.markers,
                                                                                                 self.timeout_s)
        outlet_name = None
        if self.outlet is not False:
            outlet_name = f"{self.stream}-decisions" if self.outlet is None else str(self.outlet)
            self._outlet = stream_io.open_outlet(outlet_name, self.card.class_names,
                                                 source_id=f"neurodecode:{self.stream}:{self._source_id}")
        self._log = SessionLog(self.log) if self.log is not None else None
        self._line = StatusLine(sys.stdout if self.display is None else self.display) if self.display is not False \
            else None
        self.decisions_, self.events_, self.recorded_ = [], [], []
        self._scores = LiveScores(len(self._class_names), tuple(self.card.window), self._n_step / sfreq)
        self._t0 = None  # LSL time of the session's first sample
        self._segment = -1
        self._seg_samples = 0
        self._last_ts = None
        self._last_wall = stream_io.lsl().local_clock()
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
                     "scale": sorted(set(np.round(self.scale_, 12).tolist())), "started_utc": utc_now(),
                     "dropout_s": self.dropout_s})
        if self._line:
            extra = self.match_report_["extra_channels"]
            self._line.note(f"connected to {self.stream!r}: {len(self.order_)} channels at {sfreq:g} Hz"
                            f"{' (reordered)' if self.match_report_['reordered'] else ''}"
                            f"{f', {len(extra)} extra ignored' if extra else ''}; deciding on "
                            f"{self._n_window} samples every {self._n_step}"
                            f"{f'; publishing on {outlet_name!r}' if outlet_name else ''}")
        return self

    def _set_inlet(self, eeg: stream_io.EEGInlet) -> None:
        self._eeg, self._inlet = eeg, eeg.inlet
        self.order_, self.scale_, self.match_report_ = eeg.order, eeg.scale, eeg.match_report

    # -- the loop -----------------------------------------------------------------------
    def _write(self, record: dict) -> None:
        if self._log is not None:
            self._log.write(record)

    def _event(self, kind: str, message: str, **fields) -> None:
        record = {"type": kind, "message": message, "wall_utc": utc_now(), **fields}
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
        sinfo = stream_io.resolve(self.stream, min(0.5, remaining), source_id=self._source_id or None)
        if sinfo is None:
            return
        try:
            # Bounded by what is left: a resolver may still list an outlet that is already gone.
            eeg = self._open(sinfo, max(0.1, min(self.timeout_s, remaining)))
        except LSLStreamNotFoundError:
            return
        if not (np.array_equal(eeg.order, self.order_) and np.allclose(eeg.scale, self.scale_)):
            self._event("warning", "the stream came back with another channel layout; its new order is used")
        self._set_inlet(eeg)
        self._last_wall = stream_io.lsl().local_clock()

    def _pull_markers(self) -> None:
        if self._marker_inlet is None:
            return
        data, stamps = self._marker_inlet.pull_chunk(timeout=0.0)
        for k, ts in enumerate(stamps):
            for name in stream_io.marker_names(data, k, self._marker_names):
                label = self._marker_class.get(name, self._class_names.index(name) if name in self._class_names
                                               else None)
                t = float(ts) + self._marker_offset
                if label is not None:
                    self._scores.add_cue(t, label)
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
        lsl = stream_io.lsl()
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
        except stream_io.lost_error():  # the outlet went away (closed, or its machine unreachable)
            data, stamps, lost = None, np.empty(0), True
        received = lsl.local_clock()
        self._pull_markers()
        if not len(stamps):
            if lost or received - self._last_wall > self.dropout_s:
                if self._lost_since is None:
                    self._start_dropout("the stream's outlet closed" if lost else
                                        f"no sample for {received - self._last_wall:.2f} s", received)
                # A silent outlet may be gone for good (a restarted amplifier is a new outlet): look again.
                stream_io.destroy(self._inlet)
                self._inlet = None
            return []
        stamps = stamps + self._eeg.offset
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
        expected = len(decided) if self._recorder is not None and self._recorder.gives_proba else 0
        if len(probas) != expected:
            # The decoder reached the classifier some other way: publishing NaN or stale probabilities
            # beside a label would be worse than stopping.
            raise LSLError(f"internal: {len(decided)} decision(s) but {len(probas)} probability vector(s) recorded")
        return [self._publish(decision, probas[k] if probas else None, stamps, before, received)
                for k, decision in enumerate(decided)]

    def _publish(self, decision, proba, stamps, before: int, received: float) -> LiveDecision:
        lsl = stream_io.lsl()
        last = float(stamps[decision.end_sample - 1 - before])
        label = class_index(decision.label, self._class_names)
        p = [float(proba[c]) if proba is not None and c is not None else (0.0 if proba is not None else math.nan)
             for c in self._proba_order]
        lag_ms = (lsl.local_clock() - last) * 1e3
        if self._outlet is not None:
            self._outlet.push_sample(np.array([label, *p, lag_ms], dtype=np.float64), timestamp=last)
        published = lsl.local_clock()
        start = last - (self._n_window - 1) / float(self.card.sfreq)
        true = self._scores.true_class(start, last)
        live = LiveDecision(len(self.decisions_), self._segment, last, last - self._t0, start - self._t0, label,
                            self._class_names[label], tuple(p), true, (published - last) * 1e3,
                            (published - received) * 1e3)
        self.decisions_.append(live)
        self._mode = self._decoder.mode_
        if true is not None:
            self._scores.add(true, label)
        self._write({"type": "decision", **live._asdict(), "proba": list(live.proba)})
        if self._line:
            self._line.show(status_text(live, self.scores() if self.markers else None,
                                        sum(e["type"] == "dropout" for e in self.events_)))
        return live

    def scores(self) -> dict:
        """Running scores of the decisions covered by a cue (:meth:`LiveScores.scores`)."""
        return self._scores.scores()

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
        self._write({"type": "end", "status": status, "message": message, "wall_utc": utc_now(), "summary": summary})
        return summary

    def close(self) -> None:
        """Close the inlets, the outlet and the log (connect() opens them again)."""
        for name in ("_inlet", "_marker_inlet"):
            inlet = getattr(self, name, None)
            if inlet is not None:
                stream_io.destroy(inlet)
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
