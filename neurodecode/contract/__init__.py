"""The contract every application shares: pipeline files, model files and the signal a model expects.

``benchmark``, ``batch`` (train, predict, batch runs), ``online`` and the command line import
these, never one another:

* :mod:`~neurodecode.contract.pipeline_files`: pipeline files found and named without running
  them, loaded (they are code), keyed by a content hash;
* :mod:`~neurodecode.contract.model_file`: a fitted model and its card as one file that loads
  without running anything;
* :mod:`~neurodecode.contract.signal`: a recording's channels and rate made to meet a model's
  card, the one route by which they reach a fitted model;
* :mod:`~neurodecode.contract.versions`: the package versions a card records.

Names are imported on first use, so that importing the stage loads neither skops nor mne.
"""

from .._utils.lazy import lazy_exports

_EXPORTS = {
    "PIPELINE_SUFFIXES": "pipeline_files",
    "PipelineSpec": "pipeline_files",
    "declared_names": "pipeline_files",
    "load_pipelines": "pipeline_files",
    "on_device": "pipeline_files",
    "pipeline_hash": "pipeline_files",
    "ModelCard": "model_file",
    "ModelFileError": "model_file",
    "TRUSTED_TYPES": "model_file",
    "check_storable": "model_file",
    "load_model": "model_file",
    "read_card": "model_file",
    "save_model": "model_file",
    "ContractError": "signal",
    "match_recording": "signal",
    "VERSIONED_PACKAGES": "versions",
    "package_versions": "versions",
}
__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
