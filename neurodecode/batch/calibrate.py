"""Adapt a pretrained transfer model to a new person from a calibration run (``neurodecode calibrate``).

:func:`calibrate_model` loads a model file (the full trust check of
:func:`~neurodecode.contract.model_file.load_model`), refuses a model that is not a
:class:`~neurodecode.models.transfer.TransferClassifier`, reads the recordings through the signal
contract (:func:`~neurodecode.contract.signal.match_recording`, the card's band-pass and unit), cuts
the cue-locked trials as the training trials were cut (the card's window and classes), splits them in
time order into a calibration part and a held-out part (the last ``holdout`` share), calibrates a copy
of the model (:meth:`TransferClassifier.calibrate`: labelled, or unlabelled on every trial) and scores
the held-out trials before and after. The new card records the calibration
(``card.extra["calibration"]``); the new model file gets a before/after figure beside it.

:func:`recentred_copy` is what ``batch`` does to each recording for a transfer model with alignment:
a copy recentred without labels on the recording's own windows.
"""

from __future__ import annotations

import datetime
import io
import math
from pathlib import Path

import numpy as np

from ..contract.model_file import ModelCard, ModelFileError, load_model, save_model
from ..contract.signal import ContractError, model_input
from ..evaluation.metrics import per_class_recall
from ..evaluation.transfer_protocol import calibration_step
from ..evaluation.transfer_protocol import calibrate_model as _calibrated_copy
from .train import chance_level, check_writable

__all__ = ["DEFAULT_HOLDOUT", "CalibrationError", "calibrate_model", "calibration_lines", "cue_trials",
           "figure_path", "recentred_copy", "recentres", "transfer_step"]

#: The share of the trials held out for scoring, the last ones in time.
DEFAULT_HOLDOUT = 0.3


class CalibrationError(ValueError):
    """A calibration that cannot be done as asked: a model that is not a transfer model, too few trials..."""


def transfer_step(model):
    """The :class:`~neurodecode.models.transfer.TransferClassifier` of a model (itself, or a Pipeline's last step).

    Returns
    -------
    transfer : TransferClassifier or None
        None for any other model.
    """
    from ..models.transfer import TransferClassifier

    target, _ = calibration_step(model)
    return target if isinstance(target, TransferClassifier) else None


def recentres(model) -> bool:
    """Whether ``batch`` recentres each recording for this model: a transfer model with alignment."""
    transfer = transfer_step(model)
    return transfer is not None and transfer.alignment is not None


def recentred_copy(model, card: ModelCard, windows):
    """A copy of a transfer model with alignment, recentred without labels on ``windows``; None for any other model.

    Parameters
    ----------
    model : estimator
        A fitted model of ``card``; it is not modified.
    card : ModelCard
    windows : ndarray of shape (n_windows, n_channels, n_times)
        One person's windows in the card's channel order, rate and unit.

    Returns
    -------
    model : estimator or None
        The copy, whose every later window is aligned by the reference of ``windows``
        (``target_reference_``).
    """
    if not recentres(model) or len(windows) == 0:
        return None
    calibrated, _ = _calibrated_copy(model, None, None, None, None, model_input(model, windows, card))
    return calibrated


