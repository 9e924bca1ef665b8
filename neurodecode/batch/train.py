"""Train a pipeline on a dataset's trials and describe the result in a model card.

Two cross-validations are reported, each labelled with how it split the trials:

* **leave-subjects-out** (the headline with 2 or more subjects): ``GroupKFold`` over subjects,
  ``min(cv, n_subjects)`` folds, so that every test fold holds people the fold's model never
  saw. This is the figure for a new person.
* **pooled**: ``StratifiedKFold`` over every chosen subject's trials mixed, shuffled with seed
  42. The same people are in training and test, so it is higher than what a new person gets;
  with one subject it is the only figure (within that subject) and no figure on new people is
  possible.

Both run through one fold loop (:func:`_cross_validate`). The headline's 95% interval over
folds is compared with chance (0.5 ROC AUC for two classes; ``1 / n_classes`` balanced
accuracy otherwise): a model whose interval reaches chance is flagged (``scores["at_chance"]``).
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..contract.model_file import ModelCard, ModelFileError, check_storable, save_model
from ..contract.signal import bind_signal, takes_container
from ..contract.versions import package_versions

__all__ = ["CONFIDENCE", "RANDOM_STATE", "chance_level", "check_writable", "score_lines", "train_model"]

#: The pooled cross-validation's seed (MOABB's benchmark seeds its evaluations with 42 too).
RANDOM_STATE = 42
#: Coverage of the interval over folds that decides whether a model is above chance.
CONFIDENCE = 0.95


def _resolve_pipeline(pipeline_spec_or_estimator, name):
    """(estimator, pipeline name, pipeline hash) from a PipelineSpec or a bare estimator."""
    from ..contract.pipeline_files import pipeline_hash

    spec = pipeline_spec_or_estimator
    if hasattr(spec, "pipeline") and hasattr(spec, "name"):
        return spec.pipeline, str(spec.name), spec.hash or pipeline_hash(spec.pipeline)
    if not (hasattr(spec, "fit") and hasattr(spec, "get_params")):
        raise TypeError(f"train_model: expected a PipelineSpec (load_pipelines) or a scikit-learn estimator, got "
                        f"{type(spec).__name__}")
    return spec, name or type(spec).__name__, pipeline_hash(spec)


def chance_level(metric: str, n_classes: int) -> float:
    """The score of a model that knows nothing: 0.5 ROC AUC, ``1 / n_classes`` balanced accuracy."""
    if metric == "roc_auc":
        return 0.5
    if metric == "balanced_accuracy":
        return 1.0 / int(n_classes)
    raise ValueError(f"no chance level known for metric {metric!r}")


def check_writable(path, *, what: str = "model file", make_folders: bool = False) -> Path:
    """Refuse, before any work, a place where ``path`` could not be written.

    Refused: ``path`` naming a folder or anything but a regular file, a read-only file, a
    parent folder that does not exist (unless ``make_folders``: the writer will create it), a
    parent that is a file, and a folder in which no file can be created (read-only, no
    permission). The last is probed by creating and removing an empty temporary file there
    (with ``make_folders``, in the nearest folder that exists), which is what the atomic write
    will do.

    Parameters
    ----------
    path : str or Path
    what : str
        How the error names the file.
    make_folders : bool
        Whether the writer creates missing folders (:func:`save_model` does); the command line
        refuses a missing folder instead, so that a mistyped one is not created silently.

    Returns
    -------
    path : Path

    Raises
    ------
    ModelFileError
        One line saying what is wrong with the place.
    """
    path = Path(path)
    where = f"cannot write the {what} to {path}:"
    if path.is_dir():
        raise ModelFileError(f"{where} it is a folder; name a file in it, e.g. {path / 'model.ndm'}")
    if path.exists() and not path.is_file():
        raise ModelFileError(f"{where} it exists and is not a regular file")
    folder = path.parent
    if not folder.exists():
        if not make_folders:
            raise ModelFileError(f"{where} folder {folder} does not exist (create it first)")
        folder = next(p for p in folder.parents if p.exists())
    if not folder.is_dir():
        raise ModelFileError(f"{where} {folder} is not a folder")
    # Write bits as well as access(): root may write a file its owner marked read-only.
    if path.is_file() and (not path.stat().st_mode & 0o222 or not os.access(path, os.W_OK)):
        raise ModelFileError(f"{where} the file is read-only; remove it or name another file")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as err:
        raise ModelFileError(f"{where} no file can be created in folder {folder} ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"train: {text}", file=sys.stderr, flush=True)


def _load_by_subject(dataset, subjects, progress: bool):
    """The subjects' trials, loaded one subject at a time so that progress can be told per subject."""
    from ..data.container import DecodingData
    from ..data.errors import EmptySelectionError, NeurodecodeDataError, PartialLoadError

    parts, failures = [], {}
    for k, subject in enumerate(subjects, 1):
        started = time.perf_counter()
        try:
            part = dataset.load([subject], progress=False)
        except EmptySelectionError:  # none of the classes in this subject's recordings: skipped, as a whole load does
            _say(progress, f"subject {subject} ({k}/{len(subjects)}): no trial of the paradigm's classes, skipped")
            continue
        except PartialLoadError as err:
            failures.update(err.failures)
            continue
        except NeurodecodeDataError as err:
            failures[f"subject {subject}"] = err
            continue
        parts.append(part)
        _say(progress, f"subject {subject} ({k}/{len(subjects)}): {len(part)} trials, "
                       f"{time.perf_counter() - started:.1f} s")
    loaded = DecodingData.concatenate(parts) if parts else None
    if failures:
        raise PartialLoadError(loaded, failures)
    if loaded is None:
        raise EmptySelectionError(f"dataset {dataset.name!r}: none of the classes {list(dataset.paradigm.classes)} "
                                  f"is annotated in the recordings of subject(s) {list(subjects)}")
    return loaded


