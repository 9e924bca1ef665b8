"""Trained models as files that can be shared and loaded without running anyone's code.

A model file (``.ndm`` by convention) is a zip archive of these members:

* ``neurodecode-model.json``: the format name and version, the sha256 of every other member (a
  copy damaged in transit is reported as corrupt, not loaded) and the list of networks;
* ``card.json``: the :class:`ModelCard`, plain JSON (``unzip -p model.ndm card.json``);
* ``model.skops``: the fitted estimator in skops' format, which describes objects as JSON and
  arrays as ``.npy`` files (read with ``allow_pickle=False``) instead of pickling them;
* since format version 2, for each torch network of the pipeline (a
  :class:`~neurodecode.models.torch_estimator.TorchEstimator` step, such as a DeepClassifier),
  ``network-N/config.json`` and ``network-N/model.safetensors``: braindecode's saved-model layout,
  the network's class, constructor arguments and signal contract (``n_chans``, ``n_times``,
  ``n_outputs``, ``sfreq``, ``chs_info``) as JSON and its weights as safetensors. The step itself
  is in ``model.skops`` with its other fitted state (classes, scale...) as plain data, its network
  replaced by the member's name.

Loading never runs code from the file. skops is given an explicit list of trusted types
(:data:`TRUSTED_TYPES`, reviewed by hand, on top of skops' own defaults: scikit-learn's
estimators, numpy and scipy containers, builtins such as ``dict``); a file naming any other
type (``os.system``, ``builtins.eval``, a class of some other package) is refused before
anything is built. ``trusted=True`` is never used. A network is built only from a class of
:func:`~neurodecode.models.torch_estimator.storable_network_names` (braindecode's models by name,
neurodecode's foundation networks) with arguments its signature declares, and its weights are read
by safetensors (tensors and a JSON header, no pickle; never ``torch.load``), each tensor of the
shape and dtype the network has. An archive holding any member that the manifest does not list
(a pickle slipped in next to the model, say) is refused too. Version 1 files (no networks) are read
as before.

Saving refuses what loading would refuse: a model that holds a type outside the list (a user's
own transformer), or a network of a user's own class or callable, is not written, with a message
naming it. There is no pickle fallback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..data.errors import NeurodecodeDataError
from .._utils.files import write_atomically

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelCard", "ModelFileError", "TRUSTED_TYPES", "check_storable", "load_model",
           "read_card", "save_model"]

#: Name and version written into every model file (``neurodecode-model.json``).
FORMAT = "neurodecode-model"
#: Version 2 added the networks (``network-N/config.json``, ``network-N/model.safetensors``).
FORMAT_VERSION = 2
_MANIFEST, _CARD, _MODEL = "neurodecode-model.json", "card.json", "model.skops"
_MEMBERS = (_MANIFEST, _CARD, _MODEL)
_NETWORK_NAME = re.compile(r"network-[0-9]{1,4}")
_NETWORK_CONFIG, _NETWORK_WEIGHTS = "config.json", "model.safetensors"
# A model of the package's pipelines is well under 10 MB; 2 GiB still admits large deep
# models' weights while keeping a hostile archive from filling memory when it is read.
_MAX_MEMBER_BYTES = 2 << 30

#: Types trusted on load beyond skops' defaults, as full import paths. Derived from
#: ``skops.io.get_untrusted_types`` on every pipeline of ``pipelines/`` fitted (the package's
#: transformers, pyriemann's TangentSpace, XdawnCovariances and the Xdawn it holds; scikit-learn's
#: estimators are trusted by skops already), then reviewed: each is a scikit-learn estimator
#: whose state is plain attributes (numbers, strings, arrays, dicts), restored without a custom
#: ``__setstate__`` or ``__reduce__``. ``tests/batch/test_model_file.py`` checks that every
#: transformer of ``neurodecode.transforms`` is listed and that each pipeline's fitted model
#: needs nothing else. Extend it only after the same review.
#:
#: ``neurodecode.models.riemann.MDM`` and ``FgMDM`` (reviewed for ACM_FGMDM.yml): parameters
#: ``tol``, ``maxiter``, ``device`` (a string), ``batch_size``; fitted state ``classes_``,
#: ``covmeans_``, ``n_channels_`` and, for FgMDM, ``reference_`` and ``projector_`` (numpy arrays
#: and an int); neither defines ``__getstate__``, ``__setstate__`` or ``__reduce__`` beyond
#: scikit-learn's BaseEstimator, so skops restores plain attributes.
#:
#: The alignment transformers (``neurodecode.transforms.alignment``, reviewed when they were added):
#: fitted state ``references_`` (a dict of group -> numpy matrix, or for stretching a (matrix, float)
#: tuple), ``n_channels_``, ``sfreq_``/``ch_names_`` (None or plain),
#: ``classes_``, ``target_group_``, and for ``RunningAlignment`` ``reference_`` and ``n_windows_``; none
#: defines ``__getstate__``, ``__setstate__`` or ``__reduce__``; each was fitted, dumped and loaded
#: with only its own class trusted.
#:
#: ``DeepClassifier`` and ``FoundationClassifier`` (the torch-backed estimators): in the file their
#: state is plain data (parameters, ``classes_``, ``scale_``, ``positions_``, the history of
#: epochs, the foundation probe's scikit-learn pipeline) and ``module_`` is the name of a network
#: member; their ``__setstate__`` (TorchEstimator's) builds a network only from the pickled weights
#: form, which skops cannot produce, and keeps that name otherwise. :func:`load_model` then builds
#: the network from its allowlisted config and loads the safetensors weights.
#: ``neurodecode.models.transfer.TransferClassifier`` (reviewed for the transfer pipelines): parameters
#: ``estimator`` (an unfitted estimator of these types, or None), strings, numbers and None; fitted
#: state ``estimator_`` (a fitted estimator of these types; a torch step in it is stored as a network
#: member, as in a Pipeline), ``alignment_`` (a trusted alignment transformer or None),
#: ``source_reference_``/``target_reference_`` (numpy matrices or None), ``classes_``, ``groups_`` (a list
#: of plain labels), ``calibration_`` (a string or None), ``n_calibration_``, ``n_channels_``, ``sfreq_``,
#: ``ch_names_``; it defines no ``__getstate__``, ``__setstate__`` or ``__reduce__`` beyond BaseEstimator's.
TRUSTED_TYPES = (
    "neurodecode.models.deep.DeepClassifier",
    "neurodecode.models.foundation.classifier.FoundationClassifier",
    "neurodecode.models.riemann.FgMDM",
    "neurodecode.models.riemann.MDM",
    "neurodecode.models.transfer.TransferClassifier",
    "neurodecode.transforms.alignment.EuclideanAlignment",
    "neurodecode.transforms.alignment.RiemannianRecentering",
    "neurodecode.transforms.alignment.RiemannianRotation",
    "neurodecode.transforms.alignment.RiemannianStretching",
    "neurodecode.transforms.alignment.RunningAlignment",
    "neurodecode.transforms.augmented.AugmentedCovariance",
    "neurodecode.transforms.augmented.AugmentedCovarianceSelector",
    "neurodecode.transforms.connectivity_eeg.EEGConnectivity",
    "neurodecode.transforms.connectivity_fmri.Connectome",
    "neurodecode.transforms.covariance.Covariances",
    "neurodecode.transforms.covariance.TangentSpace",
    "neurodecode.transforms.spectral.BandPower",
    "pyriemann.estimation.XdawnCovariances",
    "pyriemann.spatialfilters.Xdawn",
    "pyriemann.tangentspace.TangentSpace",
)


class ModelFileError(NeurodecodeDataError):
    """A model file that is refused (untrusted content) or cannot be read (missing, corrupt)."""


@dataclass
class ModelCard:
    """What a model file says about its model: where it came from, what it expects, how good it was.

    Plain JSON (:meth:`to_dict`, :meth:`from_dict`). It names the dataset and its subject
    numbers as the dataset labels them, never a file path or anything else about a person.

    Parameters
    ----------
    name : str
        The model's name.
    created : str
        When it was trained, ISO 8601 in UTC (``2026-05-04T10:12:00+00:00``).
    neurodecode_version : str
    versions : dict of str to str
        Package -> version installed at training (numpy, scipy, scikit-learn, mne, pyriemann,
        torch, skops...).
    dataset : str
        The training dataset's name.
    subjects : list
        The training subjects, as the dataset numbers them.
    paradigm : dict
        ``kind``, ``classes``, ``interval`` ([tmin, tmax] after each cue), ``band``
        ([fmin, fmax] in Hz of the zero-phase IIR band-pass, or None).
    sfreq : float
        Sampling rate of the training data, in Hz.
    ch_names : list of str
        Channels of the training data, in the model's order.
    window : list of float
        ``[tmin, tmax]`` of one trial in seconds after the cue; a window has
        ``round(tmax * sfreq) - round(tmin * sfreq) + 1`` samples (both ends included, as MNE).
    class_names : list of str
        ``class_names[k]`` is label ``k``.
    scores : dict
        Cross-validated score: ``metric``, ``mean``, ``std``, ``per_fold`` and how it was
        obtained (``cv``).
    pipeline_name, pipeline_hash : str
        The pipeline and :func:`~neurodecode.benchmark.runner.pipeline_hash` of its parameters.
    resample : bool
        Whether :func:`~neurodecode.contract.signal.match_recording` may resample a recording
        at another rate (otherwise it is refused).
    notes : str
    unit : str
        What one unit of the training samples was: ``"uV"`` (EEG volts x 1e6, MOABB's unit)
        or ``"SI"``; predictions scale recordings the same way.
    """

    name: str
    created: str
    neurodecode_version: str
    versions: dict
    dataset: str
    subjects: list
    paradigm: dict
    sfreq: float
    ch_names: list
    window: list
    class_names: list
    scores: dict
    pipeline_name: str
    pipeline_hash: str
    resample: bool = False
    notes: str = ""
    unit: str = "uV"
    # Fields of newer cards that this version does not know, kept so that they survive a round trip.
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def n_times(self) -> int:
        """Samples in one window at :attr:`sfreq` (both ends of :attr:`window` included)."""
        return int(round(self.window[1] * self.sfreq)) - int(round(self.window[0] * self.sfreq)) + 1

    @property
    def scale(self) -> float:
        """Factor from the recording's SI samples to the training unit."""
        return 1e6 if self.unit == "uV" else 1.0

    def to_dict(self) -> dict:
        """A JSON-ready dict (unknown fields read from a newer file included)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **_jsonable(out)}

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "model card") -> "ModelCard":
        """Build from :meth:`to_dict`'s output; a missing field is one line naming it."""
        if not isinstance(data, dict):
            raise ModelFileError(f"{where}: the card must be a JSON object, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls) if f.name != "extra"]
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise ModelFileError(f"{where}: the card lacks field(s) {missing}")
        card = cls(**{n: data[n] for n in names if n in data},
                   extra={k: v for k, v in data.items() if k not in names})
        if not (isinstance(card.sfreq, (int, float)) and card.sfreq > 0):
            raise ModelFileError(f"{where}: sfreq must be a positive number, got {card.sfreq!r}")
        if not (isinstance(card.window, list) and len(card.window) == 2 and card.window[0] < card.window[1]):
            raise ModelFileError(f"{where}: window must be [tmin, tmax] with tmin < tmax, got {card.window!r}")
        if not card.ch_names or len(set(card.ch_names)) != len(card.ch_names):
            raise ModelFileError(f"{where}: ch_names must be a non-empty list of distinct names")
        return card


def _jsonable(value):
    """Tuples as lists and numpy scalars as Python numbers, so that a card survives JSON unchanged."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _untrusted(model_bytes: bytes) -> list:
    import skops.io as sio

    return sorted(set(sio.get_untrusted_types(data=model_bytes)) - set(TRUSTED_TYPES))


def _meta_estimators() -> tuple:
    """The reviewed meta-estimators whose fitted ``estimator_`` may hold torch steps (walked like a Pipeline)."""
    from ..models.transfer import TransferClassifier

    return (TransferClassifier,)


def _torch_steps(estimator) -> list:
    """The torch-backed steps of an estimator: itself, or the steps of its Pipeline (nested Pipelines too)."""
    from sklearn.pipeline import Pipeline

    from ..models.torch_estimator import TorchEstimator

    if isinstance(estimator, TorchEstimator):
        return [estimator]
    if isinstance(estimator, Pipeline):
        return [found for _, step in estimator.steps for found in _torch_steps(step)]
    if isinstance(estimator, _meta_estimators()):
        return _torch_steps(getattr(estimator, "estimator_", None))
    return []


def _check_contract(config: dict, card: ModelCard, where: str) -> None:
    """A network's signal contract must be the card's: its channels, window length and classes."""
    contract = {"n_chans": len(card.ch_names), "n_times": card.n_times, "n_outputs": len(card.class_names)}
    differ = {k: config.get(k) for k, v in contract.items() if config.get(k) != v}
    if differ:
        raise ModelFileError(f"{where}: the network's signal contract {differ} differs from the card's "
                             f"{ {k: contract[k] for k in differ} }")


def _shallow(obj):
    """A new object of obj's class with a copy of its attribute dict (no __getstate__/__setstate__ run)."""
    twin = object.__new__(type(obj))
    twin.__dict__.update(obj.__dict__)
    return twin


def _detach_networks(estimator, what: str, path):
    """(estimator to give skops, [(member prefix, config bytes, weights bytes)]): each fitted network out as data.

    The caller's estimator is left as it is: the torch steps and the Pipelines holding them are
    shallow copies whose ``module_`` is the name of the network's members.
    """
    from safetensors.torch import save as save_safetensors

    def detach(obj, networks):
        from sklearn.pipeline import Pipeline

        from ..models.torch_estimator import TorchEstimator

        if isinstance(obj, TorchEstimator):
            problem = obj.file_problem()
            if problem is None and hasattr(obj, "module_"):
                try:
                    config, weights = obj.network_file()
                except ValueError as err:
                    problem = _first_line(err)
            if problem is not None:
                raise ModelFileError(f"cannot save {what} to {path}: {type(obj).__name__} {problem}")
            if not hasattr(obj, "module_"):  # unfitted (check_storable): nothing to take out
                return obj
            prefix = f"network-{len(networks)}"
            networks.append((prefix, json.dumps(config, indent=2).encode(), save_safetensors(weights)))
            twin = _shallow(obj)
            twin.module_ = prefix
            del twin._network  # the config is the member's, not a second copy in model.skops
            return twin
        if isinstance(obj, Pipeline):
            twin = _shallow(obj)
            twin.steps = [(name, detach(step, networks)) for name, step in obj.steps]
            return twin
        if isinstance(obj, _meta_estimators()):
            if not hasattr(obj, "estimator_"):  # unfitted (check_storable): its estimator's refusals only
                detach(obj.estimator, [])
                return obj
            twin = _shallow(obj)
            twin.estimator_ = detach(obj.estimator_, networks)
            return twin
        return obj

    networks = []
    return detach(estimator, networks), networks


def _payload(estimator, what: str, path) -> tuple[bytes, list]:
    """The skops bytes of ``estimator`` and its networks, refused when loading them would need a type not trusted."""
    import skops.io as sio

    detached, networks = _detach_networks(estimator, what, path)
    try:
        model_bytes = sio.dumps(detached)
    except Exception as err:  # noqa: BLE001 - skops raises many kinds on objects it cannot describe
        raise ModelFileError(f"cannot save {what} to {path}: skops cannot store it ({type(err).__name__}: "
                             f"{_first_line(err)})") from None
    untrusted = _untrusted(model_bytes)
    if untrusted:
        raise ModelFileError(f"cannot save {what} to {path}: it holds type(s) that a model file may not hold "
                             f"(they could run code on load): {untrusted[:8]}{' ...' if len(untrusted) > 8 else ''}; "
                             "a model file holds scikit-learn's estimators, the reviewed ones of neurodecode and "
                             "pyriemann, and networks as braindecode models by name, not a user's own classes or "
                             "functions")
    return model_bytes, networks


def check_storable(estimator, *, what: str | None = None, path="model file") -> None:
    """Refuse, before any training, an estimator that :func:`save_model` could not store.

    Checked on the estimator as given (fitted or not): its types are the fitted model's
    types for every pipeline of the package, and a torch step's network is checked by its
    parameters (a user's own class or callable is refused).

    Raises
    ------
    ModelFileError
    """
    _payload(estimator, what or type(estimator).__name__, path)


def save_model(estimator, card: ModelCard, path) -> Path:
    """Write a fitted estimator and its card as one model file, atomically.

    The file is first written next to ``path`` under a temporary name and renamed over it, so
    a reader never sees half a file and an interrupted save leaves any previous file intact.

    Parameters
    ----------
    estimator : estimator
        Fitted; it must consist of types that :func:`load_model` trusts, and its torch networks
        (steps of a Pipeline, or the estimator itself) of allowlisted classes.
    card : ModelCard
    path : str or Path
        Where to write (``.ndm`` by convention); its folder is created.

    Returns
    -------
    path : Path

    Raises
    ------
    ModelFileError
        The estimator holds types outside :data:`TRUSTED_TYPES` and skops' defaults, a network
        of a user's own class or callable, or skops cannot describe it at all.
    """
    path = Path(path)
    model_bytes, networks = _payload(estimator, card.pipeline_name or type(estimator).__name__, path)
    card_bytes = json.dumps(card.to_dict(), indent=2, sort_keys=False).encode()
    members = {_CARD: card_bytes, _MODEL: model_bytes}
    for prefix, config_bytes, weights_bytes in networks:
        _check_contract(json.loads(config_bytes), card, f"cannot save {card.pipeline_name} to {path}")
        members[f"{prefix}/{_NETWORK_CONFIG}"] = config_bytes
        members[f"{prefix}/{_NETWORK_WEIGHTS}"] = weights_bytes
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "sha256": {name: _sha256(data) for name, data in members.items()},
                "networks": [prefix for prefix, _, _ in networks]}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_MANIFEST, json.dumps(manifest, indent=2))
        for name, data in members.items():
            archive.writestr(name, data)
    return write_atomically(path, buffer.getvalue())


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


