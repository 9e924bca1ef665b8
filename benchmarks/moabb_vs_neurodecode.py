"""``moabb.benchmark()`` vs ``neurodecode benchmark``: same pipelines, same data, same seeds.

Both run MOABB's WithinSession evaluation (LeftRightImagery, ``random_state=42``) of the same
pipeline files on the staged eegmmidb subjects, offline, in this process, first single-process
then with 2 joblib workers. MOABB reports one score per subject and session (the mean of its 5
folds); neurodecode stores each fold, so its fold scores are averaged the same way before the
comparison; MOABB's result store (HDF5) keeps scores as float32, so they are compared at that
precision as well (the float64 differences are float32 rounding, below 1e-7). Printed: per pipeline
and subject, both scores and their difference; then the
wall times and their ratio (neurodecode / MOABB).

``moabb.benchmark()`` takes dataset *codes* and builds the paradigm's default datasets (109
PhysioNet subjects, downloaded on demand); here the paradigm's dataset list is patched to the
offline, 20-subject ``physionet_mi_offline()`` restricted to the chosen subjects.

Each measured setting is appended to ``<out>/moabb_vs_neurodecode.jsonl``; a rerun skips
settings already there (delete the file to measure again).

    OPENBLAS_NUM_THREADS=1 NEURODECODE_DATA=../shared/data .venv/bin/python benchmarks/moabb_vs_neurodecode.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pandas as pd  # noqa: E402

from neurodecode.data.datasets.eegmmidb import moabb_offline_env, physionet_mi_offline  # noqa: E402
from neurodecode.benchmark.planner import offline_moabb  # noqa: E402
from neurodecode.benchmark.runner import BenchmarkConfig, run_benchmark, session_scores  # noqa: E402
from neurodecode.contract.pipeline_files import load_pipelines  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def parse_subjects(text: str) -> list:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def run_moabb(pipeline_files, names, subjects, n_jobs, scratch) -> tuple[pd.DataFrame, float]:
    """``moabb.benchmark()`` on the offline eegmmidb subjects; returns its results and wall time."""
    import moabb
    from moabb.paradigms import LeftRightImagery

    specs, _ = load_pipelines(pipeline_files)
    configs = [{"name": s.name, "paradigms": s.paradigms, "pipeline": s.pipeline}
               | ({"param_grid": s.param_grid} if s.param_grid else {}) for s in specs if s.name in names]
    with offline_moabb(scratch), moabb_offline_env():
        dataset = physionet_mi_offline()
        dataset.subject_list = list(subjects)
        with mock.patch.object(LeftRightImagery, "datasets", new_callable=mock.PropertyMock,
                               return_value=[dataset]), contextlib.redirect_stdout(io.StringIO()):
            t0 = time.perf_counter()
            results = moabb.benchmark(pipelines=configs, evaluations=["WithinSession"],
                                      paradigms=["LeftRightImagery"], include_datasets=[dataset.code],
                                      results=str(Path(scratch) / "moabb_results"),
                                      output=str(Path(scratch) / "moabb_output"), n_jobs=n_jobs, overwrite=True)
            seconds = time.perf_counter() - t0
    return results, seconds


def run_ours(pipeline_files, names, subjects, n_jobs, scratch) -> tuple[pd.DataFrame, float]:
    config = BenchmarkConfig(pipelines_dir=str(pipeline_files), pipelines=list(names), subjects=list(subjects),
                             out=str(Path(scratch) / "neurodecode"), n_jobs=n_jobs)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        results = run_benchmark(config, progress=False)
    return results, time.perf_counter() - t0


def compare(moabb_results: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    theirs = moabb_results.assign(subject=moabb_results["subject"].astype(int),
                                  session=moabb_results["session"].astype(str))
    theirs = theirs.set_index(["pipeline", "subject", "session"])["score"].rename("moabb")
    mine = session_scores(ours).set_index(["pipeline", "subject", "session"])
    table = pd.concat([theirs, mine["score"].rename("neurodecode"), mine["n_folds"]], axis=1)
    table["difference"] = table["neurodecode"] - table["moabb"]
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines-dir", default=str(REPO / "pipelines"))
    parser.add_argument("--pipelines", nargs="+", default=["BandPower+LDA", "ACM(selected)+TS+SVM"])
    parser.add_argument("--subjects", default="1-3")
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    subjects = parse_subjects(args.subjects)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "moabb_vs_neurodecode.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []

    for n_jobs in args.n_jobs:
        setting = {"pipelines": sorted(args.pipelines), "subjects": subjects, "n_jobs": n_jobs}
        if any({k: r[k] for k in setting} == setting for r in done):
            print(f"n_jobs={n_jobs}: already measured in {log}, skipped")
            continue
        with tempfile.TemporaryDirectory() as scratch:
            theirs, t_moabb = run_moabb(args.pipelines_dir, args.pipelines, subjects, n_jobs, scratch)
            ours, t_ours = run_ours(args.pipelines_dir, args.pipelines, subjects, n_jobs, scratch)
        table = compare(theirs, ours)
        record = {**setting, "moabb_s": t_moabb, "neurodecode_s": t_ours, "ratio": t_ours / t_moabb,
                  "n_scores": int(table["moabb"].notna().sum()), "n_fold_rows": len(ours),
                  "identical": int((table["difference"] == 0).sum()),
                  "max_abs_difference": float(table["difference"].abs().max()),
                  "rows": table.reset_index().to_dict("records")}
        with open(log, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        done.append(record)

    for record in done:
        table = pd.DataFrame(record["rows"]).set_index(["pipeline", "subject", "session"])
        print(f"\nn_jobs={record['n_jobs']}, subjects {record['subjects']}: per subject/session score "
              f"(neurodecode = mean of its {int(table['n_folds'].iloc[0])} stored folds)")
        print(table.round(6).to_string())
        # MOABB keeps scores in its HDF5 store as float32: compare at that precision too.
        same32 = int((table["moabb"].astype("float32") == table["neurodecode"].astype("float32")).sum())
        print(f"identical as float32: {same32}/{record['n_scores']}; as float64: {record['identical']}/"
              f"{record['n_scores']}, max |difference| "
              f"{record['max_abs_difference']:.2e}; wall time moabb {record['moabb_s']:.1f} s, "
              f"neurodecode {record['neurodecode_s']:.1f} s, ratio neurodecode/moabb {record['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
