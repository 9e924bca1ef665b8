"""A folder of recordings in; checked features, predictions and a summary out, resumably and privately.

:func:`run_batch` finds every recording under a folder (EDF, BDF, GDF, FIF, BrainVision, EEGLAB),
and for each one: reads it (:func:`~neurodecode.data.io.recordings.read_raw`), matches it to the
model's channels and rate (:func:`~neurodecode.contract.signal.match_recording`), checks its quality
(:func:`~neurodecode.batch.qc.run_qc`), and predicts every sliding window
(:func:`~neurodecode.batch.predict.predict_recording`) unless QC failed. It writes, per recording,
``results/<id>.csv`` (one row per window) and ``results/<id>.json`` (QC, contract notes, spectra,
class separability, prediction counts), and ``summary.csv`` for all of them.

Privacy: outputs never hold a file's name, a patient's name or a date from a header. A recording
is known by an id, by default the first 12 hex digits of the sha256 of its path relative to the
input folder (``ids="name"`` uses the relative path itself instead, for data without personal
names in file names). The id -> file mapping is written only with ``keep_names=True``
(``names.csv``). Messages about unreadable files are cleaned of paths, of the identity fields of an
EDF/BDF header and of anything shaped like a date before they are stored or printed.

Resume: see :mod:`neurodecode.batch.manifest`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .manifest import Manifest, file_digest, recording_digest, remove_stale_temporaries, write_atomic

__all__ = ["RESULTS_DIR", "SUMMARY_NAME", "NAMES_NAME", "SUPPORTED_SUFFIXES", "BatchError", "NoRecordingsError",
           "find_recordings", "recording_id", "process_recording", "run_batch", "summary_table",
           "channel_groups"]

RESULTS_DIR = "results"
SUMMARY_NAME = "summary.csv"
NAMES_NAME = "names.csv"

#: File endings read as recordings (case-insensitive) and the format named in the outputs.
SUPPORTED_SUFFIXES = {".edf": "EDF", ".bdf": "BDF", ".gdf": "GDF", ".vhdr": "BrainVision", ".set": "EEGLAB",
                      ".fif": "FIF", ".fif.gz": "FIF"}
# FIF files that hold something other than a continuous recording (MNE's naming conventions).
_NOT_RAW_FIF = re.compile(r"[-_](eve|epo|ave|cov|fwd|inv|trans|proj|sol|src|bem|annot|dip|ica|tfr|csd|morph)"
                          r"\.fif(\.gz)?$", re.IGNORECASE)
# Continuations of a split FIF recording (name-1.fif): read through their first part.
_SPLIT_FIF = re.compile(r"-\d+\.fif(\.gz)?$", re.IGNORECASE)
#: Columns of a predictions table that are written (anything else predict_recording may add is left out,
#: so that no new column can carry something unexpected into the outputs).
_PREDICTION_COLUMNS = ("start_s", "end_s", "predicted", "true", "overlap")
#: Highest frequency of the stored spectra (Hz): the report shows up to here.
_SPECTRUM_FMAX = 80.0


class BatchError(ValueError):
    """A batch that cannot start: a missing input folder, an unreadable model, bad options."""


class NoRecordingsError(BatchError):
    """The input folder holds no recording in a supported format."""


# --------------------------------------------------------------------------- finding recordings
def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else path.suffix.lower()


def find_recordings(input_dir, *, exclude=()) -> list:
    """Every supported recording under ``input_dir`` (recursively), sorted by relative path.

    Hidden files and folders, FIF files that are not continuous recordings (``-eve.fif``,
    ``-epo.fif``, ...) and the continuations of split FIF files are left out, as is anything
    under a folder of ``exclude`` (the output folder, when it lies inside the input).
    """
    root = Path(input_dir)
    # Compared both as written and with links followed: a folder of links may link to files anywhere.
    excluded = [p for e in exclude for p in (Path(os.path.abspath(e)), Path(e).resolve())]
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        suffix = _suffix(path)
        if suffix not in SUPPORTED_SUFFIXES:
            continue
        if suffix in (".fif", ".fif.gz") and (_NOT_RAW_FIF.search(path.name) or _is_split_part(path)):
            continue
        where = Path(os.path.abspath(path))
        if any(where.is_relative_to(e) for e in excluded):
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _is_split_part(path: Path) -> bool:
    if not _SPLIT_FIF.search(path.name):
        return False
    first = re.sub(r"-\d+(\.fif(\.gz)?)$", r"\1", path.name, flags=re.IGNORECASE)
    return (path.parent / first).is_file()


def recording_id(relpath, ids: str = "hash") -> str:
    """The id a recording is known by in every output.

    Parameters
    ----------
    relpath : str or Path
        Path relative to the input folder.
    ids : {"hash", "name"}
        ``"hash"``: the first 12 hex digits of the sha256 of the relative path (POSIX form). It
        is a pseudonym: someone who can guess a file's path can recompute it. ``"name"``: the
        relative path, with ``/`` as ``__`` and characters outside ``[A-Za-z0-9._-]`` as ``_``.
    """
    posix = Path(relpath).as_posix()
    if ids == "hash":
        return hashlib.sha256(posix.encode()).hexdigest()[:12]
    if ids == "name":
        return re.sub(r"[^A-Za-z0-9._-]", "_", posix.replace("/", "__"))
    raise BatchError(f"ids must be 'hash' or 'name', got {ids!r}")


# --------------------------------------------------------------------------- privacy
_DATE_PATTERNS = (
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[T ]\d{1,2}[:.]\d{2}(?:[:.]\d{2}(?:\.\d+)?)?)?\b",  # 1961-02-03 16:15
    r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",  # 03.02.61, 03/02/1961
    r"\b\d{1,2}[-/. ]?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*[-/. ]?\d{2,4}\b",  # 03-FEB-1961
    r"\b\d{1,2}[:.]\d{2}[:.]\d{2}\b",  # 16.15.00 (an EDF start time)
)
_DATE_RE = re.compile("|".join(_DATE_PATTERNS), re.IGNORECASE)


def _header_tokens(path: Path) -> set:
    """Words of an EDF/BDF header's patient and recording fields (which carry names and dates).

    Read from the raw bytes, so that they are known even when MNE cannot parse the file.
    """
    if _suffix(path) not in (".edf", ".bdf"):
        return set()
    try:
        with open(path, "rb") as fh:
            head = fh.read(184)
    except OSError:
        return set()
    text = head[8:184].decode("latin-1", errors="replace")
    return {t for t in re.split(r"[\s_]+", text) if len(t) >= 2 and t.upper() not in _EDF_KEYWORDS}


# Words of the EDF+ header grammar and placeholders, which say nothing about anyone.
_EDF_KEYWORDS = {"X", "M", "F", "STARTDATE", "EDF+C", "EDF+D"}


def _subject_tokens(raw) -> set:
    """Values of a read recording's subject_info (names, ids, birthday) and its measurement date."""
    out = set()
    info = getattr(raw, "info", None)
    if info is None:
        return out
    subject = info.get("subject_info") or {}
    for key in ("first_name", "middle_name", "last_name", "his_id"):
        value = subject.get(key)
        if isinstance(value, str):
            out |= {t for t in re.split(r"[\s_]+", value) if len(t) >= 2}
    return out