#: What a damaged archive raises inside zipfile and zlib: a bad header or CRC (BadZipFile), a broken
#: deflate stream (zlib.error), a cut file (EOFError, struct.error), odd sizes or names (ValueError,
#: UnicodeDecodeError, OverflowError), an "encrypted" flag (RuntimeError), unknown compression.
_DAMAGED_ARCHIVE = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, struct.error, ValueError,
                    OverflowError, RuntimeError, NotImplementedError)


def _expected_members(path: Path, manifest: dict, names: list) -> tuple:
    """The members the manifest's version and network list allow, in order; refuses any other."""
    version = manifest.get("format_version")
    networks = manifest.get("networks", []) if version >= 2 else []
    if not (isinstance(networks, list) and all(isinstance(n, str) and _NETWORK_NAME.fullmatch(n) for n in networks)
            and len(set(networks)) == len(networks)):
        raise ModelFileError(f"{path} is corrupt: {_MANIFEST}'s networks must be distinct names network-N")
    expected = _MEMBERS + tuple(f"{n}/{member}" for n in networks for member in (_NETWORK_CONFIG, _NETWORK_WEIGHTS))
    unexpected = [n for n in names if n not in expected]
    if unexpected or len(names) != len(set(names)):
        raise ModelFileError(f"{path}: refused: the archive holds member(s) a model file never has "
                             f"{sorted(set(unexpected)) or names}; expected exactly {list(expected)}")
    absent = [n for n in expected if n not in names]
    if absent:
        raise ModelFileError(f"{path} is not a complete neurodecode model file: it lacks {absent}")
    return expected