def _interval(per_fold, low: float, high: float) -> list:
    """Student's t interval of the mean over folds, clipped to the metric's range ([0, 1] for both).

    Folds share training trials, so the interval is optimistic about its width (Nadeau &
    Bengio 2003); it is a floor on the uncertainty, not a test.
    """
    from scipy import stats

    per_fold = np.asarray(per_fold, dtype=float)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(per_fold) - 1) * per_fold.std(ddof=1) / np.sqrt(len(per_fold))
    mean = float(per_fold.mean())
    return [float(max(low, mean - half)), float(min(high, mean + half))]


def _cross_validate(estimator, data, splits, metric: str, label: str, progress: bool, fold_names=None) -> list:
    """Score ``estimator`` on each (train, test) split: a fresh clone fitted per fold.

    ``data`` is indexed per fold and handed over as at prediction (a DecodingData for a model
    whose first step reads the signal contract, else its array). ``fold_names``: what each
    fold's progress line says it tests.
    """
    from sklearn.base import clone
    from sklearn.metrics import get_scorer

    scorer = get_scorer(metric)
    scores = []
    for k, (train, test) in enumerate(splits, 1):
        started = time.perf_counter()
        X_train = data[train] if takes_container(estimator) else data.X[train]
        X_test = data[test] if takes_container(estimator) else data.X[test]
        model = clone(estimator).fit(X_train, data.y[train])
        scores.append(float(scorer(model, X_test, data.y[test])))
        tested = f" ({fold_names[k - 1]})" if fold_names else ""
        _say(progress, f"{label}, fold {k}/{len(splits)}{tested}: {metric} {scores[-1]:.3f}, "
                       f"{time.perf_counter() - started:.1f} s")
    return scores


