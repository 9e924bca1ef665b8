"""neurodecode: decoding brain signals (EEG, MEG, fMRI) with scikit-learn pipelines."""

from .data import DecodingData, SignalInfo

__version__ = "0.1.0"
__all__ = ["DecodingData", "SignalInfo", "__version__"]
