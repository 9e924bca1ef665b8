"""Live decoding of LSL streams: real eegmmidb runs replayed with mne-lsl's PlayerLSL on loopback.

Every LSL use here runs under neurodecode's loopback-only liblsl configuration (set before
liblsl is first used), so no discovery packet leaves 127.0.0.1.
"""

import io
import json
import math
import time
import uuid
from contextlib import contextmanager

import mne
import numpy as np
import pandas as pd
import pytest

from neurodecode.online.stream_io import LOOPBACK_CONFIG, use_loopback_config

use_loopback_config()  # before mne_lsl creates anything: liblsl reads its configuration once

from mne_lsl.lsl import StreamInlet, resolve_streams  # noqa: E402
from mne_lsl.player import PlayerLSL  # noqa: E402

from neurodecode.contract import load_model  # noqa: E402
from neurodecode.cli import main  # noqa: E402
from neurodecode.data.stream import CausalBandpass, cue_window_labels  # noqa: E402
from neurodecode.online import (LSLDecoder, LSLError, LSLStreamLostError, LSLStreamNotFoundError,  # noqa: E402
                                StreamingDecoder, decode_stream, read_session_log)

SFREQ = 160.0


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, dataset_dir):
    from conftest import trained_model

    # train_model writes into an existing folder only; the shared fixture names one below the session's temp root.
    (tmp_path_factory.getbasetemp() / "batch-model").mkdir(exist_ok=True)
    return trained_model(tmp_path_factory, dataset_dir)  # COV+TS+LR, eegmmidb subjects 1-2, [0, 3] s trials


@pytest.fixture(scope="module")
def model(model_file):
    return load_model(model_file)


@pytest.fixture(scope="module")
def run4(dataset_dir):
    from neurodecode.data.datasets.eegmmidb import read_eegmmidb_run

    dataset_dir("eegmmidb")
    return read_eegmmidb_run(3, 4)  # an unseen subject; annotations named left_hand / right_hand / rest


def _name():
    return f"ndtest-{uuid.uuid4().hex[:8]}"


@contextmanager
def _replay(raw, name, *, annotations=False, encoding="one-hot"):
    player = PlayerLSL(raw, chunk_size=10, n_repeat=1, name=name, source_id=f"{name}-src", annotations=annotations,
                       annotations_encoding=encoding)
    player.start()
    try:
        yield player
    finally:
        if player.running:
            player.stop()


def _poll_until(live, done, timeout):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"gave up after {timeout} s: {live.events_}"
        live.poll(0.05)


def _segment(live, k):
    seg = live.recorded_[k]
    return np.concatenate(seg["data"], axis=1), np.concatenate(seg["timestamps"])


def _first_index(file_data, data):
    """Index of the file sample equal to the first received one (the inlet joins a running stream)."""
    hits = np.nonzero(np.all(file_data == data[:, [0]], axis=0))[0]
    assert hits.size == 1
    return int(hits[0])


def _live(model, name, **kwargs):
    est, card = model
    kwargs = {"display": False, "timeout_s": 5.0, "record": True, **kwargs}
    return LSLDecoder(est, card, stream=name, **kwargs)


