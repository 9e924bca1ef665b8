"""End-to-end latency of live LSL decoding: last sample's LSL timestamp -> decision published.

An "amplifier" process replays eegmmidb subject 1 run 12 (64 channels, 160 Hz) as an LSL stream
on loopback, pushing 10 samples every 62.5 ms stamped with the LSL clock at the push (the last
sample of each chunk is "now", as an amplifier stamps it). In this process, for each pipeline
(Cov+TS+LR; ACM(order, lag 3)+TS+LR for orders 2-4; the shipped ``pipelines/COV_TS_LR.yml``, whose
neurodecode transformers take the streaming decoder's per-window path, so that every window goes
through :func:`neurodecode.contract.signal.model_input` and the transformers' rate and channel
check; all fitted on the same subject's runs 4 and 8, 1 s causal 8-32 Hz windows), two decoders run
in turn on that stream, a decision every 10 samples on the last 1 s:

* ``neurodecode``: :class:`neurodecode.online.LSLDecoder` (pulls every sample once, streaming
  decoder with running covariance sums, decision and class probabilities published on an LSL
  outlet; ``--no-proba`` publishes none and lets the decoder skip the final step's ``predict``);
* ``mne-lsl + predict`` (the anchor): what one writes with mne-lsl alone: a ``StreamLSL`` with
  its causal 8-32 Hz Butterworth filter on acquisition, polled every millisecond, and
  ``pipeline.predict`` on ``get_data(1 s)`` whenever 10 new samples are in, the decision pushed
  on an outlet.

Latency = LSL clock when the decision's ``push_sample`` returned minus the LSL timestamp of the
window's last sample. p50 / p99 over each run's decisions after the first second (16 decisions:
the first one chooses the streaming decoder's path and the next ones catch up; their maximum is
reported apart) and their ratio (anchor / neurodecode) are printed and written to
``docs/measured/lsl_latency.json``. One BLAS thread. LSL runs on loopback only
(``LSLAPICFG`` = neurodecode's ``lsl_loopback.cfg``).

    OPENBLAS_NUM_THREADS=1 NEURODECODE_DATA=../shared/data .venv/bin/python benchmarks/lsl_latency.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurodecode.online.stream_io import use_loopback_config  # noqa: E402

use_loopback_config()  # before liblsl is first used, here and in the amplifier process (it inherits the variable)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SFREQ, CHUNK, WINDOW = 160.0, 10, 160
#: Decisions of the first second left out of the percentiles: the first decision chooses the
#: streaming decoder's path (checks against the pipeline's own transform, hundreds of ms under
#: load) and the next ones catch up with the samples that queued meanwhile. Reported apart.
SKIP = 16
OUT = Path(__file__).resolve().parents[1] / "docs" / "measured" / "lsl_latency.json"


def amplifier(name: str, subject: int, run: int, ready, stop) -> None:
    """Push a recording as an EEG stream, chunk by chunk in real time, stamped at each push."""
    from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock

    from neurodecode.data import read_eegmmidb_run

    raw = read_eegmmidb_run(subject, run)
    data = raw.get_data().T.copy()  # volts, declared as such in the stream's description
    info = StreamInfo(name=name, stype="eeg", n_channels=data.shape[1], sfreq=SFREQ, dtype="float64",
                      source_id=f"{name}-amp")
    info.set_channel_info(raw.info)
    outlet = StreamOutlet(info, chunk_size=CHUNK)
    ready.set()
    period, start, k = CHUNK / SFREQ, time.perf_counter(), 0
    while not stop.is_set():
        wait = start + (k + 1) * period - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        i = (k * CHUNK) % (data.shape[0] - CHUNK)
        outlet.push_chunk(data[i:i + CHUNK], timestamp=local_clock())
        k += 1


#: The package's own COV+TS+LR (``pipelines/COV_TS_LR.yml``): neurodecode's transformers, no running-sum path.
SHIPPED = "COV+TS+LR (shipped)"


def pipelines(orders) -> dict:
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from neurodecode.contract.pipeline_files import load_pipelines
    from neurodecode.transforms.augmented import AugmentedCovariance

    pipes = {"Cov+TS+LR": make_pipeline(Covariances("oas"), TangentSpace(), LogisticRegression(max_iter=1000))}
    for order in orders:
        pipes[f"ACM({order},3)+TS+LR"] = make_pipeline(AugmentedCovariance(order=order, lag=3, estimator="oas"),
                                                       TangentSpace(), LogisticRegression(max_iter=1000))
    (spec,), failures = load_pipelines(Path(__file__).resolve().parents[1] / "pipelines" / "COV_TS_LR.yml")
    if failures:
        raise SystemExit(f"pipelines/COV_TS_LR.yml: {failures}")
    pipes[SHIPPED] = spec.pipeline
    return pipes


def card_for(name, ch_names, class_names):
    from neurodecode.contract.model_file import ModelCard

    return ModelCard(name=name, created="", neurodecode_version="", versions={}, dataset="", subjects=[],
                     paradigm={"band": [8.0, 32.0]}, sfreq=SFREQ, ch_names=list(ch_names),
                     window=[0.0, (WINDOW - 1) / SFREQ], class_names=list(class_names), scores={}, pipeline_name=name,
                     pipeline_hash="")


def ours(pipe, card, stream: str, seconds: float, probabilities: bool = True) -> dict:
    from neurodecode.online import LSLDecoder

    live = LSLDecoder(pipe, card, stream=stream, step_s=CHUNK / SFREQ, display=False,
                      outlet=f"{stream}-nd-{card.name}", timeout_s=10.0, probabilities=probabilities)
    live.connect()
    summary = live.run(seconds)
    live.close()
    return {"latency_ms": [d.latency_ms for d in live.decisions_],
            "processing_ms": [d.processing_ms for d in live.decisions_], "path": summary["decoder_path"],
            "dropouts": summary["dropouts"]}


def anchor(pipe, card, stream: str, seconds: float, probabilities: bool = True) -> dict:
    from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock
    from mne_lsl.stream import StreamLSL

    from neurodecode._utils.threads import threads

    eeg = StreamLSL(bufsize=2.0, name=stream).connect(acquisition_delay=0.001, timeout=10.0)
    eeg.filter(8.0, 32.0, iir_params={"order": 4, "ftype": "butter", "output": "sos"}, verbose="error")
    info = StreamInfo(name=f"{stream}-anchor-{card.name}", stype="decisions", n_channels=1, sfreq=0.0,
                      dtype="float64", source_id=f"{stream}-anchor")
    outlet = StreamOutlet(info)
    lat, proc = [], []
    end = time.monotonic() + seconds
    with threads(1):
        while time.monotonic() < end:
            if eeg.n_new_samples < CHUNK:
                time.sleep(0.001)
                continue
            t_seen = local_clock()
            data, ts = eeg.get_data(winsize=WINDOW / SFREQ)
            if data.shape[1] < WINDOW:
                continue
            label = pipe.predict(data[None] * 1e6)[0]
            outlet.push_sample(np.array([float(label)]), timestamp=ts[-1])
            now = local_clock()
            lat.append((now - ts[-1]) * 1e3)
            proc.append((now - t_seen) * 1e3)
    eeg.disconnect()
    return {"latency_ms": lat, "processing_ms": proc, "path": "predict per window", "dropouts": None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="streaming time per decoder and pipeline")
    parser.add_argument("--orders", default="2,3,4", help="ACM orders (lag 3)")
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--no-proba", action="store_true",
                        help="neurodecode publishes no probabilities (its decoder's fastest path)")
    parser.add_argument("--pipelines", default=None, metavar="NAME,...",
                        help=f"only these pipelines (default: all; names: Cov+TS+LR, ACM(2,3)+TS+LR, ..., {SHIPPED})")
    parser.add_argument("--smoke", action="store_true", help="5 s per decoder, ACM order 2 only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.orders = 5.0, "2"
    from neurodecode.data.registry import get_dataset
    from neurodecode.data.stream import sliding_windows

    train = sliding_windows(get_dataset("eegmmidb").streams([args.subject])[:2], WINDOW / SFREQ, 0.5)
    stream = f"nd-lsl-bench-{os.getpid()}"
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    amp = ctx.Process(target=amplifier, args=(stream, args.subject, 12, ready, stop), daemon=True)
    amp.start()
    if not ready.wait(60):
        raise SystemExit("the amplifier process did not start")
    load_before = os.getloadavg()
    rows, raw = [], {}
    try:
        chosen = pipelines([int(o) for o in args.orders.split(",") if o])
        if args.pipelines:
            names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
            unknown = [n for n in names if n not in chosen]
            if unknown:
                raise SystemExit(f"unknown pipeline(s) {unknown}; known: {list(chosen)}")
            chosen = {n: chosen[n] for n in names}
        for name, pipe in chosen.items():
            # The shipped pipeline is fitted as `neurodecode train` fits it, on a DecodingData: its transformers
            # record the rate and channel order that the live session's windows are then checked against.
            pipe.fit(train, train.y) if name == SHIPPED else pipe.fit(train.X, train.y)
            card = card_for(name, train.info.ch_names, train.info.class_names)
            row = {"pipeline": name}
            for who, run in (("neurodecode", ours), ("mne-lsl + predict", anchor)):
                result = run(pipe, card, stream, args.seconds, not args.no_proba)
                lat, proc = np.asarray(result["latency_ms"])[SKIP:], np.asarray(result["processing_ms"])[SKIP:]
                raw[f"{name} / {who}"] = result
                row[f"{who} path"] = result["path"]
                row[f"{who} decisions"] = lat.size
                row[f"{who} p50 ms"] = float(np.median(lat))
                row[f"{who} p99 ms"] = float(np.percentile(lat, 99))
                row[f"{who} processing p50 ms"] = float(np.median(proc))
                row[f"{who} processing p99 ms"] = float(np.percentile(proc, 99))
                row[f"{who} first second max ms"] = float(np.max(result["latency_ms"][:SKIP]))
                if result["dropouts"] is not None:  # a starved amplifier or decoder: a reset mid-run
                    row[f"{who} dropouts"] = result["dropouts"]
            row["p50 ratio"] = row["mne-lsl + predict p50 ms"] / row["neurodecode p50 ms"]
            row["p99 ratio"] = row["mne-lsl + predict p99 ms"] / row["neurodecode p99 ms"]
            rows.append(row)
            print(pd.Series(row).to_string(), "\n", flush=True)
    finally:
        stop.set()
        amp.join(5)
    load_after = os.getloadavg()
    table = pd.DataFrame(rows).set_index("pipeline")
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {load_after} on {os.cpu_count()} cores")
    print("ratio = anchor latency / neurodecode latency (> 1: neurodecode is faster)")
    cols = ["neurodecode p50 ms", "neurodecode p99 ms", "mne-lsl + predict p50 ms", "mne-lsl + predict p99 ms",
            "p50 ratio", "p99 ratio", "neurodecode decisions", "neurodecode path"]
    print(table[cols].round(2).to_markdown())
    if not args.smoke:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "seconds": args.seconds,
                                              "probabilities": not args.no_proba,
                                              "load_before": load_before, "load_after": load_after,
                                              "cpu_count": os.cpu_count(), "table": rows,
                                              "skipped": SKIP,
                                              "samples": {k: v["latency_ms"] for k, v in raw.items()},
                                              "processing_samples": {k: v["processing_ms"] for k, v in raw.items()}},
                                             indent=1))
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
