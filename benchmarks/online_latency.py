"""Latency per decision of the streaming decoder vs a fitted pipeline's predict on each window.

64 channels at 160 Hz (eegmmidb), 1 s window, a decision every 62.5 ms (OpenViBE's online
motor-imagery setting), one thread. Pipelines are fitted on subject 1's runs 4 and 8 (causal
8-32 Hz windows); run 12 is then pushed raw, 10 samples (one step) per push, through

* ``StreamingDecoder(incremental="auto")``: running covariance sums, whitened at the tangent
  space's reference, one float32 eigendecomposition per decision (float64 again when the
  scores are too close to call), the linear classifier's scores;
* the same with ``precision="float64"``;
* ``StreamingDecoder(incremental=False)``: the same filter and buffer, ``pipeline.predict`` on each window;

and the median / 99th percentile latency per decision are printed with the ratio to the
per-window path, the fraction of decisions equal to the per-window ones and the number of
float64 retries. ``--out FILE`` also writes the printed report (with the load average before
and after: tails on a busy machine are much longer) to ``FILE``.

    OPENBLAS_NUM_THREADS=1 NEURODECODE_DATA=../shared/data .venv/bin/python benchmarks/online_latency.py \
        --out docs/measured/online_latency.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyriemann.estimation import Covariances  # noqa: E402
from pyriemann.tangentspace import TangentSpace  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

from neurodecode.data import read_eegmmidb_run  # noqa: E402
from neurodecode.data.registry import get_dataset  # noqa: E402
from neurodecode.data.stream import sliding_windows  # noqa: E402
from neurodecode.online import StreamingDecoder, decode_stream  # noqa: E402


def pipelines(acm_orders) -> dict:
    pipes = {"Cov+TS+LR": make_pipeline(Covariances("oas"), TangentSpace(), LogisticRegression(max_iter=1000))}
    try:
        from neurodecode.transforms.augmented import AugmentedCovariance
    except ImportError:
        print("ACM: not available (neurodecode.transforms.augmented missing)")
        return pipes
    for order, lag in acm_orders:
        pipes[f"ACM({order},{lag})+TS+LR"] = make_pipeline(AugmentedCovariance(order=order, lag=lag, estimator="oas"),
                                                           TangentSpace(), LogisticRegression(max_iter=1000))
    return pipes


MODES = (("streaming", {"incremental": "auto"}), ("streaming float64", {"incremental": "auto", "precision": "float64"}),
         ("predict per window", {"incremental": False}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--acm", default="1x3,2x3,3x3,4x3", help="ACM (order x lag) pairs, comma separated")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the test run per decoder")
    parser.add_argument("--seconds", type=float, default=None, help="stream only this many seconds of the run")
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args(argv)
    acm = [tuple(int(v) for v in pair.split("x")) for pair in args.acm.split(",") if pair]
    report = [f"# {' '.join(['benchmarks/online_latency.py', *(argv if argv is not None else sys.argv[1:])])}",
              f"# load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} cores)",
              f"# BLAS threads: {threadpool_info()[0]['num_threads'] if threadpool_info() else 'n/a'}"]
    print("\n".join(report), flush=True)
    # The first two left/right runs (PhysioNet runs 4 and 8) train; the third is streamed.
    train = sliding_windows(get_dataset("eegmmidb").streams([args.subject])[:2], 1.0, 0.5)
    raw = read_eegmmidb_run(args.subject, 12).get_data(picks="eeg") * 1e6
    if args.seconds:
        raw = raw[:, :int(args.seconds * 160)]
    rows = []
    for name, pipe in pipelines(acm).items():
        pipe.fit(train.X, train.y)
        result = {"pipeline": name}
        labels = {}
        for mode, kwargs in MODES:
            decoder = StreamingDecoder(pipe, sfreq=160.0, window_s=1.0, step_s=0.0625, **kwargs)
            lat, retries, cpu = [], 0, 0.0
            for _ in range(args.repeats):
                start = time.thread_time()
                decisions = decode_stream(decoder, raw, 10)
                cpu += time.thread_time() - start
                lat += decoder.latencies_
                retries += decoder.n_float64_retries_
            labels[mode] = np.array([d.label for d in decisions])
            lat = np.asarray(lat) * 1e3
            result[f"{mode} median ms"] = float(np.median(lat))
            result[f"{mode} p99 ms"] = float(np.percentile(lat, 99))
            # CPU time of this thread, pushes included: what a decision costs when nothing preempts it.
            result[f"{mode} cpu ms"] = 1e3 * cpu / len(lat)
            if mode == "streaming":
                result["float64 retries"] = retries
        result["decisions"] = len(labels["streaming"])
        for mode in ("streaming", "streaming float64"):
            result[f"{mode} same decisions"] = float(np.mean(labels[mode] == labels["predict per window"]))
        result["p99 ratio"] = result["predict per window p99 ms"] / result["streaming p99 ms"]
        rows.append(result)
        print(pd.Series(result).to_string(), "\n", flush=True)
    table = pd.DataFrame(rows).set_index("pipeline")
    short = table[["streaming median ms", "streaming p99 ms", "streaming cpu ms", "streaming float64 median ms",
                   "streaming float64 p99 ms", "streaming float64 cpu ms", "predict per window median ms",
                   "predict per window p99 ms", "predict per window cpu ms", "p99 ratio", "float64 retries",
                   "streaming same decisions", "decisions"]]
    lines = ["p99 ratio = predict-per-window p99 / streaming p99 (> 1: streaming is faster); "
             "same decisions: fraction equal to predict per window; cpu ms: this thread's CPU time per decision",
             short.round(3).to_markdown(),
             f"# load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}"]
    print("\n".join(lines), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(report + lines) + "\n")


if __name__ == "__main__":
    main()
