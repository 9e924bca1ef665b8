"""ABIDE connectomes: autism vs control accuracy, the site confound, and time against nilearn.

The 100 staged ABIDE I subjects (PITT 56, OLIN 34, OHSU 10; 116 AAL ROIs), one connectome per
subject (``Connectome``, Ledoit-Wolf, nilearn's vectorisation) of three kinds: correlation,
partial correlation, tangent. The connectome is fitted inside each training fold (the tangent
reference is the training subjects' mean), then two linear classifiers with a fixed C:
``LinearSVC(C=1)`` on the raw features (nilearn's own example) and ``StandardScaler`` +
``LogisticRegression(C=1)``. Evaluations, each next to a majority-class ``DummyClassifier`` on
the same folds:

* ``all/10fold``: stratified 10-fold on all 100 subjects; ``all/loso``: leave one site out;
* ``no_ohsu/10fold`` and ``no_ohsu/loso``: the same without OHSU (its 10 subjects are all autism,
  so site alone predicts part of the diagnosis);
* ``site/10fold``: predicting the *site* from connectivity (stratified by site), the confound.

On the ``all/10fold`` folds, nilearn's ``ConnectivityMeasure`` runs side by side on the same
subjects: the fit on the training fold + transform of the test fold is timed for both, the
features are compared, and the classifiers are scored on nilearn's features too. A last timing is
``fit_transform`` on all 100 subjects. Results go to ``--out`` as JSON lines (``folds.jsonl``,
``timing.jsonl``) as soon as each exists, a rerun skips what is there, and the summary table is
written to ``summary.md``. Run with one BLAS thread::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NEURODECODE_DATA=/path/to/data \\
        python benchmarks/abide_connectomes.py [--out benchmarks/results/abide]
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
from nilearn.connectome import ConnectivityMeasure  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.dummy import DummyClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

from neurodecode.data.datasets.abide import load_abide  # noqa: E402
from neurodecode.transforms.connectivity_fmri import Connectome  # noqa: E402

torch.set_num_threads(1)

RANDOM_STATE = 0
KINDS = ("correlation", "partial correlation", "tangent")
CLASSIFIERS = {
    "LinearSVC": LinearSVC(C=1.0, max_iter=20000),
    "scaler+LR": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)),
}


def evaluations(data) -> dict:
    """Name -> (subject indices, target, list of (train, test) folds as indices into the subset)."""
    site = data.metadata["site"].to_numpy()
    everyone = np.arange(len(site))
    no_ohsu = np.nonzero(site != "OHSU")[0]
    ten = StratifiedKFold(10, shuffle=True, random_state=RANDOM_STATE)
    out = {}
    for name, index in (("all", everyone), ("no_ohsu", no_ohsu)):
        y = data.y[index]
        out[f"{name}/10fold"] = (index, y, list(ten.split(index, y)))
        out[f"{name}/loso"] = (index, y, list(LeaveOneGroupOut().split(index, y, site[index])))
    out["site/10fold"] = (everyone, site, list(ten.split(everyone, site)))
    return out


def done_keys(path: Path) -> set:
    if not path.exists():
        return set()
    return {json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()}


def append(path: Path, record: dict) -> None:
    with path.open("a") as handle:  # one write per line: an interrupted run leaves whole lines
        handle.write(json.dumps(record) + "\n")


def nilearn_features(kind, train, test):
    measure = ConnectivityMeasure(kind=kind, vectorize=True)
    return measure.fit_transform([s.T for s in train]), measure.transform([s.T for s in test])


def ours_features(kind, train, test):
    model = Connectome(kind=kind)
    return model.fit_transform(train), model.transform(test)


def timed(fn, *args):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn's "max iterations reached" would flood the log
        result = fn(*args)
    return result, time.perf_counter() - start


def score(clf, F_train, y_train, F_test, y_test) -> dict:
    model = clone(clf).fit(F_train, y_train)
    return {"accuracy": float((model.predict(F_test) == y_test).mean()), "n_test": int(len(y_test))}


def run_folds(data, out: Path) -> None:
    path = out / "folds.jsonl"
    done = done_keys(path)
    site = data.metadata["site"].to_numpy()
    for name, (index, y, folds) in evaluations(data).items():
        X = data.X[index]
        for fold, (train, test) in enumerate(folds):
            test_site = "+".join(sorted(set(site[index[test]])))
            key = f"{name}|{fold}|dummy"
            if key not in done:
                append(path, {"key": key, "evaluation": name, "fold": fold, "kind": "-", "features": "-",
                              "classifier": "majority", "test_site": test_site,
                              **score(DummyClassifier(strategy="most_frequent"), np.zeros((len(train), 1)),
                                      y[train], np.zeros((len(test), 1)), y[test])})
            for kind in KINDS:
                sources = ["ours", "nilearn"] if name == "all/10fold" else ["ours"]
                if all(f"{name}|{fold}|{kind}|{src}|{c}" in done for src in sources for c in CLASSIFIERS):
                    continue
                features, seconds = {}, {}
                for src, fn in (("ours", ours_features), ("nilearn", nilearn_features)):
                    if src in sources:
                        features[src], seconds[src] = timed(fn, kind, list(X[train]), list(X[test]))
                extra = {}
                if "nilearn" in features:
                    diff = max(float(np.abs(a - b).max()) for a, b in zip(features["ours"], features["nilearn"]))
                    extra = {"seconds_ours": seconds["ours"], "seconds_nilearn": seconds["nilearn"],
                             "max_abs_diff": diff}
                for src in sources:
                    F_train, F_test = features[src]
                    for clf_name, clf in CLASSIFIERS.items():
                        key = f"{name}|{fold}|{kind}|{src}|{clf_name}"
                        if key in done:
                            continue
                        record = {"key": key, "evaluation": name, "fold": fold, "kind": kind, "features": src,
                                  "classifier": clf_name, "test_site": test_site,
                                  **score(clf, F_train, y[train], F_test, y[test]), **extra}
                        append(path, record)
                        print(f"{name:15s} fold {fold} {kind:20s} {src:8s} {clf_name:10s} "
                              f"acc {record['accuracy']:.3f}", flush=True)


def run_full_timing(data, out: Path, repeats: int) -> None:
    path = out / "timing.jsonl"
    done = done_keys(path)
    subjects = list(data.X)
    for kind in KINDS:
        key = f"fit_transform_100|{kind}"
        if key in done:
            continue
        rows = {}
        for src, make in (("ours", lambda kind=kind: Connectome(kind=kind)),
                          ("nilearn", lambda kind=kind: ConnectivityMeasure(kind=kind, vectorize=True))):
            inputs = subjects if src == "ours" else [s.T for s in subjects]
            rows[src] = min(timed(make().fit_transform, inputs)[1] for _ in range(repeats))
        record = {"key": key, "kind": kind, "n_subjects": len(subjects), "repeats": repeats,
                  "seconds_ours": rows["ours"], "seconds_nilearn": rows["nilearn"],
                  "speedup": rows["nilearn"] / rows["ours"]}
        append(path, record)
        print(f"fit_transform on 100 subjects, {kind:20s}: ours {rows['ours']:.3f} s, nilearn "
              f"{rows['nilearn']:.3f} s, nilearn/ours {record['speedup']:.2f}x", flush=True)


def summarise(out: Path) -> str:
    folds = pd.DataFrame([json.loads(line) for line in (out / "folds.jsonl").read_text().splitlines()])
    lines = ["| evaluation | kind | features | classifier | accuracy (mean ± std over folds) | pooled accuracy |",
             "|---|---|---|---|---|---|"]
    for (evaluation, kind, src, clf), group in folds.groupby(["evaluation", "kind", "features", "classifier"],
                                                            sort=False):
        pooled = (group["accuracy"] * group["n_test"]).sum() / group["n_test"].sum()
        lines.append(f"| {evaluation} | {kind} | {src} | {clf} | {group['accuracy'].mean():.3f} ± "
                     f"{group['accuracy'].std(ddof=0):.3f} | {pooled:.3f} |")
    loso = folds[folds["evaluation"].str.endswith("loso")]
    lines += ["", "Leave-one-site-out, accuracy on each held-out site:", "",
              "| evaluation | kind | features | classifier | " + " | ".join(sorted(loso["test_site"].unique())) + " |",
              "|---|---|---|---|" + "---|" * loso["test_site"].nunique()]
    for (evaluation, kind, src, clf), group in loso.groupby(["evaluation", "kind", "features", "classifier"],
                                                           sort=False):
        by_site = group.set_index("test_site")["accuracy"]
        cells = [f"{by_site[s]:.3f}" if s in by_site else "" for s in sorted(loso["test_site"].unique())]
        lines.append(f"| {evaluation} | {kind} | {src} | {clf} | " + " | ".join(cells) + " |")
    timed_folds = folds[folds["evaluation"] == "all/10fold"].dropna(subset=["seconds_ours"])
    timed_folds = timed_folds.drop_duplicates(["fold", "kind"])
    lines += ["", "Time per all/10fold fold (fit on 90 + transform 10 subjects), one BLAS thread:", "",
              "| kind | ours (s, mean) | nilearn (s, mean) | nilearn / ours | max abs feature difference |",
              "|---|---|---|---|---|"]
    for kind, group in timed_folds.groupby("kind", sort=False):
        ours, theirs = group["seconds_ours"].mean(), group["seconds_nilearn"].mean()
        lines.append(f"| {kind} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f} | "
                     f"{group['max_abs_diff'].max():.2g} |")
    timing_path = out / "timing.jsonl"
    if timing_path.exists():
        lines += ["", "fit_transform on all 100 subjects (best of the repeats), one BLAS thread:", "",
                  "| kind | ours (s) | nilearn (s) | nilearn / ours |", "|---|---|---|---|"]
        for line in timing_path.read_text().splitlines():
            r = json.loads(line)
            lines.append(f"| {r['kind']} | {r['seconds_ours']:.3f} | {r['seconds_nilearn']:.3f} | "
                         f"{r['speedup']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "abide")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the 100-subject timing (best kept)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_abide()
    print(f"ABIDE: {len(data.y)} subjects, sites {data.metadata['site'].value_counts().to_dict()}, "
          f"autism {int(data.y.sum())}; BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    run_full_timing(data, args.out, args.repeats)
    run_folds(data, args.out)
    summary = summarise(args.out)
    (args.out / "summary.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
