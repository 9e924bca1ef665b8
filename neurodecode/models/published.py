"""Published EEG foundation models (braindecode's LaBraM, BIOT, CBraMod, EEGPT...) from a local folder, safely.

A folder as braindecode writes it (``model.save_pretrained(folder)``, or a copy of a Hugging Face
hub repository): ``config.json`` (the model's ``get_config()``: class arguments and, when known,
``chs_info``) and ``model.safetensors`` or ``pytorch_model.bin``. :func:`load_published` builds the
model from the configuration, loads every weight strictly, and puts a channel contract in front:

* the user's channels are matched to the model's by name (the one rule of
  :func:`neurodecode.data.channels.match_names`: case, ``EEG`` prefixes, trailing dots, ``-REF``
  suffixes and the old 10-20 names T3/T4/T5/T6 ignored), then, for the rest, by position
  (nearest model electrode within ``max_distance_mm``, when both sides have positions);
* channels the model expects but the user lacks are *missing*: an error unless
  ``on_missing="zero"`` (then they are fed zeros, and the report says so; LaBraM, which takes any
  subset of its 128 channels through ``forward(ch_names=...)``, is given only those present);
* the user's channels the model does not take are *extra*, dropped and reported;
* weights load with every key accounted for: a key of the file the model lacks, or a key of the
  model the file lacks, raises, unless named in ``drop`` (reported as left out); a new head for
  another number of classes (``n_outputs``) is reported as re-initialised keys.

Nothing here downloads: the folder must already be on disk.
"""

from __future__ import annotations

import fnmatch
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.channels import match_names, normalise_name

__all__ = ["ChannelMatch", "LoadReport", "PublishedModel", "load_published", "match_channels", "normalise_name",
           "standard_positions"]

#: Models whose weights cover a fixed list of channels of which any subset may be fed
#: (``forward(x, ch_names=...)``): where braindecode keeps that list.
_SUBSET_MODELS = {"Labram": ("braindecode.models.labram", "LABRAM_CHANNEL_ORDER")}


@dataclass(frozen=True)
class ChannelMatch:
    """Which of the user's channels feeds each of the model's.

    Attributes
    ----------
    model_channels, user_channels : tuple of str
    index : tuple of int
        For each model channel, the index of the user channel feeding it, or -1 (missing).
    by_name : tuple of (str, str)
        (model channel, user channel) pairs matched by name.
    by_position : tuple of (str, str, float)
        (model channel, user channel, distance in mm) pairs matched by position.
    missing : tuple of str
        Model channels no user channel feeds.
    extra : tuple of str
        User channels the model does not take.
    """

    model_channels: tuple
    user_channels: tuple
    index: tuple
    by_name: tuple = ()
    by_position: tuple = ()
    missing: tuple = ()
    extra: tuple = ()

    def summary(self) -> str:
        """One line per fact: counts, then the channels matched by position, missing and extra."""
        lines = [f"{len(self.by_name)} of the model's {len(self.model_channels)} channels matched by name, "
                 f"{len(self.by_position)} by position; {len(self.missing)} missing, {len(self.extra)} of the user's "
                 f"{len(self.user_channels)} extra"]
        if self.by_position:
            lines.append("by position: " + ", ".join(f"{m} <- {u} ({d:.1f} mm)" for m, u, d in self.by_position))
        for label, names in (("missing", self.missing), ("extra (dropped)", self.extra)):
            if names:
                more = f" and {len(names) - 20} more" if len(names) > 20 else ""
                lines.append(f"{label}: {list(names[:20])}{more}")
        return "\n".join(lines)


def match_channels(model_channels, user_channels, model_positions=None, user_positions=None, *,
                   max_distance_mm: float = 10.0) -> ChannelMatch:
    """Match the user's channels to a model's: by name first, then by nearest position.

    Parameters
    ----------
    model_channels, user_channels : sequence of str
    model_positions, user_positions : array-like of shape (n, 3) or None
        Positions in metres (rows of NaN for unknown ones).
    max_distance_mm : float
        A position match needs the two electrodes within this distance.

    Returns
    -------
    ChannelMatch
    """
    model_channels, user_channels = tuple(map(str, model_channels)), tuple(map(str, user_channels))
    seen: dict = {}
    for j, name in enumerate(user_channels):
        key = normalise_name(name, aliases=True)
        if key in seen:
            raise ValueError(f"channels {user_channels[seen[key]]!r} and {name!r} are the same electrode ({key}): "
                             "keep one")
        seen[key] = j
    # Exact names first, then the old 10-20 aliases, each user channel feeding one model channel at most
    # (some models list both T3 and T7): the one naming rule of the signal contract.
    index = list(match_names(model_channels, user_channels).index)
    by_name = [(name, user_channels[j]) for name, j in zip(model_channels, index) if j >= 0]
    by_position = []
    if model_positions is not None and user_positions is not None:
        mpos, upos = np.asarray(model_positions, float), np.asarray(user_positions, float)
        free_users = [j for j in range(len(user_channels)) if j not in set(index) and np.isfinite(upos[j]).all()]
        wanting = [i for i in range(len(model_channels)) if index[i] < 0 and np.isfinite(mpos[i]).all()]
        # Closest pairs first, each electrode used once: a greedy assignment within the tolerance.
        pairs = sorted((float(np.linalg.norm(mpos[i] - upos[j])) * 1000.0, i, j) for i in wanting for j in free_users)
        taken_i, taken_j = set(), set()
        for distance, i, j in pairs:
            if distance > max_distance_mm:
                break
            if i in taken_i or j in taken_j:
                continue
            taken_i.add(i)
            taken_j.add(j)
            index[i] = j
            by_position.append((model_channels[i], user_channels[j], distance))
    used = set(index)
    return ChannelMatch(model_channels=model_channels, user_channels=user_channels, index=tuple(index),
                        by_name=tuple(by_name), by_position=tuple(by_position),
                        missing=tuple(m for m, j in zip(model_channels, index) if j < 0),
                        extra=tuple(u for j, u in enumerate(user_channels) if j not in used))


