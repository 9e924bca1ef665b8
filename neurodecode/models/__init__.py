"""Models stage: decoders (deep networks through braindecode, trained by :mod:`neurodecode.training`)."""

from .deep import AUGMENTATIONS, DeepClassifier, deep_pipeline, default_max_epochs

__all__ = ["AUGMENTATIONS", "DeepClassifier", "deep_pipeline", "default_max_epochs"]
