"""Riemannian recentring (RCT) + tangent space + logistic regression, as a cross-subject transfer pipeline.

Each training subject's OAS covariances are recentred at their own Riemannian mean (Zanini et al.
2018; pyRiemann's ``TLCenter``), so that every subject's mean becomes the identity before the
tangent space and the classifier: the model is pretrained on many people. A new person is recentred
by their own trials: a calibration slice when one is given (labelled or not; with labels the
logistic regression is also refitted on the source and calibration features together), else the
trials handed over together at prediction (docs/transfer.md). Beside COV_TS_LR.yml, which is the
same pipeline without recentring.
"""

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from neurodecode.models.transfer import TransferClassifier
from neurodecode.transforms import Covariances, TangentSpace

PIPELINE = {
    "name": "RCT+TS+LR",
    "paradigms": ["LeftRightImagery", "MotorImagery"],
    "citations": ["https://doi.org/10.1109/TBME.2017.2742541", "https://doi.org/10.1016/j.neucom.2012.12.039"],
    "pipeline": TransferClassifier(
        make_pipeline(Covariances("oas"), TangentSpace(), LogisticRegression(C=1.0, max_iter=1000)),
        alignment="riemannian", calibration="finetune"),
}
