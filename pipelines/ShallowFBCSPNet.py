"""ShallowFBCSPNet (Schirrmeister et al., 2017) through braindecode's ``EEGClassifier``, as a MOABB pipeline.

The network's input size (channels, samples, classes) is read from the data at fit time, so
the same file serves any motor-imagery dataset. It trains on the GPU when torch sees one,
else on the CPU. ``NEURODECODE_DEEP_EPOCHS`` sets the number of training epochs (default 10:
few enough to finish on a 2-core CPU; papers train for hundreds).
"""

import functools
import os

import numpy as np
import torch
from braindecode import EEGClassifier
from braindecode.models import ShallowFBCSPNet
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

EPOCHS = int(os.environ.get("NEURODECODE_DEEP_EPOCHS", "10"))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

PIPELINE = {
    "name": "ShallowFBCSPNet",
    "paradigms": ["LeftRightImagery", "MotorImagery"],
    "citations": ["https://doi.org/10.1002/hbm.23730"],
    "pipeline": make_pipeline(
        # MOABB hands out float64 microvolts; the network's weights are float32.
        FunctionTransformer(functools.partial(np.asarray, dtype=np.float32)),
        EEGClassifier(
            ShallowFBCSPNet,
            max_epochs=EPOCHS,
            batch_size=32,
            optimizer=torch.optim.AdamW,
            optimizer__lr=6.25e-4,
            train_split=None,  # MOABB's folds already hold out the test trials
            device=DEVICE,
            verbose=0,
        ),
    ),
}