def figure_path(out) -> Path:
    """Where the before/after figure of the model file ``out`` goes: ``<out>.calibration.png`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".calibration.png")


def cue_trials(recording, card: ModelCard, *, events=None, resample=None):
    """The cue-locked trials of one recording, cut as the card's training trials were.

    The recording meets the card's channels and rate and is band-passed with the card's zero-phase
    IIR filter on the whole recording (:func:`~neurodecode.batch.predict.prepared_recording`, as
    ``predict`` prepares it), then scaled to the card's unit;
    then each annotation naming one of the card's classes gives a trial over the card's window
    (:func:`~neurodecode.data.io.recordings.epochs_to_data`, as :meth:`Dataset.load
    <neurodecode.data.dataset.Dataset.load>` cuts them). A trial running past the recording's
    end is left out.

    Parameters
    ----------
    recording : path or mne.io.BaseRaw
    card : ModelCard
    events : dict or None
        Annotation renames first, ``{"T1": "left_hand", ...}`` (as ``batch --events``).
    resample : bool or None
        See :func:`match_recording`.

    Returns
    -------
    X : ndarray of shape (n_trials, n_channels, n_times)
    y : ndarray of int, shape (n_trials,)
        Index of each trial's class in ``card.class_names``.
    onsets : ndarray of float, shape (n_trials,)
        Seconds from the recording's first sample, in time order.
    n_cues : int
        Cues naming a class, the trials left out included.

    Raises
    ------
    ContractError
        The recording does not meet the card, or no annotation names a class of the card.
    NeurodecodeDataError
        The file cannot be read.
    """
    import mne

    from ..data.io.recordings import epochs_to_data
    from .predict import prepared_recording
    from .recording import _event_renames

    matched, report = prepared_recording(recording, card, resample=resample)
    renames = _event_renames(matched.annotations.description, events or {})
    if renames:
        matched.annotations.rename(renames)
    where = report["file"]
    present = [c for c in card.class_names if c in set(matched.annotations.description)]
    if not present:
        found = sorted(set(matched.annotations.description))
        shown = ", ".join(found[:8]) + (" ..." if len(found) > 8 else "") if found else "none"
        raise ContractError(f"{where}: no annotation names a class of the model ({', '.join(card.class_names)}); "
                            f"its annotations: {shown}; map them with --events, e.g. --events "
                            f"T1={card.class_names[0]},T2={card.class_names[-1]}")
    event_id = {c: i + 1 for i, c in enumerate(card.class_names) if c in present}
    found_events, _ = mne.events_from_annotations(matched, event_id=event_id, verbose="error")
    try:
        part = epochs_to_data(matched, found_events, event_id, tmin=float(card.window[0]),
                              tmax=float(card.window[1]), dataset="calibration", subject="calibration",
                              picks="all", class_names=card.class_names, source=where)
    except ValueError as err:  # every trial past the end (EmptySelectionError)
        raise ContractError(f"{where}: {err}") from None
    X = np.asarray(part.X) * card.scale
    if X.shape[-1] != card.n_times:
        raise ContractError(f"{where}: trials of {X.shape[-1]} samples, the model takes {card.n_times}")
    onsets = part.metadata["onset"].to_numpy(dtype=float)
    order = np.argsort(onsets, kind="stable")
    return X[order], np.asarray(part.y)[order], onsets[order], len(found_events)


def _file_name(recording) -> str:
    """A recording's file name, never its folder (the card may travel; a path can name a person)."""
    if isinstance(recording, (str, Path)):
        return Path(recording).name
    names = [f for f in (getattr(recording, "filenames", None) or ()) if f]
    return Path(names[0]).name if names else "recording"


def _encode(index, model, card: ModelCard):
    """Class indices as the model's labels (train_model's models are fitted on indices; others on names)."""
    classes = np.asarray(getattr(model, "classes_", np.arange(len(card.class_names))))
    if classes.dtype.kind in "iu":
        return np.asarray(index, dtype=classes.dtype)
    return np.asarray([card.class_names[i] for i in index], dtype=classes.dtype)


def _scores(model, card: ModelCard, X, y_index) -> dict:
    """Balanced accuracy (and ROC-AUC for two classes) of ``model`` on trials handed over as ``predict`` does."""
    from sklearn.metrics import roc_auc_score

    inputs = model_input(model, X, card)
    y = _encode(y_index, model, card)
    predicted = np.asarray(model.predict(inputs))
    present = np.unique(y)
    predicted_index, counts = np.unique(_index_of(predicted, model, card), return_counts=True)
    out = {"balanced_accuracy": float(np.mean(per_class_recall(y, predicted, labels=present))),
           "balanced_accuracy_chance": 1.0 / len(present),
           "predicted": {card.class_names[k]: int(c) for k, c in zip(predicted_index, counts)}}
    if len(card.class_names) == 2 and hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(inputs))[:, 1]
        out["roc_auc"] = float(roc_auc_score(y == np.asarray(model.classes_)[1], proba))
        out["roc_auc_chance"] = chance_level("roc_auc", 2)
    return out


