"""Latency per decision of the streaming decoder vs a fitted pipeline's predict on each window.

64 channels at 160 Hz (eegmmidb), 1 s window, a decision every 62.5 ms (OpenViBE's online
motor-imagery setting), one thread. Pipelines are fitted on subject 1's runs 4 and 8 (causal
8-32 Hz windows); run 12 is then pushed raw, 10 samples (one step) per push, through

* ``StreamingDecoder(incremental="auto")``: running covariance sums, rest of the pipeline on the matrix;
* ``StreamingDecoder(incremental=False)``: the same filter and buffer, ``pipeline.predict`` on each window;

and the median / 99th percentile latency per decision are printed with their ratio.

    OPENBLAS_NUM_THREADS=1 NEURODECODE_DATA=../shared/data .venv/bin/python benchmarks/online_latency.py
"""

from __future__ import annotations

import argparse
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyriemann.estimation import Covariances  # noqa: E402
from pyriemann.tangentspace import TangentSpace  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--acm", default="2x3,4x3", help="ACM (order x lag) pairs, comma separated")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the test run per decoder")
    args = parser.parse_args(argv)
    acm = [tuple(int(v) for v in pair.split("x")) for pair in args.acm.split(",") if pair]
    # The first two left/right runs (PhysioNet runs 4 and 8) train; the third is streamed.
    train = sliding_windows(get_dataset("eegmmidb").streams([args.subject])[:2], 1.0, 0.5)
    raw = read_eegmmidb_run(args.subject, 12).get_data(picks="eeg") * 1e6
    rows = []
    for name, pipe in pipelines(acm).items():
        pipe.fit(train.X, train.y)
        result = {"pipeline": name}
        labels = {}
        for mode, incremental in (("streaming", "auto"), ("predict per window", False)):
            decoder = StreamingDecoder(pipe, sfreq=160.0, window_s=1.0, step_s=0.0625, incremental=incremental)
            lat = []
            for _ in range(args.repeats):
                decisions = decode_stream(decoder, raw, 10)
                lat += decoder.latencies_
            labels[mode] = np.array([d.label for d in decisions])
            lat = np.asarray(lat) * 1e3
            result[f"{mode} path"] = decoder.mode_
            result[f"{mode} median ms"] = float(np.median(lat))
            result[f"{mode} p99 ms"] = float(np.percentile(lat, 99))
        result["decisions"] = len(labels["streaming"])
        result["same decisions"] = float(np.mean(labels["streaming"] == labels["predict per window"]))
        result["median ratio"] = result["predict per window median ms"] / result["streaming median ms"]
        result["p99 ratio"] = result["predict per window p99 ms"] / result["streaming p99 ms"]
        rows.append(result)
        print(pd.Series(result).to_string(), "\n", flush=True)
    table = pd.DataFrame(rows).set_index("pipeline")
    print("ratio = predict-per-window latency / streaming latency (> 1: streaming is faster)")
    print(table.round(3).to_markdown())


if __name__ == "__main__":
    main()
