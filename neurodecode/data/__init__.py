"""Data stage: dataset cards, loaders (EEG, MEG, fMRI) and the one container."""

from .cards import DatasetCard, data_root, get_card, list_cards, sha256_of
from .container import DecodingData, SignalInfo
from .errors import (ChecksumMismatchError, CorruptFileError, DataNotFoundError, EmptySelectionError,
                     InvalidDataError, NeurodecodeDataError, PartialLoadError, SpaceMismatchError,
                     UnknownEventError)
from .datasets.abide import load_abide
from .datasets.digit69 import load_digit69, load_digit69_images, load_mnist
from .datasets.eegmmidb import load_eegmmidb, read_eegmmidb_run
from .io.fmri import extract_atlas_signals, mask_runs
from .datasets.haxby import load_haxby
from .datasets.kalunga2016 import load_kalunga2016
from .datasets.muse_p300 import load_muse_p300
from .io.recordings import find_events, load_many, load_recording, read_raw

__all__ = [
    "DatasetCard", "DecodingData", "SignalInfo", "data_root", "get_card", "list_cards", "sha256_of",
    "find_events", "load_many", "load_recording", "read_raw",
    "load_abide", "load_digit69", "load_digit69_images", "load_mnist", "load_eegmmidb", "read_eegmmidb_run",
    "extract_atlas_signals", "mask_runs", "load_haxby", "load_kalunga2016", "load_muse_p300",
    "ChecksumMismatchError", "CorruptFileError", "DataNotFoundError", "EmptySelectionError",
    "InvalidDataError", "NeurodecodeDataError", "PartialLoadError", "SpaceMismatchError", "UnknownEventError",
]
