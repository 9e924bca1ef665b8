"""EEGNet (Lawhern et al., 2018) from braindecode, trained by neurodecode's Trainer, as a MOABB pipeline.

The network is built from the data at fit time (channels, samples, classes, sampling rate); trials
are standardised, 20% of the training trials are held out for early stopping, and it trains on the
GPU (bfloat16) when torch sees one. Epochs: ``NEURODECODE_DEEP_EPOCHS`` when set, else 10 on a CPU
and at most 300 on a GPU, where early stopping (patience 20) ends it (docs/deep.md).
"""

from neurodecode.models import deep_pipeline

PIPELINE = {
    "name": "EEGNet",
    "paradigms": ["LeftRightImagery", "MotorImagery"],
    "citations": ["https://doi.org/10.1088/1741-2552/aace8c"],
    "pipeline": deep_pipeline("EEGNet", lr=1e-3),
}
