"""Training stage: one loop for every torch model (:class:`Trainer`), with torch and numpy only.

No scikit-learn, MNE or braindecode is imported here, so that the trainer runs on a GPU machine
that has only torch and numpy. See ``docs/deep.md``.
"""

from .config import MONITORS, TrainConfig
from .schedule import WarmupCosine
from .trainer import TrainResult, Trainer, predict_logits, resolve_device, should_compile

__all__ = ["MONITORS", "TrainConfig", "TrainResult", "Trainer", "WarmupCosine", "predict_logits", "resolve_device",
           "should_compile"]
