"""The one registry of datasets: a dataset spec in, a :class:`~neurodecode.data.dataset.Dataset` out.

A spec is what a user types after ``--datasets``:

* a package card's name or alias (``eegmmidb``, ``kalunga2016``, ``muse_p300``), optionally
  with a variant after a colon (``eegmmidb:hands_feet``);
* a path to a card the user wrote (``path/to/card.toml``, same schema as the package's cards);
* a path to a BIDS dataset folder (one holding ``dataset_description.json``);
* a path to a folder of recordings holding a ``neurodecode.toml`` (paradigm, events mapping,
  how file names give subjects): see :func:`neurodecode.data.io.card_recordings.folder_card`;
* ``moabb:ClassName`` (``moabb:BNCI2014_001``): a MOABB dataset class whose files are
  already in MNE's data folder, read offline.

Package cards name the module of ``neurodecode.data.datasets`` that reads them (``module``);
that module provides ``dataset(variant)`` for cards with a ``[paradigm]`` table and
``summarize(card)`` for ``neurodecode datasets``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .cards import DatasetCard, get_card, list_cards
from .errors import NeurodecodeDataError


def _module(card: DatasetCard):
    name = card.extra.get("module")
    if not name:
        return None
    return importlib.import_module(f"neurodecode.data.datasets.{name}")


def card_for(name: str) -> DatasetCard:
    """The package card named ``name`` or having it among its ``aliases``."""
    for card in list_cards():
        if name == card.name or name in card.extra.get("aliases", ()):
            return card
    known = sorted(n for c in list_cards() if "paradigm" in c.extra for n in (c.name, *c.extra.get("aliases", ())))
    raise NeurodecodeDataError(
        f"unknown dataset {name!r}: not a package card, a .toml card file, a BIDS folder or moabb:ClassName; "
        f"package datasets: {known}")


def summarize(card: DatasetCard) -> list:
    """``(what, shape, class_counts)`` rows for ``neurodecode datasets``; [] when nothing describes the card."""
    module = _module(card)
    if module is not None and hasattr(module, "summarize"):
        return module.summarize(card)
    if "paradigm" in card.extra:
        from .io.card_recordings import CardDataset
        data = CardDataset(card).load()
        return [("epochs", data.shape, data.class_counts())]
    return []


def get_dataset(spec) :
    """Resolve a dataset spec (see the module docstring) to a :class:`~neurodecode.data.dataset.Dataset`.

    Raises
    ------
    NeurodecodeDataError
        One line naming the spec and what was expected.
    """
    from .dataset import Dataset

    if isinstance(spec, Dataset):
        return spec
    spec = str(spec)
    if spec.startswith("moabb:"):
        from .io.moabb_dataset import MoabbDataset
        return MoabbDataset(spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    if spec.endswith(".toml"):
        if not path.is_file():
            raise NeurodecodeDataError(f"dataset card {spec} does not exist")
        from .io.card_recordings import CardDataset
        return CardDataset(path)
    if path.is_dir():
        if (path / "dataset_description.json").is_file():
            from .io.bids import BIDSDataset
            return BIDSDataset(path)
        from .io.card_recordings import FOLDER_CARD, CardDataset, folder_card
        if (path / FOLDER_CARD).is_file():
            return CardDataset(folder_card(path))
        raise NeurodecodeDataError(f"{spec} is a folder but not a BIDS dataset (no dataset_description.json in it) "
                                   f"nor a folder of recordings described by a {FOLDER_CARD}")
    name, _, variant = spec.partition(":")
    card = card_for(name)
    if "paradigm" not in card.extra:
        raise NeurodecodeDataError(f"dataset {card.name!r} has no [paradigm] in its card: it is not a cue-based "
                                   "EEG/MEG dataset the benchmark can run")
    module = _module(card)
    if module is not None and hasattr(module, "dataset"):
        return module.dataset(variant)
    from .io.card_recordings import CardDataset
    return CardDataset(card)


def get_card_any(spec: str) -> DatasetCard:
    """A package card by name or alias, or a card file by path."""
    if spec.endswith(".toml"):
        return DatasetCard.from_toml(Path(spec))
    try:
        return get_card(spec)
    except NeurodecodeDataError:
        return card_for(spec)


__all__ = ["card_for", "get_card_any", "get_dataset", "summarize"]
