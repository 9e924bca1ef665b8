"""Augmented covariance with fast (order, lag) selection vs MOABB's grid and the classical pipelines.

eegmmidb left vs right hand imagery (the 20 staged subjects, trials equal to MOABB's
LeftRightImagery on PhysionetMI), within-session 5-fold CV with the folds MOABB's
``WithinSessionEvaluation(random_state=42)`` uses (its own ``WithinSessionSplitter``), ROC-AUC.
Every pipeline runs in this one process on the same folds:

* ``ACM-select``: ``AugmentedCovarianceSelector`` (OAS, orders 1..10 x lags 1..10 minus oversized
  candidates, beam search over orders, 3 inner folds) + tangent space (log-Euclidean mean as
  reference, Riemannian log map) + linear SVC; ``ACM-select-1se`` the same with the one-standard-
  error rule (a larger order must beat the smaller ones by more than the inner-CV noise);
* ``ACM(p,l)``: the same with a fixed pair, for every candidate pair of the hindsight set; the
  best pair by mean AUC over subjects, chosen after the fact, is the upper bound;
* ``FgMDM``, ``TS+SVC``, ``TS+LR`` (all on OAS covariances) and MOABB's ``CSP+LDA``;
* MOABB's ACM grid (``AugmentedDataset`` + ``Covariances("cov")`` + ``TangentSpace`` + ``SVC``,
  order 1..10 x lag 1..10 x C {0.5, 1, 1.5} x kernel {rbf, linear}, 3 inner folds, as in MOABB's
  ``AUG_TANG_SVM_grid.yml``): too slow to run, so candidates are timed one by one, round-robin
  over orders, on successive (subject, fold) pairs until ``--grid-minutes`` run out, and the full
  grid's time per outer fold is extrapolated from the mean time per order.

Results go to ``--out`` as JSON lines, one per (subject, pipeline, fold) or timed grid
candidate, as soon as each exists; a rerun skips what is there. Run with one BLAS thread::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NEURODECODE_DATA=/path/to/data \\
        python benchmarks/acm.py [--subjects 1 2 ...] [--grid-minutes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from moabb.evaluations.splitters import WithinSessionSplitter  # noqa: E402
from moabb.pipelines.features import AugmentedDataset  # noqa: E402
from pyriemann.classification import FgMDM  # noqa: E402
from pyriemann.estimation import Covariances  # noqa: E402
from pyriemann.spatialfilters import CSP  # noqa: E402
from pyriemann.tangentspace import TangentSpace  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import get_scorer  # noqa: E402
from sklearn.model_selection import ParameterGrid, StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from neurodecode.data.datasets.eegmmidb import load_eegmmidb, present_subjects  # noqa: E402
from neurodecode.transforms.augmented import AugmentedCovariance, AugmentedCovarianceSelector  # noqa: E402

torch.set_num_threads(1)

RANDOM_STATE = 42
GRID = {"augmenteddataset__order": list(range(1, 11)), "augmenteddataset__lag": list(range(1, 11)),
        "svc__C": [0.5, 1, 1.5], "svc__kernel": ["rbf", "linear"]}
REFERENCE = "TS+SVC"
# Augmented matrices are up to 3x larger than 64 x 64: the log-Euclidean mean as reference point
# costs two eigendecompositions per matrix instead of the Karcher mean's ~10 iterations.
ACM_TANGENT = {"mean": "logeuclid", "map": "riemann"}


def classical_pipelines() -> dict:
    return {
        "ACM-select": make_pipeline(AugmentedCovarianceSelector(rule="best"),
                                    TangentSpace(metric=ACM_TANGENT), SVC(kernel="linear")),
        "ACM-select-1se": make_pipeline(AugmentedCovarianceSelector(rule="one_se"),
                                        TangentSpace(metric=ACM_TANGENT), SVC(kernel="linear")),
        "FgMDM": make_pipeline(Covariances("oas"), FgMDM()),
        "TS+SVC": make_pipeline(Covariances("oas"), TangentSpace(), SVC(kernel="linear")),
        "TS+LR": make_pipeline(Covariances("oas"), TangentSpace(), LogisticRegression()),
        "CSP+LDA": make_pipeline(Covariances("oas"), CSP(nfilter=6), LinearDiscriminantAnalysis(solver="svd")),
    }


def fixed_pair_pipeline(order: int, lag: int) -> Pipeline:
    return make_pipeline(AugmentedCovariance(order, lag, "oas"), TangentSpace(metric=ACM_TANGENT),
                         SVC(kernel="linear"))


def moabb_grid_pipeline() -> Pipeline:
    return make_pipeline(AugmentedDataset(), Covariances("cov"), TangentSpace(metric="riemann"), SVC(kernel="rbf"))


class Results:
    """JSON lines under ``out``, keyed so that a rerun skips what is written."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []
        self.keys = {self.key(r) for r in self.rows}

    @staticmethod
    def key(row) -> tuple:
        return row["kind"], row["subject"], row["fold"], row["pipeline"]

    def __contains__(self, key) -> bool:
        return key in self.keys

    def add(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")  # one write per line: a killed run leaves whole lines
        self.rows.append(row)
        self.keys.add(self.key(row))


def subject_folds(data, subject):
    """MOABB's within-session folds for one subject: ``WithinSessionSplitter`` as its evaluation builds it."""
    mask = (data.metadata["subject"] == subject).to_numpy()
    meta = data.metadata[mask].reset_index(drop=True)
    X, y = data.X[mask], np.asarray(data.y)[mask]
    splitter = WithinSessionSplitter(n_folds=5, shuffle=True, random_state=RANDOM_STATE)
    return X, y, list(splitter.split(y, meta))


def run_fold(pipe, X, y, train, test) -> dict:
    start = time.perf_counter()
    pipe.fit(X[train], y[train])
    fit_time = time.perf_counter() - start
    start = time.perf_counter()
    auc = get_scorer("roc_auc")(pipe, X[test], y[test])
    return {"auc": float(auc), "fit_time": fit_time, "predict_time": time.perf_counter() - start}


def run_pipelines(data, subjects, pairs, results: Results) -> None:
    pipelines = classical_pipelines()
    pipelines.update({f"ACM({o},{lag})": fixed_pair_pipeline(o, lag) for o, lag in pairs})
    for subject in subjects:
        X, y, folds = subject_folds(data, subject)
        for fold, (train, test) in enumerate(folds):
            for name, template in pipelines.items():
                if ("fold", subject, fold, name) in results:
                    continue
                pipe = clone(template)
                row = {"kind": "fold", "subject": int(subject), "fold": fold, "pipeline": name,
                       **run_fold(pipe, X, y, train, test)}
                if name.startswith("ACM-select"):
                    selector = pipe[0]
                    row.update(order=int(selector.order_), lag=int(selector.lag_),
                               selection_time=float(selector.cv_results_["score_time"].sum()))
                results.add(row)
                print(f"subject {subject} fold {fold} {name:12s} AUC {row['auc']:.3f} fit {row['fit_time']:.2f} s",
                      flush=True)


def time_grid(data, subjects, minutes: float, results: Results) -> None:
    """Time MOABB's grid candidates, round-robin over orders, one (subject, fold) per round."""
    candidates = list(ParameterGrid(GRID))
    rng = np.random.default_rng(RANDOM_STATE)
    by_order = {o: [c for c in candidates if c["augmenteddataset__order"] == o]
                for o in GRID["augmenteddataset__order"]}
    for o in by_order:
        rng.shuffle(by_order[o])
    done = sum(r["seconds"] for r in results.rows if r["kind"] == "grid")
    deadline = time.perf_counter() + minutes * 60 - done
    inner = StratifiedKFold(3, shuffle=True, random_state=RANDOM_STATE)
    scorer = get_scorer("roc_auc")
    pairs = [(s, f) for s in subjects for f in range(5)]
    for round_, (subject, fold) in enumerate(pairs):
        X, y, folds = subject_folds(data, subject)
        train = folds[fold][0]
        for order, pool in by_order.items():
            params = pool[round_ % len(pool)]
            name = json.dumps(params, sort_keys=True)
            if ("grid", subject, fold, name) in results:
                continue
            if time.perf_counter() > deadline:
                return
            start, scores, error = time.perf_counter(), [], None
            for tr, va in inner.split(X[train], y[train]):
                pipe = moabb_grid_pipeline().set_params(**params)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        pipe.fit(X[train][tr], y[train][tr])
                    scores.append(scorer(pipe, X[train][va], y[train][va]))
                except Exception as exc:  # noqa: BLE001 (GridSearchCV's error_score=nan does the same)
                    error = f"{type(exc).__name__}: {exc}"[:200]
                    scores.append(float("nan"))
            seconds = time.perf_counter() - start
            results.add({"kind": "grid", "subject": int(subject), "fold": fold, "pipeline": name, "order": order,
                         "seconds": seconds, "inner_auc": float(np.mean(scores)), "error": error})
            print(f"grid subject {subject} fold {fold} order {order} {params} {seconds:.1f} s"
                  + (f" FAILED {error[:60]}" if error else ""), flush=True)


def report(results: Results, subjects) -> str:
    folds = pd.DataFrame([r for r in results.rows if r["kind"] == "fold" and r["subject"] in subjects])
    lines = []
    per_subject = folds.groupby(["pipeline", "subject"]).auc.mean().unstack()
    complete = per_subject.dropna()
    n_sub = complete.shape[1]
    fixed = [p for p in complete.index if p.startswith("ACM(")]
    best_fixed = complete.loc[fixed].mean(axis=1).idxmax() if fixed else None
    ref_time = folds[folds.pipeline == REFERENCE].fit_time.mean()
    rows = ["ACM-select", "ACM-select-1se", "FgMDM", "TS+SVC", "TS+LR", "CSP+LDA"]
    rows += [best_fixed] if best_fixed else []
    lines.append(f"eegmmidb left/right, {n_sub} subjects x 5 MOABB folds, ROC-AUC mean +- std over subjects "
                 "(population std, ddof=0)")
    lines.append(f"| pipeline | AUC | fit time per fold (s) | time / {REFERENCE} |")
    lines.append("|---|---|---|---|")
    for name in rows:
        if name not in complete.index:
            continue
        auc = complete.loc[name]
        t = folds[folds.pipeline == name].fit_time.mean()
        label = f"{name} (best fixed pair in hindsight)" if name == best_fixed else name
        lines.append(f"| {label} | {auc.mean():.3f} +- {auc.std(ddof=0):.3f} | {t:.2f} | {t / ref_time:.1f}x |")
    grid = pd.DataFrame([r for r in results.rows if r["kind"] == "grid"])
    if len(grid):
        per_order = grid.groupby("order").seconds.mean()
        n_per_order = len(ParameterGrid(GRID)) // len(GRID["augmenteddataset__order"])
        known = per_order.reindex(GRID["augmenteddataset__order"])
        # Orders never timed are given the largest per-candidate time measured: a lower bound.
        full = float((known.fillna(per_order.max()) * n_per_order).sum())
        failed = grid.groupby("order").error.apply(lambda e: int(e.notna().sum()))
        lines.append(f"| MOABB ACM grid (extrapolated from {len(grid)} timed candidates) | not run | "
                     f"{full:.0f} (extrapolation) | {full / ref_time:.0f}x |")
        lines.append("")
        lines.append("MOABB grid, seconds per candidate (3 inner folds), by order: "
                     + ", ".join(f"{o}: {s:.1f} ({failed[o]}/{int((grid.order == o).sum())} failed)"
                                 for o, s in per_order.items()))
    for name in ("ACM-select", "ACM-select-1se"):
        sel = folds[folds.pipeline == name]
        if len(sel) and "order" in sel:
            chosen = sel.groupby(["order", "lag"]).size().sort_values(ascending=False)
            lines.append(f"{name} choices (order, lag): count over folds: "
                         + ", ".join(f"({int(o)},{int(lag)}): {n}" for (o, lag), n in chosen.items())
                         + f"; selection time {sel.selection_time.mean():.2f} s per fold")
    if fixed:
        top = complete.loc[fixed].mean(axis=1).sort_values(ascending=False).head(5)
        lines.append("Best fixed pairs (hindsight): " + ", ".join(f"{p} {v:.3f}" for p, v in top.items()))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=None,
                        help="default: every subject present")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "acm")
    parser.add_argument("--grid-minutes", type=float, default=20.0)
    parser.add_argument("--hindsight-orders", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--hindsight-lags", type=int, nargs="*", default=list(range(1, 11)))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    results = Results(args.out / "results.jsonl")
    if args.subjects is None:
        args.subjects = list(present_subjects("left_right"))
    if not args.report_only:
        data = load_eegmmidb(args.subjects, progress=False)
        pairs = [(1, 1)] + [(o, lag) for o in args.hindsight_orders if o > 1 for lag in args.hindsight_lags]
        time_grid(data, args.subjects, args.grid_minutes, results)
        run_pipelines(data, args.subjects, pairs, results)
    print(report(results, args.subjects))


if __name__ == "__main__":
    main()
