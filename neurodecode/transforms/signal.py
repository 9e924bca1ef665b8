"""Give an estimator the signal facts (sampling rate, channels) that its input will not carry.

Transformers take their sampling rate and channel names from a
:class:`~neurodecode.data.DecodingData` at fit time. Code that can only hand them plain arrays
(MOABB's evaluations, for one) binds those facts into the estimator beforehand with
:func:`bind_signal_info`.
"""

from __future__ import annotations

from sklearn.base import clone

from .._utils.checks import unpack_data

__all__ = ["bind_signal_info"]


def bind_signal_info(estimator, info, *, n_times=None):
    """A clone of ``estimator`` whose unset signal parameters are filled from ``info``.

    Every parameter, at any depth (``get_params(deep=True)``: Pipeline steps, the estimator
    of a GridSearchCV, ...), whose own name is ``sfreq``, ``ch_names``, ``n_chans`` or
    ``n_times`` and whose value is None is set to ``info.sfreq``, ``list(info.ch_names)``,
    ``info.n_chans`` or ``n_times``. Values already set are left as they are: a contradiction
    with the data is then reported when the estimator is fitted on a DecodingData.

    Parameters
    ----------
    estimator : estimator
        Any scikit-learn estimator, possibly nested; it is not modified.
    info : SignalInfo or DecodingData
        What the data are; a DecodingData also gives ``n_times`` (its trials' length).
    n_times : int or None
        Samples per trial, for ``n_times`` parameters; None: the DecodingData's, or left unset.

    Returns
    -------
    bound : estimator
        ``clone(estimator)`` with the parameters set.

    Examples
    --------
    >>> pipe = bind_signal_info(make_pipeline(BandPower(), LDA()), data.info)  # doctest: +SKIP
    >>> pipe.fit(data.X, data.y)  # plain arrays now suffice  # doctest: +SKIP
    """
    trials, unpacked = unpack_data(info)
    if unpacked is not None:
        info = unpacked
        if n_times is None and getattr(trials, "ndim", 0) == 3:
            n_times = int(trials.shape[-1])
    for attribute in ("sfreq", "ch_names"):
        if not hasattr(info, attribute):
            raise TypeError(f"bind_signal_info: info must be a SignalInfo or a DecodingData, got {type(info).__name__}")
    values = {"sfreq": None if info.sfreq is None else float(info.sfreq), "ch_names": list(info.ch_names),
              "n_chans": len(info.ch_names), "n_times": n_times}
    bound = clone(estimator)
    updates = {}
    for key, value in bound.get_params(deep=True).items():
        own = key.rsplit("__", 1)[-1]
        if own in values and value is None and values[own] is not None:
            updates[key] = values[own]
    return bound.set_params(**updates) if updates else bound