def _index_of(labels, model, card: ModelCard):
    classes = np.asarray(getattr(model, "classes_", np.arange(len(card.class_names))))
    if classes.dtype.kind in "iu":
        return np.asarray(labels, dtype=int)
    return np.asarray([card.class_names.index(str(v)) for v in labels], dtype=int)


def _counts(y_index, card: ModelCard) -> dict:
    return {c: int(np.sum(np.asarray(y_index) == k)) for k, c in enumerate(card.class_names)}


def _figure_bytes(record: dict, card: ModelCard) -> bytes:
    """Bars of each held-out score before and after calibration, chance dashed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .._utils.plot_text import literal

    before, after = record["before"], record["after"]
    metrics = [("balanced_accuracy", "balanced accuracy")] + ([("roc_auc", "ROC-AUC")] if "roc_auc" in before else [])
    fig, ax = plt.subplots(figsize=(2.6 + 1.8 * len(metrics), 3.6))
    width = 0.36
    for i, (key, _) in enumerate(metrics):
        for j, (scores, name, colour) in enumerate([(before, "before", "#9aa4ae"), (after, "after", "#1f6feb")]):
            x = i + (j - 0.5) * width
            ax.bar(x, scores[key], width, color=colour, label=name if i == 0 else None)
            ax.text(x, scores[key] + 0.02, f"{scores[key]:.2f}", ha="center", fontsize=8)
        chance = before[f"{key}_chance"]
        ax.hlines(chance, i - width * 1.2, i + width * 1.2, colors="#c62828", linestyles="--",
                  label="chance" if i == 0 else None)
    ax.set_xticks(range(len(metrics)), [label for _, label in metrics])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score on the held-out trials")
    split = record["split"]
    ax.set_title(literal(f"{card.name}\n{split['n_holdout']} held-out trials (last {split['holdout']:g}), "
                         f"{record['mode']}"), fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def calibrate_model(model_path, recordings, out=None, *, unlabelled: bool = False, holdout: float = DEFAULT_HOLDOUT,
                    events=None, resample: bool | None = None):
    """A transfer model calibrated to a new person's recordings, scored before and after on their held-out trials.

    The trials of all ``recordings`` (in the order given, each in time order) are split in time
    order: the first ones calibrate, the last ``ceil(holdout * n_trials)`` are held out. Labelled
    (default): ``calibrate(X_cal, y_cal)`` on the calibration part (fine-tuning a network; a
    classical pipeline is recentred only, see docs/transfer.md). ``unlabelled``:
    ``calibrate(X)`` on every trial without any label (the held-out trials' signals count towards
    the reference, their labels are never used). Either way the scores are on the held-out trials
    only: "before" is the model as loaded (a held-out set of at least ``min_trials`` trials is
    aligned by its own reference, fewer by the sources' mean), "after" the calibrated copy.

    Parameters
    ----------
    model_path : path-like
        A model file whose model is a TransferClassifier (or a Pipeline ending in one).
    recordings : list of path-like
        The new person's calibration recordings (EDF, BDF, FIF, BrainVision, EEGLAB...).
    out : path-like or None
        Where to write the calibrated model file; its figure goes to :func:`figure_path`.
        Checked before any recording is read. None: nothing is written.
    unlabelled : bool
    holdout : float
        The share of trials held out, in (0, 1).
    events : dict or None
        Annotation renames, ``{"T1": "left_hand", ...}``.
    resample : bool or None
        See :func:`~neurodecode.contract.signal.match_recording`.

    Returns
    -------
    model : estimator
        The calibrated copy.
    card : ModelCard
        The loaded card with ``extra["calibration"]``: ``recordings`` (file names only), ``mode``,
        ``calibration`` (what the model did: ``recentred``, ``finetuned``), ``n_trials``,
        ``n_calibration``, ``n_reference``, ``split`` and ``before``/``after`` (held-out scores with
        chance), ``created``.

    Raises
    ------
    ModelFileError
        The model file is refused or damaged, or ``out`` cannot be written.
    CalibrationError
        Not a transfer model, ``holdout`` out of range, too few trials or classes in a part,
        nothing to calibrate.
    NeurodecodeDataError
        A recording cannot be read or does not meet the model (ContractError).
    """
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise CalibrationError(f"holdout must be a fraction between 0 and 1 (exclusive), got {holdout!r}")
    recordings = list(recordings)
    if not recordings:
        raise CalibrationError("no calibration recording given")
    model, card = load_model(model_path)  # the full trust check first
    transfer = transfer_step(model)
    if transfer is None:
        raise CalibrationError(f"model {card.name!r} ({card.pipeline_name}) is not a transfer model: calibrate needs "
                               "a model trained with a transfer pipeline (a TransferClassifier, e.g. "
                               "pipelines/RCT_TS_LR.py or pipelines/FBCNet_EA.py)")
    if unlabelled and transfer.alignment is None:
        raise CalibrationError(f"model {card.name!r} has no alignment: without labels there is nothing to calibrate "
                               "(give the cues: drop --unlabelled)")
    if out is not None:
        out = Path(out)
        if out.exists() and Path(model_path).exists() and out.resolve() == Path(model_path).resolve():
            raise ModelFileError(f"cannot write the calibrated model to {out}: it is the model being calibrated; "
                                 "name another file")
        check_writable(out, what="model file")
        check_writable(figure_path(out), what="figure")
    parts = []
    for recording in recordings:
        X, y, onsets, n_cues = cue_trials(recording, card, events=events, resample=resample)
        parts.append((_file_name(recording), X, y, n_cues))
    X = np.concatenate([p[1] for p in parts])
    y = np.concatenate([p[2] for p in parts])
    n = len(y)
    n_holdout = int(math.ceil(holdout * n - 1e-9))
    n_calibration = n - n_holdout
    if n_holdout < 2 or n_calibration < 1:
        raise CalibrationError(f"{n} trial(s) cannot be split into a calibration part and a held-out part of at least "
                               f"2 trials with holdout {holdout:g}; give a longer calibration run")
    held = slice(n_calibration, n)
    if len(np.unique(y[held])) < 2:
        only = card.class_names[int(y[held][0])]
        raise CalibrationError(f"the held-out part (the last {n_holdout} trials) holds only class {only!r}: it cannot "
                               "be scored; change --holdout or give a longer calibration run")
    before = _scores(model, card, X[held], y[held])
    if unlabelled:
        calibrated, _ = _calibrated_copy(model, None, None, None, None, model_input(model, X, card))
        n_reference = n
    else:
        calibrated, _ = _calibrated_copy(model, None, None, None, None, model_input(model, X[:n_calibration], card),
                                         _encode(y[:n_calibration], model, card))
        n_reference = n_calibration
    done = transfer_step(calibrated).calibration_
    if done is None:
        raise CalibrationError(f"model {card.name!r} has neither an alignment nor a network to fine-tune: "
                               "calibration would change nothing")
    after = _scores(calibrated, card, X[held], y[held])
    record = {
        "recordings": [p[0] for p in parts], "n_trials_per_recording": [int(len(p[2])) for p in parts],
        "n_cues_left_out": int(sum(p[3] - len(p[2]) for p in parts)),
        "mode": "unlabelled" if unlabelled else "labelled", "calibration": done,
        "n_trials": int(n), "n_calibration": int(n_calibration), "n_reference": int(n_reference),
        "class_counts": _counts(y, card),
        "split": {"how": "time order", "holdout": float(holdout), "n_calibration": int(n_calibration),
                  "n_holdout": int(n_holdout), "calibration_counts": _counts(y[:n_calibration], card),
                  "holdout_counts": _counts(y[held], card)},
        "before_alignment": ("own" if n_holdout >= transfer.min_trials else "sources' mean")
        if transfer.alignment is not None else "none",
        "min_trials": int(transfer.min_trials),
        "before": before, "after": after,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }
    data = card.to_dict()
    previous = data.pop("calibration", None)
    if previous is not None:
        record["previous"] = previous
    new_card = ModelCard.from_dict(data)
    new_card.extra["calibration"] = record
    if not new_card.name.endswith(" (calibrated)"):
        new_card.name = f"{new_card.name} (calibrated)"
    if out is not None:
        figure = _figure_bytes(record, new_card)
        try:
            save_model(calibrated, new_card, out)
        except OSError as err:
            raise ModelFileError(f"cannot write the model file {out}: {err.strerror or err}; nothing was written "
                                 "there") from None
        from .._utils.files import write_atomically

        try:
            write_atomically(figure_path(out), figure)
        except OSError as err:
            raise ModelFileError(f"the calibrated model was saved to {out}, but its figure could not be written to "
                                 f"{figure_path(out)}: {err.strerror or err}") from None
    return calibrated, new_card


def calibration_lines(card: ModelCard) -> list[str]:
    """What ``neurodecode calibrate`` prints of a calibrated card: the trials, the split, before/after with chance."""
    record = card.extra["calibration"]
    split = record["split"]

    def counts(c):
        return ", ".join(f"{k} {v}" for k, v in c.items())

    per = ", ".join(f"{name} ({k})" for name, k in zip(record["recordings"], record["n_trials_per_recording"]))
    lines = [f"{card.name}: {record['n_trials']} cue-locked trials ({counts(record['class_counts'])}) from {per}"
             + (f"; {record['n_cues_left_out']} cue(s) too close to the end left out" if record["n_cues_left_out"]
                else "")]
    lines.append(f"  split in time order: the first {split['n_calibration']} trials calibrate "
                 f"({counts(split['calibration_counts'])}), the last {split['n_holdout']} are held out "
                 f"({counts(split['holdout_counts'])}; holdout {split['holdout']:g})")
    if record["mode"] == "unlabelled":
        lines.append(f"  unlabelled: reference from all {record['n_reference']} trials, no label used; "
                     f"the model was {record['calibration']}")
    else:
        what = record["calibration"]
        lines.append(f"  labelled: {record['n_calibration']} calibration trials; the model was {what}"
                     + (" (a classical pipeline's calibrate recentres only: the labels were not used)"
                        if what == "recentred" else ""))
    before, after = record["before"], record["after"]
    lines.append(f"  held-out scores ({split['n_holdout']} trials; before: the model as loaded, the held-out trials "
                 + ("aligned by their own reference" if record["before_alignment"] == "own" else
                    f"aligned by the sources' mean reference (fewer than min_trials={record['min_trials']})"
                    if record["before_alignment"] != "none" else "without alignment") + "):")
    for key, label in (("balanced_accuracy", "balanced accuracy"), ("roc_auc", "ROC-AUC")):
        if key in before:
            lines.append(f"    {label:18s} before {before[key]:.3f}  after {after[key]:.3f}  "
                         f"chance {before[key + '_chance']:.3g}")
    if split["n_holdout"] < 20:
        present = [c for c in split["holdout_counts"].values() if c > 0]
        lines.append(f"  note: only {split['n_holdout']} held-out trials: one trial of the rarest class moves balanced "
                     f"accuracy by {1 / (len(present) * min(present)):.2f}; read these scores as rough")
    return lines
