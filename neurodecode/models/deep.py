"""Deep decoders: braindecode networks as scikit-learn pipelines that MOABB and our runs accept."""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

from .._utils.checks import unpack_data


def _float32_trials(X) -> np.ndarray:
    """The trials of a DecodingData or of an array, as float32 (the network's weights are float32)."""
    return np.asarray(unpack_data(X)[0], dtype=np.float32)


def deep_pipeline(model, *, lr: float, max_epochs: int | None = None, batch_size: int = 32,
                  device: str | None = None) -> Pipeline:
    """A braindecode network behind ``EEGClassifier``, taking (n_trials, n_channels, n_times) float64 trials.

    No sampling rate or channel count is pinned: ``pipe.fit(data, data.y)`` with a DecodingData
    or with its plain array ``data.X`` both work, on any dataset.

    Parameters
    ----------
    model : type
        A braindecode model class (``EEGNet``, ``ShallowFBCSPNet``...). Its signal contract
        (``n_chans``, ``n_times``, ``n_outputs``) is read from the data at fit time, so one
        pipeline serves any dataset.
    lr : float
        AdamW learning rate.
    max_epochs : int or None
        Training epochs; None reads ``NEURODECODE_DEEP_EPOCHS`` (default 10: enough to finish on
        a 2-core CPU, far fewer than papers use).
    batch_size : int
    device : str or None
        None trains on the GPU when torch sees one, else on the CPU.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
    """
    from braindecode import EEGClassifier

    if max_epochs is None:
        max_epochs = int(os.environ.get("NEURODECODE_DEEP_EPOCHS", "10"))
    return make_pipeline(
        # MOABB hands out float64 microvolts; the network's weights are float32.
        FunctionTransformer(_float32_trials),
        EEGClassifier(
            model,
            max_epochs=max_epochs,
            batch_size=batch_size,
            optimizer=torch.optim.AdamW,
            optimizer__lr=lr,
            train_split=None,  # the evaluation's folds already hold out the test trials
            device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
            verbose=0,
        ),
    )
