"""Benchmark runs: every pipeline of a folder on offline datasets, fold by fold, resumable.

What MOABB's ``benchmark()`` does, with three differences that matter on long runs:

* **Fold granularity.** MOABB 1.7.2 splits a dataset with its evaluation's splitter
  (``_create_splitter``), builds one task per (pipeline, fold) (``_build_task_list``) and scores
  each with one pure function, ``moabb.evaluations.base._evaluate_fold``, before averaging the
  folds of a session. Here the same splitter, task list and function are used (same seed,
  ``random_state=42``), but each fold's row is written to the :class:`ResultStore` the moment
  it finishes; the mean of a session's fold scores equals MOABB's score for that session.
* **Resume and failures.** Finished folds are skipped on a rerun. Rows are keyed by what
  computed them too (a hash of the pipeline's parameters, the package version, the data
  fingerprint), so an edited pipeline is recomputed, never mixed with its old rows. A pipeline
  file that fails to load, or a pipeline that raises, is reported, the others run on, and the
  run ends with a failure status.
* **Pipeline files are code.** A ``.py`` pipeline runs when loaded and a YAML pipeline imports
  and calls whatever its steps name, so only the files selected by name are loaded; names are
  read without executing anything (:func:`declared_names`).
* **Offline datasets.** Datasets are named by a spec (a package card, a card file, a BIDS folder,
  ``moabb:ClassName``) and read by neurodecode's loaders inside
  :func:`offline_moabb`, which points MNE/MOABB at the local data and at a private scratch
  folder, never at the network or at the shared data folder.

The ``"pseudo-online"`` evaluation plugs in
:func:`~neurodecode.evaluation.pseudo_online.pseudo_online_evaluate` (sliding windows of
held-out runs, idle included) for datasets that have continuous streams.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from .._utils.files import writable_folder
from ..contract.pipeline_files import declared_names, load_pipelines, on_device
from . import moabb_glue
from .folds import _guarded
from .planner import (ACROSS_SUBJECTS, CALIBRATION_MODES, DEFAULT_DATASET, EVALUATIONS, LEARNING_CURVE, _Planner,
                      _select_subjects, resolve_datasets)
from .results import ResultStore, calibration_of, row_key


# -- configuration ---------------------------------------------------------------------------

@dataclass
class BenchmarkConfig:
    """What a benchmark run does (written to the results folder as ``config.json``).

    Parameters
    ----------
    pipelines_dir : str
        Folder (or file) of pipelines.
    datasets : list of str
        Dataset specs: package dataset names, card files, BIDS folders or ``moabb:ClassName``
        (see :func:`neurodecode.data.registry.get_dataset`).
    subjects : list of int or None
        Subjects to run (None: the first :data:`DEFAULT_N_SUBJECTS` present, or every subject with ``full``).
    pipelines : list of str or None
        Pipeline names to run (None: every pipeline found).
    evaluation : str
        A key of :data:`EVALUATIONS`.
    out : str
        Results folder.
    n_jobs : int
        Folds evaluated in parallel (joblib; with a Dask scheduler, -1 means every worker).
    scheduler : str or None
        Dask scheduler address, ``"local"`` for a local cluster, or None (no Dask).
    full : bool
        The full study: every subject (unless ``subjects`` names some).
    device : str or None
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when torch sees it): set on every ``device``
        parameter of the pipelines (deep networks, the GPU geometry), so that their folds run
        there; part of the result key. None: each pipeline as its file says.
    calibration : str or None
        Cross-subject only: MOABB's ``cs_mode`` (a :data:`CALIBRATION_MODES` value, case ignored):
        how much of the held-out subject is routed to the pipelines as calibration, with or without
        labels. Part of the result key. None: ``"train"`` (no calibration) for cross-subject.
    """

    pipelines_dir: str = "pipelines"
    datasets: list = field(default_factory=lambda: [DEFAULT_DATASET])
    subjects: list | None = None
    pipelines: list | None = None
    evaluation: str = "within-session"
    out: str = "benchmarks/results/benchmark"
    n_jobs: int = 1
    scheduler: str | None = None
    full: bool = False
    device: str | None = None
    calibration: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# -- the run -------------------------------------------------------------------------------

def _first_line(message) -> str:
    return (str(message).strip().splitlines() or [""])[0]


def _describe(config, datasets, pipelines, subjects, failures, stream):
    how = f" (calibration {config.calibration.upper()})" if config.calibration else ""
    lines = [f"neurodecode benchmark: evaluation {config.evaluation}{how}, results in {config.out}",
             f"  pipelines from {config.pipelines_dir}:"]
    for ds in datasets:
        kind = moabb_glue.paradigm_name(ds.paradigm)
        lines.append(f"  dataset {ds.name} ({kind}: {', '.join(ds.paradigm.classes)}), subjects {subjects[ds.name]}")
        lines.append(f"    pipelines: {[p.name for p in pipelines[ds.name]] or 'none listing ' + kind}")
    if config.subjects is None and not config.full:
        lines.append("  default subjects: add --full for every subject, or --subjects 1-20")
    for failure in failures:
        lines.append(f"  FAILED to load pipeline file {failure['file']}: {failure['error']}")
    where = config.scheduler or ("this process" if config.n_jobs == 1 else f"{config.n_jobs} local processes")
    lines.append(f"  folds run on: {where}")
    print("\n".join(lines), file=stream, flush=True)


def _check_out(out: Path) -> None:
    """Refuse, in one line and before any work, a results folder that cannot be created or written."""
    try:
        writable_folder(out)
    except OSError as err:
        where = f": {err.filename}" if err.filename and str(err.filename) != str(out) else ""
        raise ValueError(f"--out {out}: cannot create or write the results folder "
                         f"({err.strerror or type(err).__name__}{where})") from None


def check_calibration(evaluation: str, calibration):
    """The calibration mode a run uses (None outside cross-subject), or ValueError for a wrong one.

    Returns
    -------
    mode : str or None
        A :data:`CALIBRATION_MODES` value for cross-subject (default ``"train"``), else None.
    """
    if calibration is None:
        return "train" if evaluation == "cross-subject" else None
    if evaluation != "cross-subject":
        raise ValueError(f"--calibration applies to --evaluation cross-subject only (MOABB's cs_mode), not to "
                         f"{evaluation}")
    mode = str(calibration).strip().lower()
    if mode not in CALIBRATION_MODES:
        raise ValueError(f"unknown calibration mode {calibration!r}; choose one of "
                         f"{', '.join(m.upper() for m in CALIBRATION_MODES)}")
    return mode


def _data_keys(ds, subjects, evaluation) -> dict:
    """The data fingerprint each subject's rows are keyed by ("" when the dataset has none).

    A subject's folds depend on its own recordings, except those of the evaluations that train on
    other subjects (cross-subject, transfer, learning-curve): those rows are keyed by every selected
    subject.
    """
    import inspect

    fingerprint = getattr(ds, "fingerprint", None)
    if fingerprint is None:
        return {s: "" for s in subjects}
    try:
        takes_subjects = bool(inspect.signature(fingerprint).parameters)
    except (TypeError, ValueError):
        takes_subjects = False
    if not takes_subjects:
        key = str(fingerprint())
        return {s: key for s in subjects}
    if evaluation in ACROSS_SUBJECTS:
        key = str(fingerprint(list(subjects)))
        return {s: key for s in subjects}
    return {s: str(fingerprint([s])) for s in subjects}


def run_benchmark(config: BenchmarkConfig, *, progress: bool = True, stream=None) -> pd.DataFrame:
    """Run a benchmark, appending each finished fold to ``config.out``; skip stored folds.

    Every row carries ``pipeline_hash`` (:func:`pipeline_hash`), ``neurodecode_version`` and
    ``data_key`` (the dataset's ``fingerprint()``, when it has one), which are part of its key:
    a stored fold is reused only if the same pipeline computed it on the same data with the same
    package version. Rows of other versions stay in the file, untouched and unused.

    Parameters
    ----------
    config : BenchmarkConfig
    progress : bool
        Show a tqdm bar over folds (on stderr), its total counted before the first fold.
    stream : file-like or None
        Where the configuration and the summary are printed (default: stdout).

    Returns
    -------
    results : DataFrame
        Every row stored in ``config.out`` for this run's evaluation, datasets, pipelines (their
        current version) and subjects, rows of earlier runs included, one per fold and session.
        ``attrs["failures"]`` lists the pipeline files that failed to load and the pipelines that
        failed (dicts with ``stage``, ``pipeline``, ``file``, ``subject``, ``error``).

    Raises
    ------
    ValueError
        A mistake in the configuration, found before any fold runs: an unknown evaluation,
        dataset or pipeline name, an unwritable ``out``, a line of ``results.jsonl`` that is
        not a result row, an evaluation the dataset cannot support, an unreachable scheduler.
    """
    import neurodecode

    from .results import content_key
    from .._utils.scaleout import joblib_backend

    stream = stream or sys.stdout
    if config.evaluation not in EVALUATIONS:
        raise ValueError(f"unknown evaluation {config.evaluation!r}; choose one of {list(EVALUATIONS)}")
    from dataclasses import replace

    config = replace(config, calibration=check_calibration(config.evaluation, config.calibration))
    out = Path(config.out)
    _check_out(out)
    store = ResultStore(out)
    stored_rows = store.rows()  # a foreign line in results.jsonl is reported now, not after hours of folds
    datasets = resolve_datasets(config.datasets)
    chosen, load_failures = load_pipelines(config.pipelines_dir, config.pipelines)
    chosen = on_device(chosen, config.device)
    pipelines = {ds.name: [p for p in chosen if moabb_glue.paradigm_name(ds.paradigm) in p.paradigms]
                 for ds in datasets}
    subjects = {ds.name: _select_subjects(ds, config.subjects, config.full) for ds in datasets}
    failures = [_load_failure(file, message) for file, message in load_failures]
    _describe(config, datasets, pipelines, subjects, failures, stream)

    version = str(neurodecode.__version__)
    data_keys = {ds.name: _data_keys(ds, subjects[ds.name], config.evaluation) for ds in datasets}
    hashes = {p.name: p.hash for p in chosen}
    current = {(ds.name, p.name, s): (p.hash, version, data_keys[ds.name][s])
               for ds in datasets for p in pipelines[ds.name] for s in subjects[ds.name]}

    if config.evaluation == "learning-curve":
        calibrations = {f"{n} per class" for n in LEARNING_CURVE["trials_per_class"]}
    else:
        calibrations = {config.calibration or ""}

    def is_current(row) -> bool:
        # A row of another calibration mode (or learning-curve point) is another result: never served here.
        return (str(row["evaluation"]) == config.evaluation and calibration_of(row) in calibrations
                and current.get((str(row["dataset"]), str(row["pipeline"]), int(row["subject"]))) == content_key(row))

    def stamped(row) -> dict:
        return {**row, "pipeline_hash": hashes[row["pipeline"]], "neurodecode_version": version,
                "data_key": data_keys[row["dataset"]][int(row["subject"])]}

    done = {row_key(r): r for r in stored_rows if is_current(r)}
    failed: dict[str, str] = {}
    failed_where: dict[str, int] = {}
    n_written = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="moabb-scratch-", dir=out) as scratch, \
            joblib_backend(config.scheduler) as n_jobs_default:
        planner = _Planner(config, datasets, pipelines, subjects, Path(scratch), done, failed)
        # Counted before any data are loaded, so the bar's total (and its ETA) is right from the first fold.
        total = planner.count()
        store.record_run({"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(),
                          "host": platform.node(), **config.to_dict(), "subjects_run": subjects,
                          "pipelines_run": {k: [p.name for p in v] for k, v in pipelines.items()},
                          "pipeline_files": {p.name: p.source for p in chosen}, "pipeline_hashes": hashes,
                          "neurodecode_version": version, "data_keys": data_keys, "folds_planned": total,
                          "pipeline_load_failures": load_failures})
        bar = tqdm(total=total, desc="folds", unit="fold", disable=not progress, file=sys.stderr)
        units = (u for u in planner if u.pipeline not in failed)
        n_jobs = config.n_jobs if config.scheduler is None else (n_jobs_default if config.n_jobs in (1, -1)
                                                                 else config.n_jobs)
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", pre_dispatch="2*n_jobs")
        calls = ((delayed(_tagged)(u.pipeline, u.subject, u.func, *u.args, **u.kwargs)) for u in units)
        for pipeline, subject, (status, payload) in parallel(calls):
            bar.update(1)
            if status == "ok":
                n_written += store.append([stamped(row) for row in payload])
            else:
                if pipeline not in failed:
                    failed[pipeline], failed_where[pipeline] = _first_line(payload), subject
                    tqdm.write(f"pipeline {pipeline!r} failed on subject {subject}: {failed[pipeline]}; "
                               "skipping its remaining folds", file=stream)
                store.append_error({"pipeline": pipeline, "subject": subject, "error": payload,
                                    "evaluation": config.evaluation, "pipeline_hash": hashes.get(pipeline),
                                    "time": time.time()})
        if not failed and planner.n_planned != total:
            # The count and the plan disagree (a dataset whose folds differ from its evaluation's
            # rule): end the bar at what really ran rather than short of, or past, 100 %.
            bar.total = planner.n_planned
            bar.refresh()
        bar.close()
    elapsed = time.perf_counter() - t0
    results = _select_rows(store.rows(), is_current)
    failures += [{"stage": "run", "pipeline": name, "file": next(p.source for p in chosen if p.name == name),
                  "subject": failed_where[name], "error": message} for name, message in failed.items()]
    print(f"{n_written} fold row(s) written, {planner.n_skipped} already stored (skipped), "
          f"{len(failed)} pipeline(s) failed, in {elapsed:.1f} s", file=stream, flush=True)
    for failure in failures:
        what = (f"pipeline file {failure['file']}" if failure["stage"] == "load"
                else f"{failure['pipeline']} (subject {failure['subject']})")
        print(f"  FAILED {what}: {failure['error']}", file=stream)
    if not results.empty:
        by = ["dataset", "pipeline"] + (["trials_per_class"] if "trials_per_class" in results.columns else [])
        summary = results.groupby(by)["score"].agg(["mean", "std", "count"])
        print(summary.round(3).to_string(), file=stream, flush=True)
    results.attrs.update({"failed": failed, "load_failures": load_failures, "failures": failures,
                          "written": n_written, "skipped": planner.n_skipped, "seconds": elapsed})
    return results


def _load_failure(file, message) -> dict:
    """A pipeline file that failed to load, as a row of the report's failure table."""
    try:
        names = ", ".join(declared_names(file))
    except ValueError:
        names = ""
    return {"stage": "load", "pipeline": names, "file": str(file), "subject": None, "error": _first_line(message)}