class _Scrubber:
    """Removes paths, header identity words and dates from a message before it leaves the worker."""

    def __init__(self, path: Path, root: Path, rec_id: str):
        rel = path.relative_to(root)
        # Paths as messages quote them (read_raw: the path; match_recording: the file name). Bare stems and
        # folder names are not searched: "header" or "data" would then vanish from every message.
        self.literal = sorted({str(path), os.path.abspath(path), str(path.resolve()), rel.as_posix(), path.name,
                               str(root), os.path.abspath(root)}, key=len, reverse=True)
        self.tokens = _header_tokens(path)
        self.label = f"<recording {rec_id}>"

    def add(self, tokens) -> None:
        self.tokens |= set(tokens)

    def __call__(self, text: str) -> str:
        text = " ".join(str(text).split())  # one line
        for literal in self.literal:
            if literal and len(literal) >= 2:  # whole words only: a file "trunc.edf" leaves "truncated" alone
                text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(literal)}(?![A-Za-z0-9])", self.label, text)
        for token in sorted(self.tokens, key=len, reverse=True):
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", "<redacted>", text,
                          flags=re.IGNORECASE)
        return _DATE_RE.sub("<date>", text)


# --------------------------------------------------------------------------- per-recording work
_MODELS: dict = {}


def _model(model_path: str, model_sha256: str):
    """The model, loaded once per process (and checked to be the file the run was planned with)."""
    from ..contract.model_file import load_model

    if model_sha256 not in _MODELS:
        if file_digest(model_path)[0] != model_sha256:
            raise BatchError("the model file changed during the run; rerun the batch")
        _MODELS.clear()
        _MODELS[model_sha256] = load_model(model_path)
    return _MODELS[model_sha256]


