"""One recording of a batch: read, matched to the model, checked, analysed and predicted; its result files written.

:func:`process_recording` runs in a worker (a joblib process, a Dask worker, or the main process)
and writes ``results/<id>.csv`` (one row per window) and ``results/<id>.json`` (QC, contract
notes, spectra, class separability, prediction counts, the model's sha256 and name). Anything
that goes wrong with the recording becomes a ``failed`` result with a cleaned one-line reason;
only a fault of the output folder (read-only, full) stops the run (:class:`~.errors.OutputError`).
"""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis import band_power, cues, group_spectra, positions, round_list, separability
from .errors import BatchError, OutputError
from .manifest import file_digest, write_atomic
from .privacy import Scrubber, subject_tokens

__all__ = ["RESULTS_DIR", "process_recording", "to_csv_bytes", "to_json_bytes"]

RESULTS_DIR = "results"
#: Columns of a predictions table that are written (anything else predict_recording may add is left out,
#: so that no new column can carry something unexpected into the outputs).
_PREDICTION_COLUMNS = ("start_s", "end_s", "predicted", "true", "overlap")

# The model of this process, by its file's sha256: loaded once per worker.
_MODELS: dict = {}


def remember_model(model_sha256: str, model, card) -> None:
    """Keep a model loaded (and checked) by the caller, so that a worker in this process does not load it again."""
    _MODELS.clear()
    _MODELS[model_sha256] = (model, card)


def _model(model_path: str, model_sha256: str):
    """The model, loaded once per process (and checked to be the file the run was planned with)."""
    from ..contract.model_file import load_model

    if model_sha256 not in _MODELS:
        if file_digest(model_path)[0] != model_sha256:
            raise BatchError("the model file changed during the run; rerun the batch")
        remember_model(model_sha256, *load_model(model_path))
    return _MODELS[model_sha256]


def _event_renames(descriptions, events: dict) -> dict:
    """Annotation renames for ``events``: a description is matched whole, or by what follows its last ``/``
    (BrainVision markers read as ``"Comment/T1"``, ``"Stimulus/S  1"``)."""
    out = {}
    for description in set(descriptions):
        if description in events:
            out[description] = events[description]
        elif "/" in description and description.rsplit("/", 1)[1] in events:
            out[description] = events[description.rsplit("/", 1)[1]]
    return out


def to_csv_bytes(table: pd.DataFrame) -> bytes:
    """A table as the CSV bytes every batch output uses (no index, ``\\n`` line ends)."""
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().encode()


