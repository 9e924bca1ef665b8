"""neurodecode: decoding brain signals (EEG, MEG, fMRI) with scikit-learn pipelines.

Names are imported on first use, so that ``import neurodecode.geometry`` needs only torch (as on
a GPU machine without mne) and the command line starts quickly.
"""

from neurodecode._utils.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "DecodingData": "neurodecode.data.container",
    "SignalInfo": "neurodecode.data.container",
    "Covariances": "neurodecode.transforms.covariance",
    "TangentSpace": "neurodecode.transforms.covariance",
    "AugmentedCovariance": "neurodecode.transforms.augmented",
    "AugmentedCovarianceSelector": "neurodecode.transforms.augmented",
    "BandPower": "neurodecode.transforms.spectral",
    "EEGConnectivity": "neurodecode.transforms.connectivity_eeg",
    "Connectome": "neurodecode.transforms.connectivity_fmri",
}
__all__ = ["__version__", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
