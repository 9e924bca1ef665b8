"""A folder of recordings in; checked features, predictions and a summary out, resumably, privately, one model.

:func:`run_batch` loads and checks the model file (the full trust check of
:func:`~neurodecode.contract.model_file.load_model`) before it touches the output folder or any
recording, finds every recording under the input folder (:mod:`.discovery`), and for each one
runs :func:`~.recording.process_recording` (read, match to the model, QC, analysis, predictions,
result files) in parallel. It writes, per recording, ``results/<id>.csv`` and ``results/<id>.json``,
and ``summary.csv`` for all of them.

One output folder holds one model's results. A run locks the folder for its duration (an
``flock`` on a lock file holding pid, host and the model's sha256, which the kernel lets go when
the process ends, however it ends), so that a second run into it is refused rather than mixed in;
and results of another model found in the folder are removed before the run starts (every
recording is then recomputed with this model).

Privacy: see :mod:`.privacy` (ids, cleaned messages). Resume: see :mod:`.manifest`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pandas as pd

from .._utils.files import FolderLock, FolderLockedError, make_private_dir
from .discovery import SUPPORTED_SUFFIXES, find_recordings, recording_id, suffix
from .errors import BatchError, NoRecordingsError, OutputError
from .manifest import Manifest, file_digest, recording_digest, remove_stale_temporaries, write_atomic
from .privacy import Scrubber
from .recording import RESULTS_DIR, process_recording, remember_model, to_csv_bytes, write_results

__all__ = ["LOCK_NAME", "NAMES_NAME", "RESULTS_DIR", "SUMMARY_NAME", "run_batch", "summary_table"]

SUMMARY_NAME = "summary.csv"
NAMES_NAME = "names.csv"
#: The lock file of a run in progress, inside the output folder (removed when the run ends).
LOCK_NAME = ".neurodecode-batch.lock"


# --------------------------------------------------------------------------- summary
def summary_table(out_dir, ids, *, class_names=(), model_sha256=None, model_name=None) -> pd.DataFrame:
    """One row per recording id, read from its stored result (``results/<id>.json``).

    Columns: ``id``, ``format``, ``status`` (ok, flagged, failed), ``reason``, ``n_windows``,
    ``n_<class>`` (windows predicted as each class), ``n_annotated``, ``accuracy`` (on annotated
    windows, when any), ``qc_failed`` (the failed checks), ``model_name`` and ``model_sha256``
    (the model whose result it is; ``model_sha256`` and ``model_name`` fill them for results that
    do not say).
    """
    rows = []
    for rec_id in ids:
        result = json.loads((Path(out_dir) / RESULTS_DIR / f"{rec_id}.json").read_text())
        predictions = result.get("predictions") or {}
        counts = predictions.get("counts") or {}
        row = {"id": rec_id, "format": result.get("format"), "status": result["status"],
               "reason": result.get("reason", ""), "n_windows": predictions.get("n_windows")}
        for name in class_names:
            row[f"n_{name}"] = counts.get(name)
        row["n_annotated"] = predictions.get("n_annotated")
        row["accuracy"] = predictions.get("accuracy")
        row["qc_failed"] = " ".join((result.get("qc") or {}).get("failed", []))
        row["model_name"] = result.get("model_name", model_name)
        row["model_sha256"] = _result_model(result) or model_sha256
        rows.append(row)
    columns = ["id", "format", "status", "reason", "n_windows", *[f"n_{c}" for c in class_names], "n_annotated",
               "accuracy", "qc_failed", "model_name", "model_sha256"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ["n_windows", *[f"n_{c}" for c in class_names], "n_annotated"]:
        frame[column] = frame[column].astype("Int64")
    return frame


def _result_model(result: dict):
    """The sha256 of the model a stored result is of (results of older versions carry it in their key only)."""
    return result.get("model_sha256") or (result.get("key") or {}).get("model_sha256")


# --------------------------------------------------------------------------- the run
def _options_key(resample, score_flagged, step_s, events, montage) -> dict:
    return {"resample": resample, "score_flagged": bool(score_flagged), "step_s": step_s,
            "events": dict(sorted((events or {}).items())), "montage": montage}


def run_batch(input_dir, model_path, out_dir, *, n_jobs: int = 1, scheduler: str | None = None,
              resample: bool | None = None, score_flagged: bool = False, progress: bool = True,
              ids: str = "hash", keep_names: bool = False, step_s: float | None = None, events=None,
              montage: str | None = None, stream=None) -> pd.DataFrame:
    """Process every recording under ``input_dir`` with one model; resumable, parallel, private.

    Parameters
    ----------
    input_dir : path-like
        Folder searched recursively for EDF, BDF, GDF, FIF (``*_raw.fif``, ``*.fif``), BrainVision
        (``.vhdr``) and EEGLAB (``.set``) recordings.
    model_path : path-like
        A model file (:func:`~neurodecode.contract.model_file.save_model`). It is loaded and
        checked before anything else; a refused or damaged file is a :class:`BatchError` and
        nothing is written.
    out_dir : path-like
        Where ``results/``, ``summary.csv`` and ``manifest.jsonl`` go (created, mode 0700; files
        0600). Locked while the run lasts; results of another model in it are replaced.
    n_jobs : int
        Recordings processed at once (joblib processes); with ``scheduler``, the cluster's
        worker count is used unless ``n_jobs`` says otherwise.
    scheduler : str or None
        ``"local"`` (a Dask LocalCluster of ``n_jobs`` workers) or a Dask scheduler address.
    resample : bool or None
        Resample recordings at another rate than the model's (None: as the model card allows).
    score_flagged : bool
        Predict recordings that failed QC too (they stay ``flagged``).
    progress : bool
        A progress bar on stderr, its total the recordings left to do.
    ids : {"hash", "name"}
        How recordings are named in the outputs (:func:`~.discovery.recording_id`).
    keep_names : bool
        Also write ``names.csv`` (id -> path relative to ``input_dir``).
    step_s : float or None
        Seconds between windows (None: a quarter of the model's window).
    events : dict or None
        Annotation renames before prediction, ``{"T1": "left_hand", ...}``, so that the cues name
        the model's classes (then windows get a ``true`` class and an accuracy is reported). A key
        matches a whole description or what follows its last ``/`` (BrainVision's ``Comment/T1``).
    montage : str or None
        A standard montage (``"colin27_1005"``, MNE 1.13's name for standard_1005) giving positions
        by channel name to recordings that have none, for the report's scalp maps.
    stream : file or None
        Where the run's one-line messages go (default stderr).

    Returns
    -------
    summary : pandas.DataFrame
        :func:`summary_table` of every recording found; also written to ``out_dir/summary.csv``.
        ``attrs``: ``computed``, ``reused`` (recordings taken from earlier runs), ``failed``,
        ``seconds``, ``model_name``, ``model_sha256``.

    Raises
    ------
    BatchError
        The run cannot start: the input folder, the model or an option cannot be used
        (:class:`NoRecordingsError`: no recording), or another run holds the output folder.
    OutputError
        The output folder cannot be created or written (read-only, a file, a full disk); what was
        finished before the fault is kept and a rerun completes it.
    """
    from .._utils.scaleout import joblib_backend
    from ..contract.model_file import ModelFileError, load_model
    from .calibrate import recentres

    stream = stream or sys.stderr
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if not input_dir.is_dir():
        raise BatchError(f"input folder {input_dir} does not exist or is not a folder")
    try:
        model, card = load_model(model_path)  # the full trust check, before any output or recording is touched
        model_sha256 = file_digest(model_path)[0]  # each worker checks the file still has it before loading it
    except (ModelFileError, OSError) as err:
        raise BatchError(f"cannot use the model: {err}") from None
    remember_model(model_sha256, model, card)
    if ids not in ("hash", "name"):
        raise BatchError(f"ids must be 'hash' or 'name', got {ids!r}")
    if step_s is not None and not (isinstance(step_s, (int, float)) and math.isfinite(step_s) and step_s > 0):
        raise BatchError(f"step_s must be a positive number of seconds, got {step_s!r}")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"the output folder {out_dir} is a file")
    recordings = find_recordings(input_dir, exclude=[out_dir])
    if not recordings:
        raise NoRecordingsError(f"no recording (EDF, BDF, GDF, FIF, BrainVision, EEGLAB) under {input_dir}")
    rel = {p: p.relative_to(input_dir) for p in recordings}
    rec_ids = {p: recording_id(rel[p], ids) for p in recordings}
    clashes = pd.Series(list(rec_ids.values())).duplicated()
    if clashes.any():
        raise BatchError(f"{int(clashes.sum())} recording(s) get the same id; use ids='hash'")

    # The scheduler first: an unreachable one is a usage error that must leave the output folder untouched.
    with joblib_backend(scheduler, n_workers=n_jobs if scheduler == "local" and n_jobs > 1 else None) as n_cluster:
        try:
            make_private_dir(out_dir)
        except OSError as err:
            raise OutputError(f"cannot create the output folder {out_dir}: {err.strerror or err}") from None
        lock = FolderLock(out_dir, LOCK_NAME, info={"model_sha256": model_sha256, "model_name": card.name,
                                                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        try:
            lock.acquire()
        except FolderLockedError as err:
            raise BatchError(str(err)) from None
        except OSError as err:
            raise OutputError(f"cannot write to the output folder {out_dir}: {err.strerror or err}") from None
        options = _options_key(resample, score_flagged, step_s, events, montage)
        if recentres(model):  # in the key: a result computed without the recentring is not served as one with it
            options["recentre"] = True
            print("the model is a transfer model with alignment: each recording is recentred without labels on its "
                  "own windows before it is predicted", file=stream, flush=True)
        try:
            return _run(input_dir, out_dir, recordings, rec_ids, rel, card, model_path, model_sha256, n_jobs,
                        n_cluster if scheduler is not None else None, progress, keep_names, stream, options)
        except OSError as err:  # the output folder's fault (the recordings' own are caught per recording)
            raise OutputError(f"cannot write to the output folder {out_dir}: {err.strerror or err}") from None
        finally:
            lock.release()


def _drop_other_models(out_dir: Path, model_sha256: str) -> int:
    """Delete the result files of another model than this run's: one folder holds one model's results."""
    n = 0
    for path in sorted((out_dir / RESULTS_DIR).glob("*.json")):
        try:
            other = _result_model(json.loads(path.read_text()))
        except (ValueError, UnicodeDecodeError):
            continue  # not a result this run can read: redone if it is one of its recordings
        if other != model_sha256:
            path.with_suffix(".csv").unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            n += 1
    return n


def _run(input_dir, out_dir, recordings, rec_ids, rel, card, model_path, model_sha256, n_jobs, n_cluster, progress,
         keep_names, stream, options) -> pd.DataFrame:
    """The planned run, inside the parallel backend and the folder's lock (see :func:`run_batch`)."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from .. import __version__

    make_private_dir(out_dir / RESULTS_DIR)
    remove_stale_temporaries(out_dir / RESULTS_DIR)
    remove_stale_temporaries(out_dir)
    # The summary of an earlier run describes that run; until this one ends there is none, rather
    # than a stale one.
    (out_dir / SUMMARY_NAME).unlink(missing_ok=True)
    replaced = _drop_other_models(out_dir, model_sha256)
    manifest = Manifest(out_dir)
    completed = manifest.completed()
    tasks, reused, failed_now = [], [], {}
    for path in recordings:
        rec_id = rec_ids[path]
        try:
            digest, size = recording_digest(path)
        except OSError as err:
            failed_now[rec_id] = Scrubber(path, input_dir, rec_id)(f"unreadable: {type(err).__name__}: "
                                                                   f"{err.strerror or err}")
            continue
        key = {"input_sha256": digest, "input_size": size, "model_sha256": model_sha256,
               "neurodecode_version": __version__, "options": options}
        if Manifest.is_finished(completed.get(rec_id), key, out_dir):
            reused.append(rec_id)
            continue
        tasks.append({"path": str(path), "root": str(input_dir), "id": rec_id,
                      "format": SUPPORTED_SUFFIXES[suffix(path)], "key": key, "out_dir": str(out_dir),
                      "model_path": str(model_path), "model_sha256": model_sha256, "model_name": card.name,
                      **options})
    run_record = {"event": "run", "model_sha256": model_sha256, "model_name": card.name,
                  "neurodecode_version": __version__, "options": options, "found": len(recordings)}
    manifest.append({**run_record, "reused": len(reused), "to_do": len(tasks)})
    if replaced:
        print(f"{replaced} result(s) of another model removed from {out_dir}: one folder holds one model's results",
              file=stream, flush=True)
    print(f"{len(recordings)} recording(s) found: {len(reused)} already done (kept), {len(tasks)} to process",
          file=stream, flush=True)
    for rec_id, reason in failed_now.items():
        print(f"  {rec_id}: failed: {reason}", file=stream)
        write_results(out_dir, rec_id, {"id": rec_id, "status": "failed", "reason": reason, "scored": False,
                                        "predictions": None, "model_sha256": model_sha256,
                                        "model_name": card.name}, None)

    start = time.perf_counter()
    n_computed = 0
    workers = n_jobs if n_cluster is None else (n_cluster if n_jobs in (1, -1) else n_jobs)
    bar = tqdm(total=len(tasks), desc="recordings", unit="rec", disable=not progress, file=sys.stderr)
    try:
        if tasks:
            parallel = Parallel(n_jobs=workers, return_as="generator_unordered", pre_dispatch="2*n_jobs")
            keys = {t["id"]: t["key"] for t in tasks}
            for done in parallel(delayed(process_recording)(t) for t in tasks):
                if done["complete"]:
                    manifest.append({"event": "done", "id": done["id"], "key": keys[done["id"]],
                                     "status": done["status"], "files": done["files"]})
                n_computed += 1
                bar.update(1)
                if done["status"] != "ok":
                    bar.write(f"  {done['id']}: {done['status']}: {done['reason']}", file=stream)
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    ordered = sorted(rec_ids.values())
    summary = summary_table(out_dir, ordered, class_names=card.class_names, model_sha256=model_sha256,
                            model_name=card.name)
    write_atomic(out_dir / SUMMARY_NAME, to_csv_bytes(summary))
    if keep_names:
        names = pd.DataFrame({"id": [rec_ids[p] for p in recordings], "file": [rel[p].as_posix() for p in recordings]})
        write_atomic(out_dir / NAMES_NAME, to_csv_bytes(names.sort_values("id")))
    # The run is complete: the manifest becomes the record of what the folder holds, the same bytes
    # whether the results were computed in one run or over several interrupted ones.
    manifest.compact(run_record, out_dir)
    counts = summary["status"].value_counts()
    print(f"{len(summary)} recording(s): {counts.get('ok', 0)} ok, {counts.get('flagged', 0)} flagged, "
          f"{counts.get('failed', 0)} failed; {n_computed} processed in {seconds:.1f} s, {len(reused)} kept from "
          f"earlier runs; model {card.name!r} ({model_sha256[:12]}); summary: {out_dir / SUMMARY_NAME}",
          file=stream, flush=True)
    summary.attrs.update({"computed": n_computed, "reused": len(reused), "failed": int(counts.get("failed", 0)),
                          "seconds": seconds, "model_name": card.name, "model_sha256": model_sha256})
    return summary