def channel_groups(ch_names) -> dict:
    """Channels by scalp region from their 10-20/10-05 names (``"FC3"`` -> central); others in ``"other"``.

    Returns ``{group: [channel, ...]}`` in a fixed order of regions, empty groups left out; a
    montage whose names follow no 10-20 convention gives one group, ``"all channels"``.
    """
    regions = {"frontal": ("FP", "AF", "F"), "central": ("FC", "C"), "parietal": ("CP", "P"),
               "occipital": ("PO", "O", "I"), "temporal": ("FT", "T", "TP")}
    by_prefix = {p: region for region, prefixes in regions.items() for p in prefixes}
    out = {region: [] for region in regions}
    out["other"] = []
    for name in ch_names:
        match = re.fullmatch(r"([A-Za-z]+?)(\d+|z|Z)", name.strip())
        region = by_prefix.get(match.group(1).upper()) if match else None
        out[region or "other"].append(name)
    if len(out["other"]) == len(ch_names):
        return {"all channels": list(ch_names)}
    return {k: v for k, v in out.items() if v}


def _round_list(values, digits: int = 5) -> list:
    return [None if not np.isfinite(v) else float(f"{float(v):.{digits}g}") for v in np.asarray(values, dtype=float)]


def _band_power(freqs, psd, band) -> np.ndarray:
    lo, hi = band
    sel = (freqs >= lo) & (freqs <= hi)
    df = freqs[1] - freqs[0] if len(freqs) > 1 else 1.0
    return psd[:, sel].sum(axis=1) * df


