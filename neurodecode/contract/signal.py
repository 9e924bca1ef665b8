"""The signal contract: a recording made to meet what a fitted model expects, or told why it cannot.

A model expects what it was trained on (its :class:`~neurodecode.contract.model_file.ModelCard`):
these channels, by name, in this order; this sampling rate. :func:`match_recording` is the one
route by which a recording's channels and rate reach a fitted model in ``predict``, ``batch`` and
``online``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from ..data.errors import InvalidDataError
from .model_file import ModelCard

__all__ = ["ContractError", "bind_signal", "card_signal_info", "match_recording", "model_input",
           "takes_container"]


class ContractError(InvalidDataError):
    """A recording that does not meet what a model expects (channels, sampling rate, length)."""


def _where(raw) -> str:
    names = [f for f in (getattr(raw, "filenames", None) or ()) if f]
    return Path(names[0]).name if names else "recording"


def _rename_loosely(names: list, wanted: list):
    """The one channel-naming rule (:func:`neurodecode.data.channels.match_names`) applied to a recording.

    EDF writers spell the model's ``FC5`` as ``"Fc5."``, ``"EEG Fc5"``, ``"Fc5-REF"``...; returns the
    :class:`~neurodecode.data.channels.NameMatch`, whose ``renamed`` maps recording names to model names.
    """
    from ..data.channels import match_names

    return match_names(wanted, names)


def match_recording(raw, card: ModelCard, *, resample: bool | None = None):
    """A copy of ``raw`` with the model's channels, in the model's order, at the model's rate.

    Channels are matched by name. When a model channel is absent under its exact name, a
    recording channel equal to it up to letter case, ``EEG`` prefixes, ``-REF`` suffixes, padding
    dots and the old 10-20 names (EDF's ``"Fc5."``, ``"EEG Fc5"`` or ``"Fc5-REF"`` for ``"FC5"``,
    ``"T3"`` for ``"T7"``; :func:`neurodecode.data.channels.match_names`) is taken, provided exactly
    one matches; the renaming is reported.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Preloaded; it is not modified.
    card : ModelCard
    resample : bool or None
        None: resample a recording at another rate only when ``card.resample`` allows it;
        True: resample it; False: never.

    Returns
    -------
    raw : mne.io.BaseRaw
        The model's channels only, in ``card.ch_names`` order, at ``card.sfreq``; no channel
        marked bad (every one of them is needed).
    report : dict
        ``file``, ``extra_channels`` (in the recording, not used by the model), ``reordered``
        (the model's channels were there in another order), ``renamed`` (recording name ->
        model name), ``bads`` (model channels the recording marked bad: used anyway),
        ``resampled_from`` (the recording's rate, or None).

    Raises
    ------
    ContractError
        Model channels missing (one line: how many, the first few, and why none matched), or
        another sampling rate without resampling.
    """
    where = _where(raw)
    names = list(raw.ch_names)
    wanted = list(card.ch_names)
    matched = _rename_loosely(names, wanted)
    renamed = matched.renamed
    if matched.missing:
        from ..data.channels import describe_unmatched

        raise ContractError(f"{where}: {describe_unmatched(matched)}")
    sfreq = float(raw.info["sfreq"])
    same_rate = math.isclose(sfreq, float(card.sfreq), rel_tol=1e-9)
    allowed = card.resample if resample is None else bool(resample)
    if not same_rate and not allowed:
        raise ContractError(f"{where}: sampled at {sfreq:g} Hz but model {card.name!r} was trained at "
                            f"{float(card.sfreq):g} Hz; resample it (resample=True, --resample) or train at "
                            f"{sfreq:g} Hz")
    out = raw.copy()
    if renamed:
        out.rename_channels(renamed)
    used = [renamed.get(n, n) for n in names]
    present_order = [n for n in used if n in set(wanted)]
    bads = [b for b in (renamed.get(n, n) for n in out.info["bads"]) if b in set(wanted)]
    out.info["bads"] = []
    out.pick(wanted)
    if not same_rate:
        # Resampled before filtering, so that the band-pass is designed at the training rate, as in training.
        out.resample(float(card.sfreq), npad="auto", verbose="error")
    report = {"file": where, "extra_channels": [n for n in names if renamed.get(n, n) not in set(wanted)],
              "reordered": present_order != wanted, "renamed": renamed, "bads": bads,
              "resampled_from": None if same_rate else sfreq}
    return out, report


def card_signal_info(card: ModelCard):
    """The :class:`~neurodecode.data.container.SignalInfo` a model was fitted on, from its card."""
    from ..data.container import SignalInfo

    return SignalInfo(sfreq=float(card.sfreq), ch_names=tuple(card.ch_names), ch_types=("eeg",) * len(card.ch_names),
                      modality="eeg", class_names=tuple(card.class_names), tmin=float(card.window[0]),
                      unit=card.unit if card.unit in ("SI", "uV") else "SI")


def _first_step(model):
    steps = getattr(model, "steps", None)
    return _first_step(steps[0][1]) if steps else model


def takes_container(model) -> bool:
    """Whether a model's first step reads the signal contract from a DecodingData (neurodecode's own)."""
    return type(_first_step(model)).__module__.startswith("neurodecode.")


def model_input(model, X, card: ModelCard, info=None):
    """What a fitted model is handed: windows with the card's signal contract, checked against the model.

    Every application (``predict``, ``batch``, ``online``) gives a fitted model its windows through
    this. A model whose first step is one of neurodecode's transformers gets a
    :class:`~neurodecode.data.container.DecodingData` carrying the card's rate and channel order, so
    that the transformers' one checker (:mod:`neurodecode._utils.checks`) compares them with what it
    recorded at fit (``sfreq_``, ``ch_names_``) and refuses a contradiction. Any other model (a
    pyRiemann or scikit-learn first step, which reads arrays only) gets the array, after the card's
    shape is checked.

    Parameters
    ----------
    model : estimator
        The fitted model of the card.
    X : ndarray of shape (n_windows, n_channels, n_times)
        In the card's channel order and at its rate (:func:`match_recording`).
    card : ModelCard
    info : SignalInfo or None
        :func:`card_signal_info` of ``card``, when the caller keeps one (a live loop).

    Returns
    -------
    DecodingData or ndarray
        Labels and metadata of a DecodingData are placeholders (label 0, unknown subject).
    """
    import numpy as np

    from ..data.container import DecodingData

    X = np.asarray(X)
    if X.ndim != 3 or X.shape[1] != len(card.ch_names) or X.shape[2] != card.n_times:
        raise ContractError(f"model {card.name!r} takes windows of {len(card.ch_names)} channels x {card.n_times} "
                            f"samples; got shape {X.shape}")
    if not takes_container(model):
        return X
    info = card_signal_info(card) if info is None else info
    return DecodingData(X, np.zeros(len(X), dtype=int), _placeholder_metadata(len(X)), info)


@functools.lru_cache(maxsize=8)
def _placeholder_metadata(n_windows: int):
    # Built once per window count: a live loop asks for the same one-window frame at every decision.
    import pandas as pd

    from ..data.container import METADATA_COLUMNS

    return pd.DataFrame({column: ["unknown"] * n_windows for column in METADATA_COLUMNS})


def bind_signal(estimator, info):
    """``estimator`` with parameters left to the data (``sfreq=None``...) set from ``info`` (None: unchanged).

    The route by which the benchmark, which hands MOABB's plain arrays to pipelines, gives them the
    signal MOABB read.
    """
    from ..transforms.signal import bind_signal_info

    return bind_signal_info(estimator, info) if info is not None else estimator
