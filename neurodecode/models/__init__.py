"""Models stage: decoders (deep networks through braindecode)."""

from .deep import deep_pipeline

__all__ = ["deep_pipeline"]
