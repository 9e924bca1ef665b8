"""Batch stage: train a model file, predict whole recordings, run over folders of recordings.

Model files, their cards and the channel/rate contract are the shared contract stage's
(:mod:`neurodecode.contract`).

Names are imported on first use (``neurodecode.batch.load_model``), so that importing the stage
loads neither skops nor mne until they are needed.
"""

from .._utils.lazy import lazy_exports

_EXPORTS = {
    "calibrate_model": "calibrate",
    "predict_recording": "predict",
    "train_model": "train",
}
__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
