"""Riemannian recentring (RCT) + FgMDM, as a cross-subject transfer pipeline.

Each training subject's OAS covariances are recentred at their own Riemannian mean (as pyRiemann's
``TLCenter``) and FgMDM (geodesic filtering then minimum distance to the class means, on
neurodecode's batched Riemannian core) is pretrained on all of them. A new person is recentred by
their own trials: a calibration slice when one is given, else the trials handed over together at
prediction (docs/transfer.md). With labelled calibration trials FgMDM is refitted on the source and
calibration matrices together.
"""

from sklearn.pipeline import make_pipeline

from neurodecode.models.riemann import FgMDM
from neurodecode.models.transfer import TransferClassifier
from neurodecode.transforms import Covariances

PIPELINE = {
    "name": "RCT+FgMDM",
    "paradigms": ["LeftRightImagery", "MotorImagery"],
    "citations": ["https://doi.org/10.1109/TBME.2017.2742541", "https://doi.org/10.1016/j.neucom.2012.12.039"],
    "pipeline": TransferClassifier(make_pipeline(Covariances("oas"), FgMDM()), alignment="riemannian",
                                   calibration="finetune"),
}
