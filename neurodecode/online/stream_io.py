"""LSL stream I/O for live decoding: liblsl's configuration, finding and opening streams, the outlet.

Everything here talks to liblsl (through mne-lsl) and nothing else does:

* :func:`use_loopback_config` points liblsl at :data:`LOOPBACK_CONFIG` (discovery on 127.0.0.1
  only) before LSL is first used;
* :func:`resolve` finds the one stream of a name (and source id);
* :func:`open_eeg` opens an inlet on it and checks it against the model's card with the signal
  contract (:func:`neurodecode.contract.signal.match_recording`: channels by name, any order;
  the card's rate), giving the channel order and the scale to the training unit;
* :func:`open_markers` and :func:`marker_names` read a marker stream (strings, numbers, or
  mne-lsl's one-hot annotation streams);
* :func:`open_outlet` creates the decision outlet.

mne-lsl is imported on first use, so that importing neurodecode loads no liblsl.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..contract.model_file import ModelCard
from ..contract.signal import match_recording
from ..data.errors import NeurodecodeDataError
from .errors import LSLError, LSLStreamNotFoundError

__all__ = ["LOOPBACK_CONFIG", "OUTLET_CHANNELS", "UNITS", "EEGInlet", "destroy", "lost_error", "lsl",
           "marker_names", "not_found", "open_eeg", "open_markers", "open_outlet", "resolve", "use_loopback_config"]

#: liblsl configuration that keeps LSL on this machine: discovery asks 127.0.0.1 only (no
#: multicast or broadcast), ``KnownPeers = {127.0.0.1}``, IPv6 off.
LOOPBACK_CONFIG = Path(__file__).with_name("lsl_loopback.cfg")

#: Channels of the decision outlet besides one ``proba_<class>`` per class.
OUTLET_CHANNELS = ("class", "lag_ms")

#: A stream's declared unit -> power of ten of one unit in volts.
UNITS = {"V": 0, "mV": -3, "uV": -6}


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


def lsl():
    """mne-lsl's bindings, imported when first needed so that importing neurodecode loads no liblsl."""
    try:
        from mne_lsl import lsl as bindings
    except ImportError as err:  # a dependency; this names it for an odd install
        raise LSLError(f"live decoding needs mne-lsl ({err})") from None
    return bindings


def lost_error():
    """The exception mne-lsl raises when an inlet's outlet is gone (not part of its public names)."""
    from mne_lsl.lsl import _utils

    return getattr(_utils, "LostError", RuntimeError)


def destroy(inlet) -> None:
    """Close an inlet and free it now.

    An inlet that is only closed keeps a receiver thread trying to reach a vanished outlet, and
    liblsl's resolver waits on it for seconds; mne-lsl's explicit destructor ends it.
    """
    inlet.close_stream()
    free = getattr(inlet, "_del", None)
    if callable(free):
        free()


def resolve(name: str, timeout: float, *, source_id: str | None = None, regular: bool = True):
    """The one stream of that name (and source id), or None if none answers within ``timeout``.

    Parameters
    ----------
    name : str
    timeout : float
        Seconds to wait.
    source_id : str or None
        Only a stream with this source id.
    regular : bool
        Prefer streams with a nominal rate (EEG) over irregular ones (markers), or the reverse.

    Raises
    ------
    LSLError
        Several streams of that name with different source ids.
    """
    found = lsl().resolve_streams(timeout=timeout, name=name, minimum=1)
    found = [s for s in found if source_id is None or s.source_id == source_id]
    found = [s for s in found if (s.sfreq > 0) == regular] or found
    if not found:
        return None
    if len({s.source_id for s in found}) > 1:
        raise LSLError(f"several LSL streams are named {name!r} (source ids "
                       f"{sorted({s.source_id for s in found})}); pick one with source_id / --source-id")
    return found[0]


def not_found(what: str, name: str, timeout: float, source_id: str | None = None) -> LSLStreamNotFoundError:
    """The error for a stream that did not appear, naming the discovery configuration in use."""
    config = os.environ.get("LSLAPICFG")
    where = (f"LSL discovery as configured by LSLAPICFG={config}" if config
             else "LSL discovery with liblsl's default configuration")
    sid = f" with source id {source_id!r}" if source_id else ""
    return LSLStreamNotFoundError(f"no LSL {what} stream named {name!r}{sid} appeared within {timeout:g} s "
                                  f"({where}); is the amplifier or player running?")


class EEGInlet(NamedTuple):
    """An open EEG inlet and how its samples meet the model's card.

    Attributes
    ----------
    inlet : mne_lsl.lsl.StreamInlet
    order : ndarray of int, shape (n_channels,)
        Stream channel feeding each of the card's channels, in the card's order.
    scale : ndarray of shape (n_channels,)
        Factor from the stream's samples to the model's training unit, per card channel.
    match_report : dict
        :func:`~neurodecode.contract.signal.match_recording`'s report on the stream.
    offset : float
        Clock offset from the stream's LSL clock to this machine's.
    source_id : str
        The stream's source id.
    """

    inlet: object
    order: np.ndarray
    scale: np.ndarray
    match_report: dict
    offset: float
    source_id: str