def _summary(split: str, per_fold, cv: dict) -> dict:
    """One split's figures; ``std`` over folds as before (``ddof=0``), the interval from ``ddof=1``."""
    return {"split": split, "mean": float(np.mean(per_fold)), "std": float(np.std(per_fold)),
            "per_fold": [float(s) for s in per_fold], "ci95": _interval(per_fold, 0.0, 1.0), "cv": cv}


def _subject_folds(data, cv: int):
    """Leave-subjects-out folds: ``GroupKFold`` over subjects, ``min(cv, n_subjects)`` folds."""
    from sklearn.model_selection import GroupKFold

    subjects = data.groups("subject")
    n_splits = min(int(cv), len(np.unique(subjects)))
    splits = list(GroupKFold(n_splits=n_splits).split(data.X, data.y, subjects))
    test_subjects = [sorted({s.item() if hasattr(s, "item") else s for s in subjects[test]}) for _, test in splits]
    n_classes = len(data.info.class_names)
    for (_, test), held_out in zip(splits, test_subjects):
        if len(np.unique(data.y[test])) < n_classes:
            raise ValueError(f"leave-subjects-out fold testing subject(s) {held_out} lacks a class "
                             f"({data[test].class_counts()}); choose subjects that each have every class")
    cv_info = {"kind": "GroupKFold", "n_splits": n_splits, "groups": "subject", "pooled_subjects": False,
               "test_subjects": test_subjects}
    return splits, cv_info


def _pooled_folds(data, cv: int):
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=int(cv), shuffle=True, random_state=RANDOM_STATE)
    cv_info = {"kind": "StratifiedKFold", "n_splits": int(cv), "shuffle": True, "random_state": RANDOM_STATE,
               "pooled_subjects": True}
    return list(folds.split(data.X, data.y)), cv_info