def to_json_bytes(result: dict) -> bytes:
    """A result as strict JSON bytes (keys sorted, non-finite numbers as null)."""
    text = json.dumps(_finite(result), indent=1, sort_keys=True, allow_nan=False, default=_json_default)
    return (text + "\n").encode()


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _finite(value):
    """``value`` with every non-finite float as None, recursively (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _jsonable_qc(qc: dict) -> dict:
    """QC dict without its spectrum arrays, with NaN as None."""
    return _finite({k: v for k, v in qc.items() if k != "spectrum"})


def write_results(out_dir: Path, rec_id: str, result: dict, table: pd.DataFrame | None) -> dict:
    """Write a recording's result files; return relative path -> sha256 of each file written.

    Raises
    ------
    OutputError
        A file cannot be written (read-only folder, full disk): this recording's files are
        removed, so that no half of a result stays, and the run stops.
    """
    files = {}
    csv_rel, json_rel = f"{RESULTS_DIR}/{rec_id}.csv", f"{RESULTS_DIR}/{rec_id}.json"
    try:
        if table is not None:
            files[csv_rel] = write_atomic(out_dir / csv_rel, to_csv_bytes(table))
            result["predictions"]["file"] = Path(csv_rel).name
            result["predictions"]["sha256"] = files[csv_rel]
        else:
            # A result of an earlier run (another key) must not be served with this one.
            (out_dir / csv_rel).unlink(missing_ok=True)
        files[json_rel] = write_atomic(out_dir / json_rel, to_json_bytes(result))
    except OSError as err:
        for rel in (csv_rel, json_rel):
            try:
                (out_dir / rel).unlink(missing_ok=True)
            except OSError:
                pass
        raise OutputError(f"cannot write to the output folder {out_dir}: {err.strerror or err}") from None
    return files


def process_recording(task: dict) -> dict:
    """Read, match, check and predict one recording, write its result files, and say what was written.

    ``task`` holds ``path``, ``root``, ``id``, ``format``, ``key``, ``out_dir``, ``model_path``,
    ``model_sha256``, ``model_name`` and the options (``resample``, ``score_flagged``, ``step_s``,
    ``events``, ``montage``, and ``recentre`` for a transfer model with alignment: the result then
    records ``"recentred": true``). Runs in a worker process (or thread) and raises only
    :class:`~.errors.OutputError` (the output folder cannot be written): any other failure
    becomes a ``failed`` result with a cleaned one-line reason.

    Returns
    -------
    done : dict
        ``id``, ``status``, ``reason``, ``files`` (relative path -> sha256 of each result file
        written), ``complete`` (False when the failure was not about the recording, e.g. a bug or
        memory: such a recording is retried by the next run), ``seconds``.
    """
    import mne

    from .._utils.threads import threads

    start = time.perf_counter()
    path, root, rec_id = Path(task["path"]), Path(task["root"]), task["id"]
    scrub = Scrubber(path, root, rec_id)
    result = {"id": rec_id, "format": task["format"], "key": task["key"], "status": "failed", "reason": "",
              "scored": False, "predictions": None, "model_sha256": task["model_sha256"],
              "model_name": task["model_name"]}
    table = None
    complete = True
    # One BLAS/torch thread per recording: parallelism is over recordings, and the same thread
    # count everywhere gives bit-identical predictions whatever the scheduler.
    with threads(1), warnings.catch_warnings(), mne.use_log_level("error"):
        warnings.simplefilter("ignore")
        try:
            model, card = _model(task["model_path"], task["model_sha256"])
            table, complete = _analyse(path, task, model, card, result, scrub)
        except Exception as err:  # noqa: BLE001 - one recording's failure must not stop the batch
            result["status"] = "failed"
            result["reason"] = scrub(f"{type(err).__name__}: {err}")
            complete = False
    files = write_results(Path(task["out_dir"]), rec_id, result, table)
    return {"id": rec_id, "status": result["status"], "reason": result["reason"], "files": files,
            "complete": complete, "seconds": round(time.perf_counter() - start, 3)}


def _analyse(path: Path, task: dict, model, card, result: dict, scrub: Scrubber):
    """The stages of one recording, filling ``result``; returns (predictions table or None, complete)."""
    from ..data.errors import NeurodecodeDataError
    from ..data.io.recordings import read_raw
    from ..contract.signal import match_recording
    from .predict import predict_recording
    from .qc import qc_reason, run_qc

    # Read without preloading, then load: read_raw refuses NaN samples outright, and a recording
    # with NaN samples is a QC finding (flagged, with the channels named), not an unreadable file.
    try:
        raw = read_raw(path, preload=False)
        raw.load_data(verbose="error")
    except NeurodecodeDataError as err:
        result["reason"] = scrub(f"unreadable: {err}")
        return None, True
    except (ValueError, RuntimeError, OSError, EOFError, IndexError, KeyError, TypeError, UnicodeDecodeError,
            AssertionError, NotImplementedError) as err:  # what MNE's readers raise on damaged files
        result["reason"] = scrub(f"unreadable: {type(err).__name__}: {err}")
        return None, True
    scrub.add(subject_tokens(raw))
    result["recording"] = {"sfreq": float(raw.info["sfreq"]), "n_channels": len(raw.ch_names),
                           "duration_s": round(raw.n_times / float(raw.info["sfreq"]), 4)}
    renames = _event_renames(raw.annotations.description, task.get("events") or {})
    if renames:
        raw.annotations.rename(renames)
    try:
        matched, contract = match_recording(raw, card, resample=task.get("resample"))
    except NeurodecodeDataError as err:
        result["reason"] = scrub(f"does not match the model: {err}")
        return None, True
    contract = {k: v for k, v in contract.items() if k != "file"}  # the file's name stays out of the outputs
    result["contract"] = json.loads(scrub(json.dumps(contract)))
    data = matched.get_data()
    qc = run_qc(data, float(matched.info["sfreq"]), matched.ch_names)
    freqs, psd = qc["spectrum"]["freqs"], qc["spectrum"]["psd"]
    result["spectrum"] = group_spectra(freqs, psd, list(matched.ch_names))
    band = (card.paradigm or {}).get("band") or [8.0, 30.0]
    result["band_power"] = {"band": list(band), "unit": "V^2", "channels": list(matched.ch_names),
                            "values": round_list(band_power(freqs, psd, band))}
    result["positions"] = positions(matched, task.get("montage"))
    result["qc"] = _jsonable_qc(qc)
    result["cues"] = cues(matched, card)
    result["model"] = {"name": card.name, "class_names": list(card.class_names), "window": list(card.window),
                       "sfreq": float(card.sfreq), "band": (card.paradigm or {}).get("band")}
    flagged = not qc["passed"]
    result["status"] = "flagged" if flagged else "ok"
    result["reason"] = qc_reason(qc)
    if flagged and not task.get("score_flagged"):
        return None, True
    try:
        table = predict_recording(model, card, matched, step_s=task.get("step_s"),
                                  recentre=bool(task.get("recentre")))
    except (NeurodecodeDataError, ValueError) as err:  # the model refusing these samples (NaN): the same next time
        result["status"] = "failed"
        why = f"cannot be scored: {type(err).__name__}: {err}"
        result["reason"] = scrub("; ".join(r for r in (result["reason"], why) if r))
        return None, True
    columns = [c for c in table.columns if c in _PREDICTION_COLUMNS or c.startswith("proba_")]
    table = table[columns].copy()
    result["scored"] = True
    if table.attrs.get("recentred"):
        # A transfer model with alignment: this recording's own reference, from its windows, no label used.
        result["recentred"] = True
        result["recentring"] = {"n_windows": int(table.attrs["recentred"]), "windows": "non-overlapping",
                                "labels": "none"}
    counts = table["predicted"].value_counts()
    summary = {"n_windows": int(len(table)), "counts": {c: int(counts.get(c, 0)) for c in card.class_names},
               "n_annotated": 0, "accuracy": None, "step_s": None}
    if len(table) > 1:
        summary["step_s"] = round(float(table["start_s"].iloc[1] - table["start_s"].iloc[0]), 6)
    if "true" in table:
        annotated = table["true"].isin(card.class_names)
        summary["n_annotated"] = int(annotated.sum())
        if annotated.any():
            summary["accuracy"] = round(float((table.loc[annotated, "predicted"] == table.loc[annotated, "true"])
                                              .mean()), 6)
        result["r2"] = separability(matched, table, card)
    result["predictions"] = summary
    return table, True