# -- decisions equal the offline ones ------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:A single sample is pushed")
def test_live_decisions_equal_offline_decisions_on_a_permuted_stream(model, run4, tmp_path):
    est, card = model
    raw = run4.copy().crop(0, 12)
    order = np.random.default_rng(0).permutation(len(raw.ch_names))
    raw.reorder_channels([raw.ch_names[i] for i in order])
    extra = mne.io.RawArray(np.zeros((1, raw.n_times)), mne.create_info(["EXTRA"], SFREQ, "eeg"), verbose="error")
    raw.add_channels([extra], force_update_info=True)
    name, log = _name(), tmp_path / "session.jsonl"
    with _replay(raw, name, annotations=True):
        live = _live(model, name, step_s=0.125, markers=f"{name}-annotations", log=log)
        live.connect()
        consumer = StreamInlet(resolve_streams(timeout=5, name=f"{name}-decisions")[0])
        consumer.open_stream(timeout=5)
        _poll_until(live, lambda: live.events_, 20)  # until the file ends: its outlet closes, a dropout
    published, stamps = consumer.pull_chunk(timeout=0.5, max_samples=10_000)
    live.close()

    # The stream's channels, permuted and with one extra, are fed to the model in its own order.
    assert [raw.ch_names[i] for i in live.order_] == list(card.ch_names)
    assert live.match_report_["reordered"] and live.match_report_["extra_channels"] == ["EXTRA"]
    # What was pushed is the file's samples, in microvolts, with none lost.
    data, ts = _segment(live, 0)
    file_data = raw.get_data(picks=list(card.ch_names)) * 1e6
    k0 = _first_index(file_data, data)
    np.testing.assert_array_equal(data, file_data[:, k0:k0 + data.shape[1]])

    decisions = live.decisions_
    assert len(decisions) >= 20 and [e["type"] for e in live.events_] == ["dropout"]
    n_window, n_step = card.n_times, 20
    offline = decode_stream(StreamingDecoder(est, sfreq=SFREQ, window_s=n_window / SFREQ, step_s=n_step / SFREQ,
                                             fmin=8.0, fmax=32.0), data, chunk_size=7)
    assert [d.label for d in decisions] == [int(d.label) for d in offline]
    # ... and those of the pipeline on every causally filtered window (pseudo-online, no streaming code).
    filtered = CausalBandpass(SFREQ, 8.0, 32.0).process(data)
    ends = np.arange(n_window, data.shape[1] + 1, n_step)[:len(decisions)]
    windows = np.stack([filtered[:, e - n_window:e] for e in ends])
    assert len(ends) == len(decisions)
    np.testing.assert_array_equal([d.label for d in decisions], est.predict(windows))
    np.testing.assert_allclose([d.proba for d in decisions], est.predict_proba(windows), rtol=1e-6, atol=1e-9)
    # Each decision refers to its window's last sample; the outlet carried the same decisions.
    np.testing.assert_array_equal([d.lsl_time for d in decisions], ts[ends - 1])
    assert published.shape == (len(decisions), 2 + len(card.class_names))
    np.testing.assert_array_equal(published[:, 0], [d.label for d in decisions])
    np.testing.assert_allclose(published[:, 1:3], [d.proba for d in decisions])
    np.testing.assert_allclose(stamps, [d.lsl_time for d in decisions], atol=1e-6)
    assert all(math.isfinite(d.latency_ms) and d.processing_ms >= 0 for d in decisions)

    # Markers land at the file's cue times, and cues label the windows they cover.
    session = read_session_log(log)
    markers = session["markers"]
    onsets = raw.annotations.onset - k0 / SFREQ  # on the session's clock: its first sample is k0
    received = markers["time_s"].to_numpy()
    assert len(received) and all(np.abs(onsets - t).min() <= 1.5 / SFREQ for t in received)
    cues = [(t, card.class_names.index(d)) for t, d in zip(onsets, raw.annotations.description)
            if d in card.class_names and t >= received.min() - 1.5 / SFREQ]
    assert cues, "the replayed span holds no cue of the model's classes"
    tmin, tmax = card.window
    checked = 0
    for d in decisions:
        start, end = d.window_start_s, d.time_s
        near = [abs(min(end, t + tmax) - max(start, t + tmin) - (tmax - tmin) / 2) < 2 / SFREQ for t, _ in cues]
        if not any(near):  # a marker may lead its sample by one sample: skip windows on the 50 % edge
            onsets_, labels_ = zip(*cues)
            assert d.true == cue_window_labels([start], [end], onsets_, labels_, tmin, tmax)[0][0]
            checked += 1
    assert checked >= len(decisions) - 4 and any(d.true is not None for d in decisions)
    table = session["decisions"]
    assert len(table) == len(decisions) and table["label"].tolist() == [d.label for d in decisions]