@dataclass
class LoadReport:
    """What :func:`load_published` did.

    Attributes
    ----------
    model : str
        The braindecode class.
    folder : str
    weights_file : str
    channels : ChannelMatch
    filled_with_zeros : tuple of str
        Missing channels fed zeros (``on_missing="zero"``).
    keys_loaded : int
    keys_dropped : tuple of str
        Keys of the file left out because ``drop`` named them.
    keys_reinitialised : tuple of str
        Keys of the model not taken from the file (``drop``, or a new head for ``n_outputs``).
    """

    model: str
    folder: str
    weights_file: str
    channels: ChannelMatch
    filled_with_zeros: tuple = ()
    keys_loaded: int = 0
    keys_dropped: tuple = ()
    keys_reinitialised: tuple = field(default_factory=tuple)

    def summary(self) -> str:
        lines = [f"{self.model} from {self.folder} ({self.weights_file}): {self.keys_loaded} tensors loaded strictly",
                 self.channels.summary()]
        if self.filled_with_zeros:
            lines.append(f"fed zeros (on_missing='zero'): {list(self.filled_with_zeros)}")
        if self.keys_dropped:
            lines.append(f"left out of the file (drop): {list(self.keys_dropped)}")
        if self.keys_reinitialised:
            lines.append(f"re-initialised, not from the file: {list(self.keys_reinitialised)}")
        return "\n".join(lines)


class PublishedModel(torch.nn.Module):
    """A braindecode model behind the channel contract: ``forward(x)`` takes the user's channels.

    Parameters
    ----------
    model : torch.nn.Module
    match : ChannelMatch
    subset : bool
        True for models fed only the channels present (with their names); False for models with a
        fixed input montage (missing channels fed zeros).
    """

    def __init__(self, model: torch.nn.Module, match: ChannelMatch, subset: bool):
        super().__init__()
        self.model, self.match, self.subset = model, match, subset
        index = torch.tensor(match.index, dtype=torch.long)
        if subset:
            present = index >= 0
            self.register_buffer("gather", index[present], persistent=False)
            self.ch_names = [m for m, j in zip(match.model_channels, match.index) if j >= 0]
        else:
            self.register_buffer("gather", index.clamp_min(0), persistent=False)
            self.register_buffer("present", (index >= 0).float()[:, None], persistent=False)

    def forward(self, x):
        """x (batch, n_user_channels, n_times) -> the model's output."""
        if x.shape[1] != len(self.match.user_channels):
            raise ValueError(f"PublishedModel: x has {x.shape[1]} channels; the contract was made for "
                             f"{len(self.match.user_channels)} ({list(self.match.user_channels[:5])}...)")
        picked = x.index_select(1, self.gather)
        if self.subset:
            return self.model(picked, ch_names=self.ch_names)
        return self.model(picked * self.present)


def _model_class(name: str):
    import braindecode.models

    cls = getattr(braindecode.models, name, None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise ValueError(f"load_published: braindecode.models has no model {name!r}")
    return cls


def standard_positions(names) -> np.ndarray:
    """Positions (metres) of named electrodes on MNE's standard 10-05 montage; NaN rows where unknown."""
    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MNE's renaming notices for the standard montages
        montage = mne.channels.make_standard_montage("standard_1005")
    table = {normalise_name(k): v for k, v in montage.get_positions()["ch_pos"].items()}
    return np.array([table.get(normalise_name(n), (np.nan,) * 3) for n in names], dtype=float)


def _read_weights(folder: Path):
    safetensors_file, bin_file = folder / "model.safetensors", folder / "pytorch_model.bin"
    if safetensors_file.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors_file)), safetensors_file.name
    if bin_file.is_file():
        return torch.load(bin_file, map_location="cpu", weights_only=True), bin_file.name
    raise FileNotFoundError(f"load_published: {folder} holds neither model.safetensors nor pytorch_model.bin")


