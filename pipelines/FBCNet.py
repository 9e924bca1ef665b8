"""FBCNet (Mane et al., 2021) from braindecode, trained by neurodecode's Trainer, as a MOABB pipeline.

A filter bank (9 bands, 4-40 Hz) followed by spatial convolutions and log-variance pooling: built
for motor imagery with few trials, and 24 k weights on 64 channels x 481 samples at 160 Hz. Chosen
as the third network after a measurement on eegmmidb (docs/deep.md): on an H200, trained on 720
trials and tested on 180, it scored 0.76 accuracy in 6.5 s, against 0.69 (ShallowFBCSPNet), 0.68
(EEGNet) and 0.46 (Deep4Net). It needs the sampling rate, which the benchmark binds from the data.
Epochs as the other deep pipelines: ``NEURODECODE_DEEP_EPOCHS``, else 10 on a CPU, at most 300 on a GPU.
"""

from neurodecode.models import deep_pipeline

PIPELINE = {
    "name": "FBCNet",
    "paradigms": ["LeftRightImagery", "MotorImagery"],
    "citations": ["https://doi.org/10.48550/arXiv.2104.01233"],
    "pipeline": deep_pipeline("FBCNet", lr=1e-3),
}
