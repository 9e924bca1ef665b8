"""Class probabilities beside the streaming decoder's labels, from the very call that decided them.

:class:`~neurodecode.online.StreamingDecoder` returns labels only. Wrapping the model's final
step in a :class:`_ProbaRecorder` keeps the probabilities of the features it decided on, with no
second pass through the pipeline; ``predict`` stays the estimator's own, so labels equal the
unwrapped model's.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from .errors import LSLError

__all__ = ["class_index", "proba_columns", "with_recorder"]


class _ProbaRecorder(BaseEstimator):
    """A fitted estimator, predicting as itself and keeping each call's probabilities.

    Parameters
    ----------
    estimator : fitted estimator
        The model's final step.
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y=None):
        self.estimator.fit(X, y)
        return self

    def __sklearn_is_fitted__(self):
        return True

    @property
    def gives_proba(self) -> bool:
        """Whether the estimator has ``predict_proba`` (else nothing is recorded)."""
        return hasattr(self.estimator, "predict_proba")

    def predict(self, X):
        """The estimator's labels for ``X`` (n_samples, ...); its probabilities are kept for :meth:`drain`."""
        if self.gives_proba:
            self.probas_.extend(np.asarray(self.estimator.predict_proba(X), dtype=float))
        return self.estimator.predict(X)

    def drain(self) -> list:
        """The probability vectors recorded since the last call, in call order; forgets them."""
        out, self.probas_[:] = list(self.probas_), []
        return out


def with_recorder(model):
    """``(model with its final step wrapped, recorder)``; the fitted steps are shared, not copied."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        recorder = _ProbaRecorder(model.steps[-1][1])
        wrapped = Pipeline(model.steps[:-1] + [(model.steps[-1][0], recorder)])
    else:
        recorder = _ProbaRecorder(model)
        wrapped = recorder
    recorder.probas_ = []
    return wrapped, recorder


def class_index(value, class_names) -> int:
    """A model output (label k, or a class name) as an index into ``class_names``.

    Raises
    ------
    LSLError
        The output is neither.
    """
    if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(class_names):
        return int(value)
    if str(value) in class_names:
        return list(class_names).index(str(value))
    raise LSLError(f"the model predicted {value!r}, which is not one of the card's classes {list(class_names)}")


def proba_columns(model, class_names) -> list:
    """Column of ``predict_proba`` for each of ``class_names`` (None: the model never gives that class)."""
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    classes = getattr(final, "classes_", None)
    if classes is None:
        return list(range(len(class_names)))
    columns = {class_index(value, class_names): k for k, value in enumerate(classes)}
    return [columns.get(k) for k in range(len(class_names))]
