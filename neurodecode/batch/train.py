"""Train a pipeline on a dataset's trials and describe the result in a model card."""

from __future__ import annotations

import datetime
import math

import numpy as np

from ..contract.model_file import ModelCard, check_storable, save_model
from ..contract.versions import package_versions

__all__ = ["RANDOM_STATE", "train_model"]

#: The cross-validation seed (MOABB's benchmark seeds its evaluations with 42 too).
RANDOM_STATE = 42
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


def _check_rate_parameters(estimator, sfreq: float) -> None:
    # A sampling rate set by hand in a pipeline is never checked against plain arrays: a
    # BandPower(sfreq=250) fitted on 160 Hz trials would compute wrong bands without a word.
    for key, value in estimator.get_params(deep=True).items():
        if key.rsplit("__", 1)[-1] == "sfreq" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and not math.isclose(float(value), sfreq, rel_tol=1e-9):
            raise ValueError(f"pipeline parameter {key}={value} Hz contradicts the data's {sfreq:g} Hz: leave it unset "
                             "(None) to take the data's rate")


def train_model(pipeline_spec_or_estimator, dataset_spec, *, subjects=None, cv: int = 5, out=None,
                name: str | None = None, notes: str = "", resample: bool = False):
    """Cross-validate a pipeline on a dataset's trials, fit it on all of them, and fill its card.

    The trials are the dataset's cue-locked epochs (:meth:`Dataset.load
    <neurodecode.data.dataset.Dataset.load>`: its paradigm's classes, interval and band).
    Cross-validation pools the chosen subjects' trials: stratified ``cv`` folds, shuffled with
    seed 42, scored with MOABB's metric (ROC AUC for two classes, accuracy otherwise). Then the
    pipeline, its unset signal parameters bound to the data (``sfreq=None`` ->
    the data's rate, :func:`~neurodecode.transforms.signal.bind_signal_info`), is fitted on every
    trial.

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
        Folds, at least 2 and at most the trials of the rarest class.
    out : path or None
        Write the model file there (:func:`~neurodecode.contract.model_file.save_model`). Whether
        the pipeline can be stored is checked before any training.
    name : str or None
        The model's name; default ``"<pipeline> on <dataset>"``.
    notes : str
        Free text for the card.
    resample : bool
        The card's ``resample``: may predictions resample a recording at another rate.

    Returns
    -------
    estimator : estimator
        Fitted on every trial.
    card : ModelCard

    Raises
    ------
    ModelFileError
        ``out`` is given and the pipeline holds types a model file may not hold (deep
        torch/skorch pipelines): raised before training.
    ValueError
        ``cv`` impossible for these trials, or a pipeline rate that contradicts the data's.
    NeurodecodeDataError
        The dataset or subjects cannot be loaded.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from .. import __version__
    from ..data.registry import get_dataset
    from ..transforms.signal import bind_signal_info

    estimator, pipeline_name, phash = _resolve_pipeline(pipeline_spec_or_estimator, name)
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ValueError(f"cv must be an integer of at least 2 folds, got {cv!r}")
    dataset = get_dataset(dataset_spec)
    chosen = dataset.select_subjects(subjects)
    data = dataset.load(chosen)
    info = data.info
    if info.sfreq is None or np.asarray(data.X).ndim != 3:
        raise ValueError(f"dataset {dataset.name!r}: train_model needs trials of shape (n_trials, n_channels, "
                         f"n_times) with a sampling rate; got {data.shape}")
    counts = data.class_counts()
    rarest = min(counts.values())
    if len(counts) < 2 or rarest < cv:
        raise ValueError(f"cv={cv} folds need at least {cv} trials of every class; dataset {dataset.name!r}, "
                         f"subjects {chosen}: {counts}")
    bound = bind_signal_info(estimator, data)
    _check_rate_parameters(bound, float(info.sfreq))
    if out is not None:
        check_storable(bound, what=pipeline_name, path=out)
    metric = "roc_auc" if len(info.class_names) == 2 else "accuracy"
    folds = StratifiedKFold(n_splits=int(cv), shuffle=True, random_state=RANDOM_STATE)
    X, y = data.X, data.y
    per_fold = cross_val_score(bound, X, y, cv=folds, scoring=metric, error_score="raise")
    fitted = bind_signal_info(estimator, data).fit(X, y)
    n_times = X.shape[-1]
    tmin = float(info.tmin)
    band = dataset.paradigm.band
    card = ModelCard(
        name=name or f"{pipeline_name} on {dataset.name}",
        created=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        neurodecode_version=__version__, versions=package_versions(), dataset=dataset.name,
        subjects=[s.item() if hasattr(s, "item") else s for s in chosen],
        paradigm={"kind": dataset.paradigm.kind, "classes": list(info.class_names),
                  "interval": [float(t) for t in dataset.paradigm.interval],
                  "band": None if band is None else [float(b) for b in band]},
        sfreq=float(info.sfreq), ch_names=list(info.ch_names),
        # The window as the trials have it (first and last sample), so that n_times matches exactly.
        window=[tmin, round(tmin + (n_times - 1) / float(info.sfreq), 9)],
        class_names=list(info.class_names),
        scores={"metric": metric, "mean": float(np.mean(per_fold)), "std": float(np.std(per_fold)),
                "per_fold": [float(s) for s in per_fold],
                "cv": {"kind": "StratifiedKFold", "n_splits": int(cv), "shuffle": True,
                       "random_state": RANDOM_STATE, "pooled_subjects": True},
                "n_trials": len(data), "class_counts": {k: int(v) for k, v in counts.items()}},
        pipeline_name=pipeline_name, pipeline_hash=phash, resample=bool(resample), notes=notes,
        unit=info.unit)
    if card.n_times != n_times:  # the window is rounded to the sample grid; it must give back the trials' length
        raise ValueError(f"window {card.window} at {card.sfreq} Hz gives {card.n_times} samples, trials have {n_times}")
    if out is not None:
        save_model(fitted, card, out)
    return fitted, card
