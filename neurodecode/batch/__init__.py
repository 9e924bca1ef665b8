"""Batch stage: train a model file, predict whole recordings, run over folders of recordings.

Model files, their cards and the channel/rate contract are the shared contract stage's
(:mod:`neurodecode.contract`).

Names are imported on first use (``neurodecode.batch.load_model``), so that importing the stage
loads neither skops nor mne until they are needed.
"""

import importlib

_EXPORTS = {
    "predict_recording": "predict",
    "train_model": "train",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