def load_published(folder, ch_names, positions=None, *, model: str | None = None, n_outputs: int | None = None,
                   drop=(), on_missing: str = "raise", max_distance_mm: float = 10.0):
    """Build a braindecode model from a local folder, load its weights strictly, and match channels.

    Parameters
    ----------
    folder : path
        Holds ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``).
    ch_names : sequence of str
        The user's channels, in the order of the data.
    positions : array-like of shape (n_channels, 3) or None
        The user's electrode positions in metres, for channels whose names do not match.
    model : str or None
        The braindecode class (``"Labram"``, ``"BIOT"``...); None reads ``model`` (or
        ``model_class``) from ``config.json``.
    n_outputs : int or None
        A new head for this many outputs (its keys reported as re-initialised); None keeps the saved one.
    drop : sequence of str
        Glob patterns of weight keys to leave out (``"final_layer.*"``); reported.
    on_missing : {"raise", "zero"}
        What to do with model channels no user channel feeds (models with a fixed input montage).
    max_distance_mm : float

    Returns
    -------
    module : PublishedModel
        In eval mode; ``module(x)`` takes (batch, len(ch_names), n_times).
    report : LoadReport
    """
    if on_missing not in ("raise", "zero"):
        raise ValueError(f"load_published: on_missing must be 'raise' or 'zero'; got {on_missing!r}")
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"load_published: {config_file} does not exist (a braindecode model folder holds "
                                "config.json and model.safetensors)")
    config = json.loads(config_file.read_text())
    name = model or config.pop("model", None) or config.pop("model_class", None)
    config.pop("model", None)
    config.pop("model_class", None)
    if name is None:
        raise ValueError(f"load_published: {config_file} does not name its model class; pass model='Labram' (or "
                         "the braindecode class it was saved from)")
    cls = _model_class(name)
    chs_info = config.get("chs_info")
    if chs_info:
        config["chs_info"] = cls._deserialize_chs_info(chs_info) if hasattr(cls, "_deserialize_chs_info") else chs_info
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # braindecode's notices on montages and defaults
        net = cls.from_config(config)
    subset = name in _SUBSET_MODELS
    if subset:
        module_name, attribute = _SUBSET_MODELS[name]
        import importlib

        model_channels = list(getattr(importlib.import_module(module_name), attribute))
        model_positions = standard_positions(model_channels)
    elif chs_info:
        model_channels = [ch["ch_name"] for ch in chs_info]
        locs = [np.asarray(ch.get("loc") if ch.get("loc") is not None else [np.nan] * 3, float)[:3] for ch in chs_info]
        model_positions = np.array([p if np.isfinite(p).all() and np.abs(p).sum() > 0 else [np.nan] * 3
                                    for p in locs])
        if np.isnan(model_positions).all():
            model_positions = standard_positions(model_channels)
    else:
        raise ValueError(f"load_published: {config_file} has no chs_info, so the {name} model's channels are unknown "
                         "and cannot be matched to yours; save the model with chs_info")
    match = match_channels(model_channels, ch_names, model_positions, positions, max_distance_mm=max_distance_mm)
    filled = ()
    if not subset and match.missing:
        if on_missing == "raise":
            raise ValueError(f"load_published: {len(match.missing)} of the {name} model's channels are missing from "
                             f"the data: {list(match.missing)}; pass on_missing='zero' to feed them zeros")
        filled = match.missing
    if subset and not any(j >= 0 for j in match.index):
        raise ValueError(f"load_published: none of the channels {list(ch_names)[:5]}... is one of the {name} model's")

    state, weights_file = _read_weights(folder)
    patterns = tuple(drop)
    dropped = tuple(sorted(k for k in state if any(fnmatch.fnmatchcase(k, p) for p in patterns)))
    kept = {k: v for k, v in state.items() if k not in set(dropped)}
    expected = net.state_dict()
    unexpected = sorted(set(kept) - set(expected))
    absent = sorted(k for k in set(expected) - set(kept) if not any(fnmatch.fnmatchcase(k, p) for p in patterns))
    if unexpected or absent:
        raise ValueError(f"load_published: the weights in {folder / weights_file} do not fit {name}({config_file.name})"
                         f": keys in the file but not the model {unexpected[:10]}, keys of the model not in the file "
                         f"{absent[:10]}; pass drop=[patterns] to leave keys out on purpose")
    wrong_shape = [f"{k}: file {tuple(v.shape)}, model {tuple(expected[k].shape)}" for k, v in kept.items()
                   if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong_shape:
        raise ValueError(f"load_published: weights of another shape than the model's: {wrong_shape[:5]}")
    reinitialised = sorted(set(expected) - set(kept))
    net.load_state_dict({**expected, **kept}, strict=True)
    if n_outputs is not None and n_outputs != getattr(net, "n_outputs", None):
        before = {k: v.clone() for k, v in net.state_dict().items()}
        net.reset_head(int(n_outputs))
        after = net.state_dict()
        reinitialised = sorted(set(reinitialised) | {k for k in after if k not in before
                                                     or before[k].shape != after[k].shape
                                                     or not torch.equal(before[k], after[k])})
    report = LoadReport(model=name, folder=str(folder), weights_file=weights_file, channels=match,
                        filled_with_zeros=tuple(filled), keys_loaded=len(kept), keys_dropped=dropped,
                        keys_reinitialised=tuple(reinitialised))
    return PublishedModel(net, match, subset).eval(), report
