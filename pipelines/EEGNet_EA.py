"""EEGNet with Euclidean alignment, pretrained on many subjects and fine-tuned on a new person's trials.

Each training subject's trials are whitened by their mean covariance (Euclidean alignment, He & Wu,
IEEE TBME 2020) and EEGNet (braindecode, trained by neurodecode's Trainer) is pretrained on all of
them. A new person is aligned by their own trials: a calibration slice when one is given, else the
trials handed over together at prediction; with labelled calibration trials the network is
fine-tuned on them at a tenth of the learning rate (docs/transfer.md). Epochs as the other deep
pipelines: ``NEURODECODE_DEEP_EPOCHS``, else 10 on a CPU, at most 300 on a GPU.
"""

from neurodecode.models import deep_pipeline, default_max_epochs
from neurodecode.models.transfer import TransferClassifier

PIPELINE = {
    "name": "EEGNet+EA",
    "paradigms": ["LeftRightImagery", "MotorImagery"],
    "citations": ["https://doi.org/10.1088/1741-2552/aace8c", "https://doi.org/10.1109/TBME.2019.2913914"],
    "pipeline": TransferClassifier(deep_pipeline("EEGNet", lr=1e-3), alignment="euclidean", calibration="finetune",
                                   finetune_epochs=default_max_epochs(), finetune_lr_scale=0.1),
}