def _separability(raw, table: pd.DataFrame, card) -> dict | None:
    """Per channel, how well log band power separates the annotated classes (r², eta² beyond two classes).

    Computed on the windows whose ``true`` class is one of the model's, after the model's band-pass;
    None when fewer than two classes have at least two such windows.
    """
    if "true" not in table:
        return None
    labelled = table[table["true"].isin(card.class_names)]
    counts = labelled["true"].value_counts()
    classes = [c for c in card.class_names if counts.get(c, 0) >= 2]
    if len(classes) < 2:
        return None
    labelled = labelled[labelled["true"].isin(classes)]
    filtered = raw.copy()
    band = (card.paradigm or {}).get("band")
    if band is not None:
        filtered.filter(band[0], band[1], method="iir", picks="all", verbose="error")
    x = filtered.get_data()
    sfreq = float(filtered.info["sfreq"])
    starts = np.rint(labelled["start_s"].to_numpy() * sfreq).astype(int)
    n = card.n_times
    logpow = np.stack([np.log(x[:, s:s + n].var(axis=1) + 1e-30) for s in starts])  # (n_windows, n_channels)
    y = labelled["true"].to_numpy()
    total = ((logpow - logpow.mean(axis=0)) ** 2).sum(axis=0)
    between = sum((y == c).sum() * (logpow[y == c].mean(axis=0) - logpow.mean(axis=0)) ** 2 for c in classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(total > 0, between / total, 0.0)
    return {"classes": classes, "values": _round_list(r2, 4), "n_windows": {c: int((y == c).sum()) for c in classes},
            "measure": "r2" if len(classes) == 2 else "eta2", "band": None if band is None else list(band)}


def _positions(raw, montage: str | None) -> dict:
    """Channel positions (head frame, metres) from the recording's montage, else from a named standard one."""
    names = list(raw.ch_names)
    found = raw.get_montage()
    if found is not None:
        pos = found.get_positions()["ch_pos"]
        if all(n in pos and np.isfinite(pos[n]).all() and np.any(pos[n]) for n in names):
            return {"source": "recording", "ch_pos": {n: _round_list(pos[n], 6) for n in names}}
    if montage:
        import mne

        pos = mne.channels.make_standard_montage(montage).get_positions()["ch_pos"]
        if all(n in pos for n in names):
            return {"source": f"standard montage {montage!r}, by channel name", "ch_pos":
                    {n: _round_list(pos[n], 6) for n in names}}
        missing = [n for n in names if n not in pos]
        return {"source": None, "note": f"{len(missing)} channel(s) not in the {montage!r} montage "
                                        f"({', '.join(missing[:5])}); no scalp map"}
    return {"source": None, "note": "the recording has no channel positions; no scalp map"}


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


def _cues(raw, card) -> list:
    """Trial intervals [onset + tmin, onset + tmax] of the annotations naming the model's classes, in seconds
    from the first sample (only class names are kept: free-text annotations are never copied)."""
    from .predict import cue_onsets

    tmin, tmax = card.window
    onsets, names = cue_onsets(raw, card.class_names)
    return [[round(float(t) + tmin, 4), round(float(t) + tmax, 4), str(name)] for t, name in zip(onsets, names)]


def _to_csv(table: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().encode()


def _to_json(result: dict) -> bytes:
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


def process_recording(task: dict) -> dict:
    """Read, match, check and predict one recording, write its result files, and say what was written.

    ``task`` holds ``path``, ``root``, ``id``, ``format``, ``key``, ``out_dir``, ``model_path``,
    ``model_sha256`` and the options (``resample``, ``score_flagged``, ``step_s``, ``events``,
    ``montage``). Runs in a worker process (or thread) and never raises: any failure becomes a
    ``failed`` result with a cleaned one-line reason.

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
    scrub = _Scrubber(path, root, rec_id)
    result = {"id": rec_id, "format": task["format"], "key": task["key"], "status": "failed", "reason": "",
              "scored": False, "predictions": None}
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
    out_dir = Path(task["out_dir"])
    files = {}
    csv_rel, json_rel = f"{RESULTS_DIR}/{rec_id}.csv", f"{RESULTS_DIR}/{rec_id}.json"
    if table is not None:
        files[csv_rel] = write_atomic(out_dir / csv_rel, _to_csv(table))
        result["predictions"]["file"] = Path(csv_rel).name
        result["predictions"]["sha256"] = files[csv_rel]
    else:
        # A result of an earlier run (another key) must not be served with this one.
        (out_dir / csv_rel).unlink(missing_ok=True)
    files[json_rel] = write_atomic(out_dir / json_rel, _to_json(result))
    return {"id": rec_id, "status": result["status"], "reason": result["reason"], "files": files,
            "complete": complete, "seconds": round(time.perf_counter() - start, 3)}


def _analyse(path: Path, task: dict, model, card, result: dict, scrub: _Scrubber):
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
    scrub.add(_subject_tokens(raw))
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
    keep = freqs <= _SPECTRUM_FMAX
    groups = channel_groups(matched.ch_names)
    index = {n: i for i, n in enumerate(matched.ch_names)}
    group_psd = {g: np.nanmean(psd[[index[c] for c in chans]][:, keep], axis=0) for g, chans in groups.items()}
    result["spectrum"] = {"unit": "V^2/Hz", "freqs": _round_list(freqs[keep], 6),
                          "groups": {g: {"channels": groups[g], "psd": _round_list(v)} for g, v in group_psd.items()}}
    band = (card.paradigm or {}).get("band") or [8.0, 30.0]
    result["band_power"] = {"band": list(band), "unit": "V^2", "channels": list(matched.ch_names),
                            "values": _round_list(_band_power(freqs, psd, band))}
    result["positions"] = _positions(matched, task.get("montage"))
    result["qc"] = _jsonable_qc(qc)
    result["cues"] = _cues(matched, card)
    result["model"] = {"name": card.name, "class_names": list(card.class_names), "window": list(card.window),
                       "sfreq": float(card.sfreq), "band": (card.paradigm or {}).get("band")}
    flagged = not qc["passed"]
    result["status"] = "flagged" if flagged else "ok"
    result["reason"] = qc_reason(qc)
    if flagged and not task.get("score_flagged"):
        return None, True
    try:
        table = predict_recording(model, card, matched, step_s=task.get("step_s"))
    except (NeurodecodeDataError, ValueError) as err:  # the model refusing these samples (NaN): the same next time
        result["status"] = "failed"
        why = f"cannot be scored: {type(err).__name__}: {err}"
        result["reason"] = scrub("; ".join(r for r in (result["reason"], why) if r))
        return None, True
    columns = [c for c in table.columns if c in _PREDICTION_COLUMNS or c.startswith("proba_")]
    table = table[columns].copy()
    result["scored"] = True
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
        result["r2"] = _separability(matched, table, card)
    result["predictions"] = summary
    return table, True


# --------------------------------------------------------------------------- summary
def summary_table(out_dir, ids, *, class_names=()) -> pd.DataFrame:
    """One row per recording id, read from its stored result (``results/<id>.json``).

    Columns: ``id``, ``format``, ``status`` (ok, flagged, failed), ``reason``, ``n_windows``,
    ``n_<class>`` (windows predicted as each class), ``n_annotated``, ``accuracy`` (on annotated
    windows, when any), ``qc_failed`` (the failed checks).
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
        rows.append(row)
    columns = ["id", "format", "status", "reason", "n_windows", *[f"n_{c}" for c in class_names], "n_annotated",
               "accuracy", "qc_failed"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ["n_windows", *[f"n_{c}" for c in class_names], "n_annotated"]:
        frame[column] = frame[column].astype("Int64")
    return frame


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
        A model file (:func:`~neurodecode.contract.model_file.save_model`).
    out_dir : path-like
        Where ``results/``, ``summary.csv`` and ``manifest.jsonl`` go (created).
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
        How recordings are named in the outputs (:func:`recording_id`).
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
        ``seconds``.

    Raises
    ------
    BatchError
        The input folder or the model cannot be used (:class:`NoRecordingsError`: no recording).
    """
    from .._utils.scaleout import joblib_backend
    from ..contract.model_file import ModelFileError, read_card

    stream = stream or sys.stderr
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if not input_dir.is_dir():
        raise BatchError(f"input folder {input_dir} does not exist or is not a folder")
    try:
        card = read_card(model_path)
        model_sha256 = file_digest(model_path)[0]
    except (ModelFileError, OSError) as err:
        raise BatchError(f"cannot use the model: {err}") from None
    if ids not in ("hash", "name"):
        raise BatchError(f"ids must be 'hash' or 'name', got {ids!r}")
    if step_s is not None and not (isinstance(step_s, (int, float)) and math.isfinite(step_s) and step_s > 0):
        raise BatchError(f"step_s must be a positive number of seconds, got {step_s!r}")
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
        return _run(input_dir, out_dir, recordings, rec_ids, rel, card, model_path, model_sha256, n_jobs,
                    n_cluster if scheduler is not None else None, progress, keep_names, stream,
                    _options_key(resample, score_flagged, step_s, events, montage))


def _run(input_dir, out_dir, recordings, rec_ids, rel, card, model_path, model_sha256, n_jobs, n_cluster, progress,
         keep_names, stream, options) -> pd.DataFrame:
    """The planned run, inside the parallel backend (see :func:`run_batch`)."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from .. import __version__

    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir / RESULTS_DIR)
    remove_stale_temporaries(out_dir)
    # The summary of an earlier run describes that run; until this one ends there is none, rather
    # than a stale one.
    (out_dir / SUMMARY_NAME).unlink(missing_ok=True)
    manifest = Manifest(out_dir)
    completed = manifest.completed()
    tasks, reused, failed_now = [], [], {}
    for path in recordings:
        rec_id = rec_ids[path]
        try:
            digest, size = recording_digest(path)
        except OSError as err:
            failed_now[rec_id] = _Scrubber(path, input_dir, rec_id)(f"unreadable: {type(err).__name__}: "
                                                                    f"{err.strerror or err}")
            continue
        key = {"input_sha256": digest, "input_size": size, "model_sha256": model_sha256,
               "neurodecode_version": __version__, "options": options}
        if Manifest.is_finished(completed.get(rec_id), key, out_dir):
            reused.append(rec_id)
            continue
        tasks.append({"path": str(path), "root": str(input_dir), "id": rec_id,
                      "format": SUPPORTED_SUFFIXES[_suffix(path)], "key": key, "out_dir": str(out_dir),
                      "model_path": str(model_path), "model_sha256": model_sha256, **options})
    manifest.append({"event": "run", "model_sha256": model_sha256, "neurodecode_version": __version__,
                     "options": options, "found": len(recordings), "reused": len(reused), "to_do": len(tasks)})
    print(f"{len(recordings)} recording(s) found: {len(reused)} already done (kept), {len(tasks)} to process",
          file=stream, flush=True)
    for rec_id, reason in failed_now.items():
        print(f"  {rec_id}: failed: {reason}", file=stream)
        _write_failure(out_dir, rec_id, reason)

    start = time.perf_counter()
    n_computed = 0
    workers = n_jobs if n_cluster is None else (n_cluster if n_jobs in (1, -1) else n_jobs)
    bar = tqdm(total=len(tasks), desc="recordings", unit="rec", disable=not progress, file=sys.stderr)
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
    bar.close()
    seconds = time.perf_counter() - start

    ordered = sorted(rec_ids.values())
    summary = summary_table(out_dir, ordered, class_names=card.class_names)
    write_atomic(out_dir / SUMMARY_NAME, _to_csv(summary))
    if keep_names:
        names = pd.DataFrame({"id": [rec_ids[p] for p in recordings], "file": [rel[p].as_posix() for p in recordings]})
        write_atomic(out_dir / NAMES_NAME, _to_csv(names.sort_values("id")))
    counts = summary["status"].value_counts()
    print(f"{len(summary)} recording(s): {counts.get('ok', 0)} ok, {counts.get('flagged', 0)} flagged, "
          f"{counts.get('failed', 0)} failed; {n_computed} processed in {seconds:.1f} s, {len(reused)} kept from "
          f"earlier runs; summary: {out_dir / SUMMARY_NAME}", file=stream, flush=True)
    summary.attrs.update({"computed": n_computed, "reused": len(reused), "failed": int(counts.get("failed", 0)),
                          "seconds": seconds})
    return summary


def _write_failure(out_dir: Path, rec_id: str, reason: str) -> None:
    """The result of a recording that could not even be hashed (not recorded as finished: retried next run)."""
    (out_dir / RESULTS_DIR / f"{rec_id}.csv").unlink(missing_ok=True)
    write_atomic(out_dir / RESULTS_DIR / f"{rec_id}.json",
                 _to_json({"id": rec_id, "status": "failed", "reason": reason, "scored": False, "predictions": None}))

