"""FgMDM: neurodecode's batched core vs pyRiemann, and ACM + FgMDM vs FgMDM vs ACM + TS + SVM.

eegmmidb left vs right hand imagery (the staged subjects, 20 by default), within-session 5-fold
CV with the folds MOABB's ``WithinSessionEvaluation(random_state=42)`` uses (its own
``WithinSessionSplitter``, as ``benchmarks/acm.py`` builds them), ROC-AUC. In one process, on the
same folds:

* ``FgMDM pyRiemann``: ``pyriemann.estimation.Covariances("oas")`` + ``pyriemann.classification.FgMDM()``;
* ``FgMDM neurodecode``: ``neurodecode.transforms.Covariances("oas")`` + ``neurodecode.models.riemann.FgMDM()``
  on the CPU; its fold AUCs are compared with pyRiemann's (identical, or the largest difference), and
  the wall time (fit + scoring, summed over folds) gives the ratio;
* ``ACM+FgMDM`` and ``ACM+TS+SVM``: the pipeline files ``pipelines/ACM_FGMDM.yml`` and
  ``pipelines/ACM_TS_SVM.yml`` as ``neurodecode benchmark`` loads them.

Results go to ``--out`` as JSON lines, one per (subject, pipeline, fold), written as soon as each
exists; a rerun skips what is there. Run with one BLAS thread::

    OPENBLAS_NUM_THREADS=1 NEURODECODE_DATA=../shared/data python benchmarks/fgmdm.py \\
        --out docs/measured/fgmdm_cpu
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from acm import Results, run_fold, subject_folds  # noqa: E402  (sets one BLAS and torch thread)
from sklearn.base import clone  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from neurodecode.contract.pipeline_files import load_pipelines  # noqa: E402
from neurodecode.data.datasets.eegmmidb import load_eegmmidb, present_subjects  # noqa: E402
from neurodecode.models.riemann import FgMDM  # noqa: E402
from neurodecode.transforms.covariance import Covariances  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ANCHOR, OURS = "FgMDM pyRiemann", "FgMDM neurodecode"


def pipelines() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyriemann.classification import FgMDM as PyRiemannFgMDM
        from pyriemann.estimation import Covariances as PyRiemannCovariances
    out = {ANCHOR: make_pipeline(PyRiemannCovariances("oas"), PyRiemannFgMDM()),
           OURS: make_pipeline(Covariances("oas"), FgMDM())}
    for name, label in (("ACM_FGMDM.yml", "ACM+FgMDM"), ("ACM_TS_SVM.yml", "ACM+TS+SVM")):
        (spec,), failures = load_pipelines(REPO / "pipelines" / name)
        if failures:
            raise SystemExit(f"could not load pipelines/{name}: {failures}")
        out[label] = spec.pipeline
    return out


def run(data, subjects, results: Results) -> None:
    templates = pipelines()
    for subject in subjects:
        X, y, folds = subject_folds(data, subject)
        for fold, (train, test) in enumerate(folds):
            for name, template in templates.items():
                if ("fold", subject, fold, name) in results:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row = run_fold(clone(template), X, y, train, test)
                results.add({"kind": "fold", "subject": int(subject), "fold": fold, "pipeline": name, **row})
                print(f"subject {subject} fold {fold} {name:18s} AUC {row['auc']:.6f} "
                      f"fit {row['fit_time']:.2f} s", flush=True)


def report(results: Results, subjects) -> str:
    folds = pd.DataFrame([r for r in results.rows if r["kind"] == "fold" and r["subject"] in subjects])
    folds["seconds"] = folds.fit_time + folds.predict_time
    lines = []
    per_subject = folds.groupby(["pipeline", "subject"]).auc.mean().unstack()
    complete = per_subject.dropna(axis=1)
    lines.append(f"eegmmidb left/right, {complete.shape[1]} subjects x 5 MOABB within-session folds, ROC-AUC mean "
                 "+- std over subjects (population std)")
    lines.append("| pipeline | AUC | wall time, all folds (s) | per fold (s) |")
    lines.append("|---|---|---|---|")
    for name in (ANCHOR, OURS, "ACM+FgMDM", "ACM+TS+SVM"):
        if name not in complete.index:
            continue
        auc = complete.loc[name]
        t = folds[(folds.pipeline == name) & folds.subject.isin(complete.columns)].seconds
        lines.append(f"| {name} | {auc.mean():.3f} +- {auc.std(ddof=0):.3f} | {t.sum():.1f} | {t.mean():.2f} |")
    pair = folds[folds.pipeline.isin([ANCHOR, OURS])].pivot_table(index=["subject", "fold"], columns="pipeline",
                                                                   values=["auc", "seconds"])
    pair = pair.dropna()
    if len(pair):
        diff = (pair["auc"][OURS] - pair["auc"][ANCHOR]).abs()
        theirs, ours = pair["seconds"][ANCHOR].sum(), pair["seconds"][OURS].sum()
        lines.append("")
        lines.append(f"FgMDM, neurodecode vs pyRiemann over {len(pair)} folds: identical AUC in "
                     f"{int((diff == 0).sum())}/{len(pair)}, largest |difference| {diff.max():.2e}; wall time "
                     f"pyRiemann {theirs:.1f} s, neurodecode {ours:.1f} s, ratio {theirs / ours:.1f}x (goal >= 5x)")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=None, help="default: every subject present")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fgmdm")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    results = Results(args.out / "results.jsonl")
    if args.subjects is None:
        args.subjects = list(present_subjects("left_right"))
    if not args.report_only:
        start = time.perf_counter()
        data = load_eegmmidb(args.subjects, progress=False)
        print(f"loaded {len(np.asarray(data.y))} trials in {time.perf_counter() - start:.0f} s", flush=True)
        run(data, args.subjects, results)
    text = report(results, args.subjects)
    print(text)
    (args.out / "report.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