# -- dropouts ------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:A single sample is pushed")
def test_a_dropout_is_reported_and_decoding_resumes_on_fresh_windows(model, run4, tmp_path):
    est, card = model
    raw = run4.copy().crop(0, 20)
    name = _name()
    with _replay(raw, name) as player:
        live = _live(model, name, step_s=0.25, dropout_s=0.5, give_up_s=15.0, log=tmp_path / "s.jsonl")
        live.connect()
        _poll_until(live, lambda: len(live.decisions_) >= 3, 15)
        player.stop()
        stop = time.monotonic()
        _poll_until(live, lambda: live.events_, 5)
        assert time.monotonic() - stop < 3.0  # dropout_s=0.5: reported within the second, with room for a busy machine
        n_before = len(live.decisions_)
        _poll_until(live, lambda: False if time.monotonic() - stop < 1.5 else True, 5)
        assert len(live.decisions_) == n_before  # nothing decided while the stream is gone
        player.start()  # the amplifier comes back: a new outlet of the same name and source id
        _poll_until(live, lambda: sum(d.segment == 1 for d in live.decisions_) >= 3, 20)
    live.close()

    dropout, resumed = live.events_
    assert (dropout["type"], resumed["type"]) == ("dropout", "resumed")
    first, second = ([d for d in live.decisions_ if d.segment == k] for k in (0, 1))
    assert len(first) == n_before and len(first) + len(second) == len(live.decisions_)
    _, ts0 = _segment(live, 0)
    data1, ts1 = _segment(live, 1)
    t0 = ts0[0]
    # No window mixes samples from both sides of the gap: decoding restarted on a fresh window.
    assert max(d.lsl_time for d in first) <= ts0[-1]
    assert min(d.window_start_s for d in second) >= ts1[0] - t0 - 1e-6
    assert second[0].lsl_time == ts1[card.n_times - 1]
    assert math.isclose(resumed["first_sample_time_s"], ts1[0] - t0, abs_tol=1e-4)
    # After the restart the decisions are those of a fresh decoder over the new samples.
    fresh = decode_stream(StreamingDecoder(est, sfreq=SFREQ, window_s=card.n_times / SFREQ, step_s=40 / SFREQ,
                                           fmin=8.0, fmax=32.0), data1, chunk_size=10)
    assert [d.label for d in second] == [int(d.label) for d in fresh][:len(second)]
    file_data = raw.get_data(picks=list(card.ch_names)) * 1e6
    k1 = _first_index(file_data, data1)
    np.testing.assert_array_equal(data1, file_data[:, k1:k1 + data1.shape[1]])
    logged = read_session_log(tmp_path / "s.jsonl")
    assert logged["events"]["type"].tolist() == ["dropout", "resumed"]
    assert logged["decisions"]["segment"].tolist() == [d.segment for d in live.decisions_]


def test_a_jump_in_timestamps_is_a_dropout_and_each_side_is_decoded_alone(model, run4):
    # Samples lost in transit: the stream goes on, but its timestamps jump by 2 s. Everything is pushed at
    # once (timestamps given, no real-time wait), so the decoder may well pull both sides in one chunk.
    from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock

    est, card = model
    name = _name()
    raw = run4.copy().crop(0, 10)
    info = StreamInfo(name=name, stype="eeg", n_channels=len(raw.ch_names), sfreq=SFREQ, dtype="float64",
                      source_id=f"{name}-src")
    info.set_channel_info(raw.info)
    outlet = StreamOutlet(info, chunk_size=10)
    live = _live(model, name, step_s=0.5, dropout_s=0.5, probabilities=False)  # the decoder's own fastest path
    live.connect()
    n1, n2 = 800, 640
    t0 = local_clock()
    stamps = np.concatenate([t0 + np.arange(n1) / SFREQ, t0 + 2.0 + np.arange(n1, n1 + n2) / SFREQ])
    outlet.push_chunk(np.ascontiguousarray(raw.get_data()[:, :n1 + n2].T), timestamp=stamps)
    _poll_until(live, lambda: sum(d.segment == 1 for d in live.decisions_) >= 2, 10)
    live.close()
    del outlet

    assert [e["type"] for e in live.events_] == ["dropout", "resumed"]
    assert "timestamps jumped by 2.0" in live.events_[0]["message"]
    signal = raw.get_data(picks=list(card.ch_names)) * 1e6
    n_window = card.n_times
    for k, part in enumerate((signal[:, :n1], signal[:, n1:n1 + n2])):
        mine = [d for d in live.decisions_ if d.segment == k]
        offline = decode_stream(StreamingDecoder(est, sfreq=SFREQ, window_s=n_window / SFREQ, step_s=0.5,
                                                 fmin=8.0, fmax=32.0), part, chunk_size=10)
        assert [d.label for d in mine] == [int(d.label) for d in offline]
    assert np.isnan([d.proba for d in live.decisions_]).all()
    first = live.decisions_[0]
    resumed = [d for d in live.decisions_ if d.segment == 1][0]
    assert resumed.lsl_time - first.lsl_time == pytest.approx(stamps[n1 + n_window - 1] - stamps[n_window - 1],
                                                              abs=1e-6)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:A single sample is pushed")