def open_eeg(sinfo, card: ModelCard, *, stream: str, timeout: float, max_buffered: int,
             stream_unit: str | None = None) -> EEGInlet:
    """Open an inlet on ``sinfo`` and check the stream against ``card`` (channels by name, rate).

    Parameters
    ----------
    sinfo : mne_lsl.lsl.StreamInfo
        From :func:`resolve`.
    card : ModelCard
    stream : str
        The stream's name, for messages.
    timeout : float
        Seconds to wait for the stream's answer.
    max_buffered : int
        Seconds of samples the inlet keeps while the loop is busy.
    stream_unit : {None, "V", "mV", "uV"}
        Unit of the samples; None: as each channel declares it (volts when undeclared).

    Raises
    ------
    LSLStreamNotFoundError
        The stream was found but did not answer within ``timeout``.
    LSLError
        Another sampling rate, or channels the contract refuses (one line, naming them).
    """
    import mne

    where = f"LSL stream {stream!r}"
    # recover=False: a lost outlet is noticed at once and found again by name.
    inlet = lsl().StreamInlet(sinfo, max_buffered=max_buffered, recover=False)
    try:
        inlet.open_stream(timeout=timeout)
        full = inlet.get_sinfo(timeout=timeout)
        offset = inlet.time_correction(timeout=timeout)
    except (TimeoutError, lost_error()):
        raise LSLStreamNotFoundError(f"{where} was found but did not answer within {timeout:g} s") from None
    sfreq = float(full.sfreq)
    if not math.isclose(sfreq, float(card.sfreq), rel_tol=1e-9):
        destroy(inlet)
        raise LSLError(f"{where}: sampled at {sfreq:g} Hz but model {card.name!r} was trained at "
                       f"{float(card.sfreq):g} Hz; live decoding does not resample: stream at "
                       f"{float(card.sfreq):g} Hz or train at {sfreq:g} Hz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mne-lsl warns about descriptions it completes with defaults
        info = full.get_channel_info()
    names = list(info["ch_names"])
    try:
        probe = mne.io.RawArray(np.zeros((len(names), 1)), info, verbose="error")
    except ValueError as err:  # duplicate or unusable channel names: mne's message quotes them raw
        destroy(inlet)
        raise LSLError(f"{where}: its channels cannot be matched by name ({str(err)!r})") from None
    try:
        _, report = match_recording(probe, card, resample=False)
    except NeurodecodeDataError as err:
        destroy(inlet)
        message = str(err).splitlines()[0]
        raise LSLError(f"{where}: {message.removeprefix('recording: ')}") from None
    renamed = [report["renamed"].get(n, n) for n in names]
    order = np.array([renamed.index(c) for c in card.ch_names])
    if stream_unit is None:
        unit_mul = np.array([info["chs"][i]["unit_mul"] for i in order], dtype=float)
    else:
        unit_mul = np.full(len(order), float(UNITS[stream_unit]))
    scale = 10.0 ** unit_mul * float(card.scale)
    return EEGInlet(inlet, order, scale, report, offset, full.source_id)


def open_markers(name: str, timeout: float):
    """``(inlet, channel names, clock offset)`` of the marker stream ``name``.

    Raises
    ------
    LSLStreamNotFoundError
    """
    sinfo = resolve(name, timeout, regular=False)
    if sinfo is None:
        raise not_found("marker", name, timeout)
    inlet = lsl().StreamInlet(sinfo, max_buffered=360, recover=True)
    inlet.open_stream(timeout=timeout)
    full = inlet.get_sinfo(timeout=timeout)
    names = full.get_channel_names() or [str(k) for k in range(full.n_channels)]
    return inlet, names, inlet.time_correction(timeout=timeout)


def marker_names(data, k: int, channel_names) -> list:
    """The marker(s) of sample ``k`` of a pulled marker chunk, as strings.

    Strings are taken as they are, a single numeric channel as its value, and mne-lsl's one-hot
    annotation stream as the names of its non-zero channels.
    """
    if isinstance(data, list):
        return [str(data[k][0])]
    if data.shape[1] == 1:
        value = float(data[k, 0])
        return [str(int(value)) if value.is_integer() else str(value)]
    return [str(channel_names[c]) for c in np.nonzero(data[k])[0]]


def open_outlet(name: str, class_names, *, source_id: str):
    """The decision outlet: ``class``, one ``proba_<class>`` per class, ``lag_ms``; irregular float64."""
    bindings = lsl()
    channels = [OUTLET_CHANNELS[0], *[f"proba_{c}" for c in class_names], OUTLET_CHANNELS[1]]
    info = bindings.StreamInfo(name=name, stype="decisions", n_channels=len(channels), sfreq=0.0, dtype="float64",
                               source_id=source_id)
    info.set_channel_names(channels)
    return bindings.StreamOutlet(info, chunk_size=1)
