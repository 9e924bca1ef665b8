"""ShallowFBCSPNet (Schirrmeister et al., 2017) through braindecode's ``EEGClassifier``, as a MOABB pipeline.

Input size is read from the data at fit time; it trains on the GPU when torch sees one.
``NEURODECODE_DEEP_EPOCHS`` sets the epochs (default 10).
"""

from braindecode.models import ShallowFBCSPNet

from neurodecode.models import deep_pipeline

PIPELINE = {
    "name": "ShallowFBCSPNet",
    "paradigms": ["LeftRightImagery", "MotorImagery"],
    "citations": ["https://doi.org/10.1002/hbm.23730"],
    "pipeline": deep_pipeline(ShallowFBCSPNet, lr=6.25e-4),
}