def train_model(pipeline_spec_or_estimator, dataset_spec, *, subjects=None, cv: int = 5, out=None,
                name: str | None = None, notes: str = "", resample: bool = False, progress: bool = False):
    """Cross-validate a pipeline on a dataset's trials, fit it on all of them, and fill its card.

    The trials are the dataset's cue-locked epochs (:meth:`Dataset.load
    <neurodecode.data.dataset.Dataset.load>`: its paradigm's classes, interval and band). The
    pipeline, its unset signal parameters bound to the data (``sfreq=None`` -> the data's rate,
    :func:`~neurodecode.contract.signal.bind_signal`), is handed the trials as a prediction
    hands them (:func:`~neurodecode.contract.signal.model_input`'s rule): a DecodingData when its
    first step is one of neurodecode's, so that the rate and channel names it records at fit
    are those checked at prediction and a rate set by hand that contradicts the data is
    refused; the plain array otherwise.

    Scores (ROC AUC for two classes, balanced accuracy otherwise) come from two
    cross-validations (see the module's docstring): leave-subjects-out, the headline with 2 or
    more subjects, and pooled. Then the pipeline is fitted on every trial.

    Parameters
    ----------
    pipeline_spec_or_estimator : PipelineSpec or estimator
        A pipeline from :func:`~neurodecode.contract.pipeline_files.load_pipelines`, or an unfitted
        scikit-learn estimator taking (n_trials, n_channels, n_times) arrays.
    dataset_spec : str or Dataset
        Anything :func:`~neurodecode.data.registry.get_dataset` takes.
    subjects : list or None
        Training subjects; None: every subject present.
    cv : int
        Folds of the pooled cross-validation, at least 2 and at most the trials of the rarest
        class; the leave-subjects-out one has ``min(cv, n_subjects)``.
    out : path or None
        Write the model file there (:func:`~neurodecode.contract.model_file.save_model`). Whether
        the pipeline can be stored there (:func:`check_storable`, :func:`check_writable`) is
        checked before any data are loaded.
    name : str or None
        The model's name; default ``"<pipeline> on <dataset>"``.
    notes : str
        Free text for the card.
    resample : bool
        The card's ``resample``: may predictions resample a recording at another rate.
    progress : bool
        Tell on stderr each subject loaded, each fold (k/n, score, seconds) and the final fit.

    Returns
    -------
    estimator : estimator
        Fitted on every trial.
    card : ModelCard
        ``card.scores``: ``metric``, ``chance``, ``headline`` (``"leave-subjects-out"`` or
        ``"pooled"``), the headline's ``mean``, ``std``, ``per_fold``, ``ci95`` and ``cv`` (how it
        split), ``at_chance`` (its ``ci95`` reaches chance), ``by_subject`` and ``pooled`` (each
        split's own figures; ``by_subject`` None with one subject), ``n_trials``,
        ``class_counts``.

    Raises
    ------
    ModelFileError
        ``out`` is given and the pipeline holds types a model file may not hold, or ``out``
        cannot be written (raised before training); or the write itself failed (a full disk:
        nothing is left at ``out``; the fitted model and card are the error's ``estimator`` and
        ``card``).
    ValueError
        ``cv`` impossible for these trials, or a pipeline rate that contradicts the data's.
    NeurodecodeDataError
        The dataset or subjects cannot be loaded.
    """
    from .. import __version__
    from ..data.registry import get_dataset

    estimator, pipeline_name, phash = _resolve_pipeline(pipeline_spec_or_estimator, name)
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ValueError(f"cv must be an integer of at least 2 folds, got {cv!r}")
    if out is not None:
        # Binding the data's rate and channels sets numbers only: the types a model file must trust are these.
        check_storable(estimator, what=pipeline_name, path=out)
        check_writable(out, make_folders=True)
    dataset = get_dataset(dataset_spec)
    chosen = dataset.select_subjects(subjects)
    data = _load_by_subject(dataset, chosen, progress)
    info = data.info
    if info.sfreq is None or np.asarray(data.X).ndim != 3:
        raise ValueError(f"dataset {dataset.name!r}: train_model needs trials of shape (n_trials, n_channels, "
                         f"n_times) with a sampling rate; got {data.shape}")
    counts = data.class_counts()
    rarest = min(counts.values())
    if len(counts) < 2 or rarest < cv:
        raise ValueError(f"cv={cv} folds need at least {cv} trials of every class; dataset {dataset.name!r}, "
                         f"subjects {chosen}: {counts}")
    bound = bind_signal(estimator, data)
    metric = "roc_auc" if len(info.class_names) == 2 else "balanced_accuracy"
    trained_subjects = [s.item() if hasattr(s, "item") else s for s in dict.fromkeys(data.groups("subject"))]
    by_subject = None
    if len(trained_subjects) >= 2:
        splits, cv_info = _subject_folds(data, cv)
        tested = ["test subject(s) " + ",".join(str(s) for s in fold) for fold in cv_info["test_subjects"]]
        per_fold = _cross_validate(bound, data, splits, metric, "leave-subjects-out", progress, tested)
        by_subject = _summary("leave-subjects-out", per_fold, cv_info)
    splits, cv_info = _pooled_folds(data, cv)
    pooled = _summary("pooled", _cross_validate(bound, data, splits, metric, "pooled", progress), cv_info)
    started = time.perf_counter()
    fitted = bind_signal(estimator, data).fit(data if takes_container(bound) else data.X, data.y)
    _say(progress, f"final fit on {len(data)} trials: {time.perf_counter() - started:.1f} s")
    headline = by_subject or pooled
    chance = chance_level(metric, len(info.class_names))
    n_times = data.X.shape[-1]
    tmin = float(info.tmin)
    band = dataset.paradigm.band
    card = ModelCard(
        name=name or f"{pipeline_name} on {dataset.name}",
        created=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        neurodecode_version=__version__, versions=package_versions(), dataset=dataset.name,
        subjects=trained_subjects,
        paradigm={"kind": dataset.paradigm.kind, "classes": list(info.class_names),
                  "interval": [float(t) for t in dataset.paradigm.interval],
                  "band": None if band is None else [float(b) for b in band]},
        sfreq=float(info.sfreq), ch_names=list(info.ch_names),
        # The window as the trials have it (first and last sample), so that n_times matches exactly.
        window=[tmin, round(tmin + (n_times - 1) / float(info.sfreq), 9)],
        class_names=list(info.class_names),
        scores={"metric": metric, "chance": chance, "headline": headline["split"],
                **{key: headline[key] for key in ("mean", "std", "per_fold", "ci95", "cv")},
                "at_chance": bool(headline["ci95"][0] <= chance),
                "by_subject": by_subject, "pooled": pooled,
                "n_trials": len(data), "class_counts": {k: int(v) for k, v in counts.items()}},
        pipeline_name=pipeline_name, pipeline_hash=phash, resample=bool(resample), notes=notes,
        unit=info.unit)
    if card.n_times != n_times:  # the window is rounded to the sample grid; it must give back the trials' length
        raise ValueError(f"window {card.window} at {card.sfreq} Hz gives {card.n_times} samples, trials have {n_times}")
    if out is not None:
        try:
            save_model(fitted, card, out)
        except OSError as err:  # a full disk, a folder made read-only since the check: the write left nothing
            error = ModelFileError(f"cannot write the model file {out}: {err.strerror or err}; nothing was written "
                                   "there (train again once there is room)")
            error.estimator, error.card = fitted, card
            raise error from None
    return fitted, card


