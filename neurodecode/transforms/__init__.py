"""Transforms stage: scikit-learn transformers from signals to features.

Imported on first use (``neurodecode.transforms.BandPower``), so that a module needing only the
covariance transformers does not load mne or nilearn.

Every signal transformer takes a :class:`~neurodecode.data.DecodingData` or a plain array:
fitted on a DecodingData it takes the sampling rate from it (``sfreq=None``) and remembers the
channels, and refuses data at another rate or with other channels later. Where only arrays
can be passed, :func:`bind_signal_info` sets the sampling rate and channels beforehand.
"""

from .._utils.lazy import lazy_exports

_EXPORTS = {
    "Covariances": "covariance",
    "TangentSpace": "covariance",
    "AugmentedCovariance": "augmented",
    "AugmentedCovarianceSelector": "augmented",
    "BandPower": "spectral",
    "EEGConnectivity": "connectivity_eeg",
    "Connectome": "connectivity_fmri",
    "bind_signal_info": "signal",
    "EuclideanAlignment": "alignment",
    "RiemannianRecentering": "alignment",
    "RiemannianStretching": "alignment",
    "RiemannianRotation": "alignment",
    "RunningAlignment": "alignment",
}
__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