def test_a_stream_gone_for_good_ends_the_session_after_give_up(model, run4, tmp_path):
    name, log = _name(), tmp_path / "lost.jsonl"
    with _replay(run4.copy().crop(0, 30), name) as player:
        live = _live(model, name, dropout_s=0.5, give_up_s=1.5, log=log)
        live.connect()
        player.stop()
        start = time.monotonic()
        with pytest.raises(LSLStreamLostError, match=rf"stream '{name}' was lost \d+\.\d s ago and not found again"):
            live.run(duration_s=20)
    # Checked between look-ups; liblsl can hold a look-up ~5 s while an outlet of this same process shuts down.
    assert time.monotonic() - start < 10.0
    live.close()
    session = read_session_log(log)
    assert session["events"]["type"].tolist() == ["dropout"]
    end = [json.loads(line) for line in log.read_text().splitlines()][-1]
    assert end["type"] == "end" and end["status"] == "lost" and "give_up_s=1.5" in end["message"]


def test_a_stream_that_never_appears_fails_after_the_timeout(model):
    name = _name()
    live = _live(model, name, timeout_s=1.0)
    start = time.monotonic()
    with pytest.raises(LSLStreamNotFoundError, match=f"no LSL EEG stream named '{name}' appeared within 1 s"):
        live.connect()
    assert time.monotonic() - start < 5.0


# -- the contract --------------------------------------------------------------------------------