def _figure(scores: dict, metric: str) -> str:
    return (f"{metric} {scores['mean']:.3f} +/- {scores['std']:.3f}, 95% CI "
            f"{scores['ci95'][0]:.2f}-{scores['ci95'][1]:.2f}, per fold "
            + " ".join(f"{s:.3f}" for s in scores["per_fold"]))


def score_lines(card: ModelCard, shown_subjects: str | None = None) -> list[str]:
    """What ``neurodecode train`` prints of a card's scores: the headline, each split labelled, chance.

    ``shown_subjects`` is how the first line names the training subjects (default: all of them).
    The last line is a ``WARNING`` when the headline is at chance (``scores["at_chance"]``).
    """
    scores = card.scores
    subjects = card.subjects
    shown = ",".join(str(s) for s in subjects) if shown_subjects is None else shown_subjects
    by_subject, pooled, metric = scores["by_subject"], scores["pooled"], scores["metric"]
    scope = "on new subjects" if by_subject else f"within subject {subjects[0]}"
    lines = [f"{card.name}: {scores['metric']} {scores['mean']:.3f} +/- {scores['std']:.3f} {scope} "
             f"({len(scores['per_fold'])}-fold CV, {scores['n_trials']} trials of subjects {shown}, "
             f"{card.sfreq:g} Hz, {len(card.ch_names)} channels)"]
    if by_subject:
        lines.append(f"  leave-subjects-out (GroupKFold by subject, {len(by_subject['per_fold'])} folds; "
                     f"the headline): {_figure(by_subject, metric)}")
        lines.append(f"  pooled (StratifiedKFold, {len(pooled['per_fold'])} folds over every subject's trials mixed; "
                     f"the same people in training and test, so higher than on new people): {_figure(pooled, metric)}")
    else:
        lines.append(f"  pooled (StratifiedKFold, {len(pooled['per_fold'])} folds over one subject's trials): "
                     f"{_figure(pooled, metric)}")
        lines.append("  new subjects: no figure is possible from one subject; train on 2 or more subjects for a "
                     "leave-subjects-out figure")
    lines.append(f"  chance: {scores['metric']} {scores['chance']:.3g}")
    if scores["at_chance"]:
        lo, hi = scores["ci95"]
        lines.append(f"WARNING: {card.name} is not distinguishable from chance {scope}: the 95% CI of "
                     f"{scores['metric']} ({lo:.2f}-{hi:.2f}, {scores['headline']}) reaches chance "
                     f"({scores['chance']:.3g})")
    return lines
