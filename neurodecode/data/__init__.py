"""Data stage: dataset cards, loaders (EEG, MEG, fMRI) and the one container."""

from .cards import DatasetCard, data_root, get_card, list_cards, sha256_of
from .container import DecodingData, SignalInfo
from .errors import (ChecksumMismatchError, CorruptFileError, DataNotFoundError, EmptySelectionError,
                     InvalidDataError, NeurodecodeDataError, PartialLoadError, SpaceMismatchError,
                     UnknownEventError)
from .recordings import find_events, load_many, load_recording, read_raw

__all__ = [
    "DatasetCard", "DecodingData", "SignalInfo", "data_root", "get_card", "list_cards", "sha256_of",
    "find_events", "load_many", "load_recording", "read_raw",
    "ChecksumMismatchError", "CorruptFileError", "DataNotFoundError", "EmptySelectionError",
    "InvalidDataError", "NeurodecodeDataError", "PartialLoadError", "SpaceMismatchError", "UnknownEventError",
]
