"""Batch stage: trained models as safe files, predictions on whole recordings, batch runs.

Names are imported on first use (``neurodecode.batch.load_model``), so that importing the stage
loads neither skops nor mne until they are needed.
"""

import importlib

_EXPORTS = {
    "ModelCard": "model_file",
    "ModelFileError": "model_file",
    "TRUSTED_TYPES": "model_file",
    "check_storable": "model_file",
    "load_model": "model_file",
    "read_card": "model_file",
    "save_model": "model_file",
    "ContractError": "predict",
    "match_recording": "predict",
    "predict_recording": "predict",
    "package_versions": "train",
    "train_model": "train",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