def _read_members(path: Path) -> tuple[dict, dict]:
    """The archive's manifest and the bytes of its members, checked; nothing is deserialised but JSON."""
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a neurodecode model file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            names = [i.filename for i in infos]
            if _MANIFEST not in names:
                raise ModelFileError(f"{path} is not a complete neurodecode model file: it lacks {[_MANIFEST]}")
            big = [i.filename for i in infos if i.file_size > _MAX_MEMBER_BYTES]
            if big:
                raise ModelFileError(f"{path}: refused: member(s) {big} exceed {_MAX_MEMBER_BYTES >> 30} GiB")
            manifest = _manifest(path, archive.read(_MANIFEST))
            expected = _expected_members(path, manifest, names)
            members = {n: archive.read(n) for n in expected}
    except ModelFileError:
        raise
    except _DAMAGED_ARCHIVE as err:
        raise ModelFileError(f"{path} is corrupt: {type(err).__name__}: {_first_line(err)}") from None
    sums = manifest.get("sha256") or {}
    for name in expected[1:]:
        if not isinstance(sums, dict) or sums.get(name) != _sha256(members[name]):
            raise ModelFileError(f"{path} is corrupt: {name} does not match the sha256 its manifest records")
    return manifest, members


def _manifest(path: Path, data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is corrupt: {_MANIFEST} is not JSON ({_first_line(err)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a neurodecode model file ({_MANIFEST} does not say format {FORMAT!r})")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path} is corrupt: {_MANIFEST} gives no format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: model file format version {version!r} is newer than this neurodecode reads "
                             f"({FORMAT_VERSION}); upgrade neurodecode")
    return manifest


def _card_from(path: Path, members: dict) -> ModelCard:
    try:
        data = json.loads(members[_CARD])
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is corrupt: {_CARD} is not JSON ({_first_line(err)})") from None
    try:
        return ModelCard.from_dict(data, where=str(path))
    except TypeError as err:
        raise ModelFileError(f"{path}: the card cannot be read: {_first_line(err)}") from None


def read_card(path) -> ModelCard:
    """The card of a model file, without building the model (checks the archive and the sha256s).

    Raises
    ------
    ModelFileError
    """
    path = Path(path)
    _, members = _read_members(path)
    return _card_from(path, members)


def _network(path: Path, members: dict, prefix: str, card: ModelCard):
    """(config, weights) of a network: its JSON checked (allowlist, the card's contract), its tensors by safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    from ..models.torch_estimator import check_network_config

    where = f"{path}: {prefix}"
    try:
        config = json.loads(members[f"{prefix}/{_NETWORK_CONFIG}"])
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{where}/{_NETWORK_CONFIG} is not JSON ({_first_line(err)})") from None
    try:
        check_network_config(config)
    except ValueError as err:
        raise ModelFileError(f"{where}: refused: {_first_line(err)}; nothing was loaded") from None
    _check_contract(config, card, f"{where}: refused")
    try:
        weights = load_safetensors(members[f"{prefix}/{_NETWORK_WEIGHTS}"])
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as err:
        raise ModelFileError(f"{where}/{_NETWORK_WEIGHTS} is not a safetensors file ({type(err).__name__}: "
                             f"{_first_line(err)})") from None
    return config, weights


def _attach_networks(path: Path, estimator, manifest: dict, members: dict, card: ModelCard) -> None:
    """Give each torch step of a loaded estimator the network its ``module_`` names; each listed one used once."""
    listed = list(manifest.get("networks", []))
    steps = _torch_steps(estimator)
    named = [getattr(step, "module_", None) for step in steps]
    if sorted(n for n in named if isinstance(n, str)) != sorted(listed) or not all(isinstance(n, str) for n in named):
        raise ModelFileError(f"{path} is corrupt: its torch steps name networks {named}, its manifest lists {listed}")
    for step, prefix in zip(steps, named):
        config, weights = _network(path, members, prefix, card)
        try:
            step.attach_network(config, weights)
        except (ValueError, TypeError, RuntimeError) as err:
            raise ModelFileError(f"{path}: {prefix} cannot be built: {_first_line(err)}") from None


def load_model(path) -> tuple[object, ModelCard]:
    """Read a model file: the fitted estimator and its card; no code from the file is run.

    The skops payload is audited before anything is built: every type it names must be one
    skops trusts by default or one of :data:`TRUSTED_TYPES`. Each network is built from an
    allowlisted class and its JSON config, and its weights read by safetensors.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    estimator : estimator
        Fitted, ready for ``predict``.
    card : ModelCard

    Raises
    ------
    ModelFileError
        One line naming the file: missing, not a model file, corrupt (damaged archive, sha256
        mismatch, unreadable card, payload or weights), newer format, or refused (members the
        manifest does not list, untrusted types, a network class outside the allowlist, weights
        that do not fit the network; what was refused is named).
    """
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    path = Path(path)
    manifest, members = _read_members(path)
    card = _card_from(path, members)
    payload = members[_MODEL]
    try:
        untrusted = _untrusted(payload)
        if untrusted:
            raise ModelFileError(f"{path}: refused: the model names type(s) that neurodecode does not trust "
                                 f"{untrusted[:8]}{' ...' if len(untrusted) > 8 else ''}; nothing was loaded")
        estimator = sio.loads(payload, trusted=list(TRUSTED_TYPES))
    except ModelFileError:
        raise
    except UntrustedTypesFoundException as err:  # the audit inside loads(): a second line of defence
        raise ModelFileError(f"{path}: refused: {_first_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - a damaged payload fails in many ways inside skops
        raise ModelFileError(f"{path}: the model cannot be read ({type(err).__name__}: {_first_line(err)}); "
                             f"it was written by skops {card.versions.get('skops', '?')}, "
                             f"scikit-learn {card.versions.get('scikit-learn', '?')}") from None
    _attach_networks(path, estimator, manifest, members, card)
    return estimator, card