def _tagged(pipeline, subject, func, *args, **kwargs):
    return pipeline, subject, _guarded(func, *args, **kwargs)


def _select_rows(rows, keep) -> pd.DataFrame:
    """The rows ``keep`` accepts (this run's selection, current versions), as a sorted DataFrame."""
    frame = pd.DataFrame([r for r in rows if keep(r)])
    if frame.empty:
        return frame
    order = ["dataset", "pipeline", "subject", "session", "fold"]
    return frame.sort_values(order).reset_index(drop=True)


def session_scores(results: pd.DataFrame) -> pd.DataFrame:
    """Fold rows averaged per (dataset, pipeline, subject, session), as MOABB reports them.

    For within-session results this is MOABB's score: the mean of the session's folds.
    """
    cols = ["evaluation", "dataset", "pipeline", "subject", "session"]
    ordered = results.sort_values(cols + ["fold"])
    return ordered.groupby(cols, sort=True).agg(score=("score", "mean"), fit_time=("fit_time", "mean"),
                                                n_folds=("fold", "count")).reset_index()


def load_results(out) -> pd.DataFrame:
    """Every result row stored in a results folder."""
    return ResultStore(out).to_frame()


__all__ = ["BenchmarkConfig", "load_results", "run_benchmark", "session_scores"]
