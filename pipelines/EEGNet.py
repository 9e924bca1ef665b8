"""EEGNet (Lawhern et al., 2018) through braindecode's ``EEGClassifier``, as a MOABB pipeline.

Input size is read from the data at fit time; it trains on the GPU when torch sees one.
``NEURODECODE_DEEP_EPOCHS`` sets the epochs (default 10).
"""

from braindecode.models import EEGNet

from neurodecode.models import deep_pipeline

PIPELINE = {
    "name": "EEGNet",
    "paradigms": ["LeftRightImagery", "MotorImagery"],
    "citations": ["https://doi.org/10.1088/1741-2552/aace8c"],
    "pipeline": deep_pipeline(EEGNet, lr=1e-3),
}
