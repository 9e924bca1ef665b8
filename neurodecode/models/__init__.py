"""Models stage: decoders (deep networks through braindecode, trained by :mod:`neurodecode.training`)."""

from .deep import AUGMENTATIONS, DeepClassifier, deep_pipeline, default_max_epochs
from .transfer import TransferClassifier

__all__ = ["AUGMENTATIONS", "DeepClassifier", "TransferClassifier", "deep_pipeline", "default_max_epochs"]
