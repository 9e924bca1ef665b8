"""Offline (MOABB) vs pseudo-online scores on eegmmidb: left fist, right fist and idle.

For each subject: MOABB's WithinSessionEvaluation (left vs right, ROC-AUC; left/right/rest
cue-locked, accuracy) and the pseudo-online evaluation (causal 8-32 Hz filter, every sliding
window of a held-out run decoded, idle included, leave-one-run-out) for CSP+LDA, Cov+TS+LR and
ACM+TS+LR, in two settings: 1 s windows / 0.125 s step and 3 s windows / 50 % overlap.

Results are appended per subject to <out>/pseudo_online.jsonl as they finish; a rerun skips
the subjects already there. The table is printed at the end.

    OPENBLAS_NUM_THREADS=1 NEURODECODE_DATA=../shared/data .venv/bin/python benchmarks/pseudo_online.py --subjects 1-10
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyriemann.estimation import Covariances  # noqa: E402
from pyriemann.spatialfilters import CSP  # noqa: E402
from pyriemann.tangentspace import TangentSpace  # noqa: E402
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from neurodecode.data.datasets.eegmmidb import present_subjects  # noqa: E402
from neurodecode.data.registry import get_dataset  # noqa: E402
from neurodecode.data.stream import sliding_windows  # noqa: E402
from neurodecode.benchmark.moabb_glue import moabb_offline_scores  # noqa
from neurodecode.evaluation import pseudo_online_evaluate, side_by_side  # noqa: E402

SETTINGS = {"1s/0.125s": (1.0, 0.125), "3s/1.5s": (3.0, 1.5)}
# Fixed, not grid-tuned, so that the 20 subjects fit in minutes (MOABB's ACM grid takes hours).
ACM_ORDER, ACM_LAG = 2, 3


def pipelines() -> dict:
    pipes = {
        "CSP+LDA": make_pipeline(Covariances("oas"), CSP(nfilter=6), LinearDiscriminantAnalysis()),
        "Cov+TS+LR": make_pipeline(Covariances("oas"), TangentSpace(metric="riemann"),
                                   LogisticRegression(C=1.0, max_iter=1000)),
    }
    try:
        from neurodecode.transforms.augmented import AugmentedCovariance
    except ImportError:
        return pipes
    pipes[f"ACM({ACM_ORDER},{ACM_LAG})+TS+LR"] = make_pipeline(
        AugmentedCovariance(order=ACM_ORDER, lag=ACM_LAG, estimator="oas"), TangentSpace(metric="riemann"),
        LogisticRegression(C=1.0, max_iter=1000))
    return pipes


def parse_subjects(text: str) -> list:
    if text == "all":
        return list(present_subjects("left_right"))
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    unknown = sorted(set(out) - set(present_subjects("left_right")))
    if unknown:
        raise SystemExit(f"subject(s) {unknown} have no files here; present: {list(present_subjects('left_right'))}")
    return out


def run_subject(subject: int, pipes: dict, train_every: int) -> list:
    records = []
    t0 = time.perf_counter()
    for with_idle in (False, True):
        off = moabb_offline_scores(pipes, "eegmmidb", [subject], with_idle=with_idle)
        records += [{"kind": "offline", "subject": subject, "pipeline": r.pipeline, "metric": r.metric,
                     "score": float(r.score)} for r in off.itertuples()]
    streams = get_dataset("eegmmidb").streams([subject])
    for setting, (window_s, step_s) in SETTINGS.items():
        windows = sliding_windows(streams, window_s, step_s)
        every = train_every if step_s < 0.5 else 1
        scores = pseudo_online_evaluate(pipes, windows, train_every=every)
        for row in scores.drop(columns=["confusion"]).to_dict("records"):
            records.append({"kind": "pseudo_online", "setting": setting, **{k: (v.item() if hasattr(v, "item")
                                                                                else v) for k, v in row.items()}})
    print(f"subject {subject}: {time.perf_counter() - t0:.0f} s", flush=True)
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", default="all", help="'all', or e.g. '1-10' or '1,2,42'")
    parser.add_argument("--out", default="benchmarks/results", help="results folder")
    parser.add_argument("--train-every", type=int, default=4,
                        help="train on every k-th window at the 0.125 s step (test windows are all kept)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pseudo_online.jsonl"
    done = set()
    if path.exists():
        done = {json.loads(line)["subject"] for line in path.read_text().splitlines() if line.strip()}
    pipes = pipelines()
    for subject in parse_subjects(args.subjects):
        if subject in done:
            continue
        records = run_subject(subject, pipes, args.train_every)
        # One write per subject, so a killed run leaves only whole subjects behind.
        with open(path, "a") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in records))
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    wanted = set(parse_subjects(args.subjects))
    frame = pd.DataFrame([r for r in records if r["subject"] in wanted])
    offline = frame[frame.kind == "offline"]
    online = frame[frame.kind == "pseudo_online"]
    table = side_by_side(offline, online)
    if not any(name.startswith("ACM") for name in pipes):
        table.loc["ACM+TS+LR"] = np.nan  # neurodecode.transforms.augmented not available
        print("ACM: not available (neurodecode.transforms.augmented missing)")
    pd.set_option("display.width", 200)
    print(f"\n{table['n_subjects'].max()} subjects; offline = MOABB WithinSessionEvaluation (5-fold, 8-32 Hz "
          "zero-phase); pseudo-online = causal 8-32 Hz, leave-one-run-out, 3 classes incl. idle; ITR in bits/min "
          "from balanced accuracy")
    print(table.round(3).to_markdown())
    ranks = table.drop(columns="n_subjects").rank(ascending=False)
    print("\nrank of each pipeline per column (1 = best):")
    print(ranks.to_markdown())


if __name__ == "__main__":
    main()