def test_a_missing_channel_is_refused_in_one_line(model, model_file, run4, tmp_path, capsys):
    raw = run4.copy().crop(0, 8).drop_channels(["C3"])
    name = _name()
    with _replay(raw, name):
        with pytest.raises(LSLError) as info:
            _live(model, name).connect()
        message = str(info.value)
        assert "\n" not in message
        assert message == (f"LSL stream '{name}': 1 of 64 model channels not found: C3 (no recording channel "
                           "matches, even ignoring case, 'EEG ' prefixes, '-REF' suffixes, dots, T3=T7 names)")
        log = tmp_path / "never.jsonl"
        code = main(["online", str(model_file), "--stream", name, "--timeout", "5", "--log", str(log), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.splitlines() == [f"neurodecode online: error: {message}"]
    assert not log.exists()


# -- the command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected, code", [
    (["online", "missing.ndm", "--stream", "x"], "model file missing.ndm does not exist", 2),
    (["online", "MODEL"], "the following arguments are required: --stream", 2),
    (["online", "MODEL", "--stream", "x", "--step", "-1"], "expected a positive number of seconds", 2),
    (["online", "MODEL", "--stream", "x", "--step", "0.123"], "not a whole number of samples at 160 Hz", 2),
    (["online", "MODEL", "--stream", "x", "--events", "T1"], "events must look like T1=left_hand", 2),
    (["online", "MODEL", "--stream", "x", "--events", "T1=feet"], "events name class(es) ['feet']", 2),
    (["online", "MODEL", "--stream", "x", "--lsl-config", "nope.cfg"], "nope.cfg does not exist", 2),
    (["online", "MODEL", "--stream", "ABSENT", "--timeout", "1"], "no LSL EEG stream named 'ndtest-", 1),
])
def test_usage_mistakes_and_absent_streams_exit_with_one_line(argv, expected, code, model_file, capsys, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LSLAPICFG", str(LOOPBACK_CONFIG))
    argv = [str(model_file) if a == "MODEL" else _name() if a == "ABSENT" else a for a in argv]
    assert main(argv) == code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and captured.out == "", captured.err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:A single sample is pushed")
def test_the_online_command_decodes_a_replayed_run(model_file, run4, tmp_path, capsys):
    name, log = _name(), tmp_path / "cli.jsonl"
    raw = run4.copy().crop(0, 15)
    raw.annotations.rename({"rest": "T0", "left_hand": "T1", "right_hand": "T2"})  # the EDF's own codes
    with _replay(raw, name, annotations=True, encoding="string"):  # markers as strings, the usual LSL kind
        code = main(["online", str(model_file), "--stream", name, "--markers", f"{name}-annotations",
                     "--events", "T1=left_hand,T2=right_hand", "--step", "0.25", "--duration", "8",
                     "--log", str(log), "--quiet"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0, out
    session = read_session_log(log)
    n = len(session["decisions"])
    assert n >= 8 and session["summary"]["n_decisions"] == n
    assert out[0].startswith(f"{n} decisions; latency p50 ") and out[1] == f"log: {log}"
    assert session["session"]["stream"] == name and session["session"]["step_samples"] == 40
    assert np.all(np.diff(session["decisions"]["time_s"]) == pytest.approx(0.25, abs=1e-4))
    markers = session["markers"]
    names = {"T0": None, "T1": 0, "T2": 1}
    assert len(markers) and set(markers["marker"]) <= set(names)
    assert [names[m] for m in markers["marker"]] == [None if pd.isna(v) else v for v in markers["label"]]
    assert (markers["marker"] == "T2").any()  # subject 3's cue at 4.2 s: right fist
    assert session["decisions"]["true"].notna().any()


# -- pieces --------------------------------------------------------------------------------------

def test_the_shipped_configuration_keeps_lsl_on_loopback(monkeypatch):
    settings = {}
    for line in LOOPBACK_CONFIG.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(";"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    assert settings == {"IPv6": "disable", "ResolveScope": "machine", "MachineAddresses": "{127.0.0.1}",
                        "LinkAddresses": "{}", "SiteAddresses": "{}", "OrganizationAddresses": "{}",
                        "GlobalAddresses": "{}", "KnownPeers": "{127.0.0.1}"}
    monkeypatch.delenv("LSLAPICFG", raising=False)
    assert use_loopback_config() == LOOPBACK_CONFIG
    import os

    assert os.environ["LSLAPICFG"] == str(LOOPBACK_CONFIG.resolve())


def test_a_log_cut_mid_line_is_read_and_damage_is_refused(tmp_path):
    session = {"type": "session", "class_names": ["a", "b"]}
    decision = {"type": "decision", "index": 0, "segment": 0, "lsl_time": 5.0, "time_s": 1.0, "window_start_s": 0.0,
                "label": 1, "class_name": "b", "proba": [0.2, 0.8], "true": None, "latency_ms": 1.0,
                "processing_ms": 0.5}
    lines = [json.dumps(session), json.dumps(decision)]
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines) + "\n" + json.dumps(decision)[:20])
    read = read_session_log(cut)
    assert len(read["decisions"]) == 1 and read["decisions"]["proba_b"].tolist() == [0.8]
    assert read["summary"] is None
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text(lines[0] + "\n{oops\n" + lines[1] + "\n")
    with pytest.raises(LSLError, match="line 2 is not JSON"):
        read_session_log(damaged)


# -- the model file is checked before any stream -------------------------------------------------

def _rewritten(model_file, path, **members):
    """``model_file`` with members replaced and the manifest's sha256s made to match (as an attacker would)."""
    import hashlib
    import zipfile

    with zipfile.ZipFile(model_file) as archive:
        content = {n: archive.read(n) for n in archive.namelist()}
    content.update(members)
    manifest = json.loads(content["neurodecode-model.json"])
    manifest["sha256"] = {n: hashlib.sha256(content[n]).hexdigest() for n in ("card.json", "model.skops")}
    content["neurodecode-model.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for n, data in content.items():
            archive.writestr(n, data)
    return path


def _refused(model_file, tmp_path):
    import os

    import skops.io as sio

    return _rewritten(model_file, tmp_path / "refused.ndm", **{"model.skops": sio.dumps({"f": os.system})})


def _damaged(model_file, tmp_path):
    """One bit flipped inside the deflate stream of the payload: its first block's type becomes 'reserved'."""
    import zipfile

    with zipfile.ZipFile(model_file) as archive:
        info = archive.getinfo("model.skops")
    data = bytearray(model_file.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start] ^= 0x02
    path = tmp_path / "damaged.ndm"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("make, expected", [(_refused, "refused"), (_damaged, "corrupt")])
def test_a_refused_or_damaged_model_file_is_one_line_before_any_stream_is_looked_for(make, expected, model_file,
                                                                                     tmp_path, capsys, monkeypatch):
    import neurodecode.online.stream_io as stream_io

    looked_for = []
    monkeypatch.setattr(stream_io, "resolve", lambda *a, **k: looked_for.append(a) or None)
    path = make(model_file, tmp_path)
    log = tmp_path / "never.jsonl"
    code = main(["online", str(path), "--stream", _name(), "--timeout", "1", "--log", str(log), "--quiet"])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2 and captured.out == "" and len(lines) == 1, captured.err
    assert lines[0].startswith(f"neurodecode online: error: {path}") and expected in lines[0]
    assert looked_for == [] and not log.exists()


# -- windows reach the model through the signal contract -----------------------------------------

def _outlet(raw, name):
    from mne_lsl.lsl import StreamInfo, StreamOutlet

    info = StreamInfo(name=name, stype="eeg", n_channels=len(raw.ch_names), sfreq=SFREQ, dtype="float64",
                      source_id=f"{name}-src")
    info.set_channel_info(raw.info)
    return StreamOutlet(info, chunk_size=10)


def _push(outlet, raw, seconds):
    """``seconds`` of ``raw`` pushed at once, stamped as if they had just been recorded."""
    from mne_lsl.lsl import local_clock

    n = int(seconds * SFREQ)
    outlet.push_chunk(np.ascontiguousarray(raw.get_data()[:, :n].T), timestamp=local_clock() - n / SFREQ
                      + np.arange(n) / SFREQ)


def test_every_window_reaches_the_model_through_model_input_with_one_signal_info(model, run4, monkeypatch):
    import neurodecode.online.lsl as lsl_module

    real, calls = lsl_module.model_input, []

    def spy(estimator, X, card, info=None):
        calls.append((estimator, X.shape, info))
        return real(estimator, X, card, info)

    monkeypatch.setattr(lsl_module, "model_input", spy)
    est, card = model
    name = _name()
    outlet = _outlet(run4, name)
    live = _live(model, name, step_s=0.5, record=False)
    live.connect()
    _push(outlet, run4, 6.0)
    _poll_until(live, lambda: len(live.decisions_) >= 4, 10)
    live.close()
    del outlet
    # The shipped COV+TS+LR has no running-sum path: each decision is one window through the contract.
    assert live.summary()["decoder_path"] == "per_window"
    assert len(calls) == len(live.decisions_)
    assert all(e is est and shape == (1, len(card.ch_names), card.n_times) for e, shape, _ in calls)
    assert calls[0][2] is not None and all(info is calls[0][2] for *_, info in calls)  # built once
    assert calls[0][2].ch_names == tuple(card.ch_names) and calls[0][2].sfreq == card.sfreq


def test_a_card_whose_channel_order_contradicts_the_fitted_model_is_refused_at_the_first_window(model, run4,
                                                                                                tmp_path, capsys):
    # The card lists the model's channels in reverse: the stream matches it, and without the contract the
    # model would be handed every window in the wrong order and decide on it without a word.
    import dataclasses

    from neurodecode.contract import save_model

    est, card = model
    reversed_card = dataclasses.replace(card, ch_names=list(card.ch_names)[::-1])
    name = _name()
    outlet = _outlet(run4, name)
    live = _live((est, reversed_card), name, step_s=0.5)
    live.connect()
    _push(outlet, run4, 4.0)
    with pytest.raises(ValueError, match="channels differ from those fitted: position 0 is 'Iz' here, 'FC5' at fit"):
        _poll_until(live, lambda: False, 10)
    assert live.decisions_ == []
    live.close()
    # The command line: one line, exit 2.
    path = save_model(est, reversed_card, tmp_path / "reversed.ndm")
    with _replay(run4.copy().crop(0, 8), name + "-cli"):
        code = main(["online", str(path), "--stream", name + "-cli", "--timeout", "5", "--duration", "6",
                     "--log", str(tmp_path / "r.jsonl"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and "channels differ from those fitted" in captured.err
    del outlet


# -- strings from the card and the stream are data -----------------------------------------------

HOSTILE = ("left\x1b[2J\x1b]0;owned\x07{0}%s", "right\r\u202e%(x)s{__class__}")
_RAW_CONTROL = r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_class_and_marker_names_reach_the_terminal_escaped_and_the_log_intact(model, run4, tmp_path):
    import dataclasses
    import re

    from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock

    est, card = model
    hostile = dataclasses.replace(card, class_names=list(HOSTILE))
    name = _name()
    outlet = _outlet(run4, name)
    minfo = StreamInfo(name=f"{name}-markers", stype="Markers", n_channels=1, sfreq=0.0, dtype="string",
                       source_id=f"{name}-markers")
    markers = StreamOutlet(minfo)
    screen, log = _Terminal(), tmp_path / "hostile.jsonl"
    live = _live((est, hostile), name, step_s=0.25, markers=f"{name}-markers", display=screen, log=log)
    live.connect()
    sent = [HOSTILE[0], "\x07\n{}\x1b[31m"]  # a cue of the first class, and a marker of no class
    for text in sent:
        markers.push_sample([text], timestamp=local_clock())
    _push(outlet, run4, 5.0)
    _poll_until(live, lambda: len(live.decisions_) >= 6, 10)
    live.run(max_decisions=len(live.decisions_))  # ends the session: the summary record
    live.close()
    del outlet, markers

    shown = screen.getvalue()
    # The status line's own codes (carriage return, erase-to-end) are all that reach the terminal raw.
    assert re.search(_RAW_CONTROL, shown.replace("\r\x1b[K", "").replace("\x1b[K", "").replace("\r", "")
                     .replace("\n", "")) is None, shown
    decided = {d.class_name for d in live.decisions_}
    assert decided <= set(HOSTILE)
    escaped = {HOSTILE[0]: r"left\x1b[2J\x1b]0;owned\x07{0}%s", HOSTILE[1]: r"right\r\u202e%(x)s{__class__}"}
    assert escaped[live.decisions_[0].class_name] in shown  # the first decision is always shown
    # The log keeps every string exactly, one record a line.
    lines = log.read_text(encoding="utf-8").splitlines()
    assert all(json.loads(line) for line in lines)
    session = read_session_log(log)
    assert session["class_names"] == list(HOSTILE) and session["summary"]["n_decisions"] == len(live.decisions_)
    assert session["markers"]["marker"].tolist() == sent
    assert session["markers"]["label"].tolist()[0] == 0 and pd.isna(session["markers"]["label"].tolist()[1])
    assert set(session["decisions"]["class_name"]) == decided


def test_a_card_channel_name_with_control_characters_is_escaped_in_the_error_line(model, run4, tmp_path, capsys):
    import dataclasses

    from neurodecode.contract import save_model

    est, card = model
    names = list(card.ch_names)
    names[0] = "FC5\x1b[2J\x1b]0;owned\x07"
    path = save_model(est, dataclasses.replace(card, ch_names=names), tmp_path / "evil-channels.ndm")
    name = _name()
    outlet = _outlet(run4, name)
    code = main(["online", str(path), "--stream", name, "--timeout", "5", "--log", str(tmp_path / "x.jsonl"),
                 "--quiet"])
    del outlet
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.count("\n") == 1 and "\x1b" not in captured.err and "\x07" not in captured.err
    assert r"FC5\x1b[2J\x1b]0;owned\x07" in captured.err
