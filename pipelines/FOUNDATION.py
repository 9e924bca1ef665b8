"""The channel-agnostic foundation model (neurodecode.models.foundation), fine-tuned per fold, as a MOABB pipeline.

Each trial is resampled to 128 Hz and cut into 0.5 s single-channel patches, placed by their electrodes'
positions (the benchmark binds the channel names; positions come from MNE's standard 10-05 montage), and a
transformer encoder with a linear head is trained on the fold's trials through the one Trainer. Any montage
and paradigm go through the same model. With ``NEURODECODE_FOUNDATION_ENCODER`` naming an encoder file
(``save_encoder``, e.g. from ``benchmarks/foundation_pretrain.py --keep-encoder``) that pretrained encoder is
fine-tuned (lr 1e-4); without it a small encoder (d 32, 2 layers) is trained from scratch, sized for the
CPU budget of the main job. Epochs as the deep pipelines: ``NEURODECODE_DEEP_EPOCHS``, else 10 on a CPU.
See docs/foundation.md.
"""

import os

from sklearn.pipeline import make_pipeline

from neurodecode.models import default_max_epochs
from neurodecode.models.foundation import FoundationClassifier

_ENCODER = os.environ.get("NEURODECODE_FOUNDATION_ENCODER") or None
_PARAMS = (dict(pretrained=_ENCODER, lr=1e-4) if _ENCODER else
           dict(encoder_params={"d_model": 32, "n_layers": 2, "n_heads": 2, "mlp_ratio": 2.0}, lr=1e-3))

PIPELINE = {
    "name": "FOUNDATION",
    # The model takes any paradigm and montage; the main job runs it on motor imagery only, for its CPU budget.
    "paradigms": ["LeftRightImagery", "MotorImagery"],
    "citations": ["https://arxiv.org/abs/2405.18765", "https://arxiv.org/abs/2510.21585"],
    "pipeline": make_pipeline(FoundationClassifier(mode="finetune", max_epochs=default_max_epochs(), batch_size=32,
                                                   **_PARAMS)),
}
