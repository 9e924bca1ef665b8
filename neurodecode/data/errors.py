"""Exceptions raised by the data stage.

Every error names the file (or dataset), the value found and what was expected, so a
user reading a batch log can fix the input without opening the code.
"""

from __future__ import annotations


class NeurodecodeDataError(Exception):
    """Base class for every data-stage error."""


class DataNotFoundError(NeurodecodeDataError, FileNotFoundError):
    """A dataset file is missing from the expected path."""


class ChecksumMismatchError(NeurodecodeDataError):
    """A file's sha256 differs from the one in its dataset card."""


class CorruptFileError(NeurodecodeDataError):
    """A file exists but cannot be parsed (truncated, wrong format, damaged)."""


class InvalidDataError(NeurodecodeDataError, ValueError):
    """Data that was read but cannot be used: NaNs, mixed sampling rates, bad shapes."""


class UnknownEventError(NeurodecodeDataError, KeyError):
    """An event or class name was asked for that the recording does not contain."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class EmptySelectionError(NeurodecodeDataError, ValueError):
    """A selection (subjects, runs, events, classes) matched nothing."""


class SpaceMismatchError(NeurodecodeDataError, ValueError):
    """An fMRI image and an atlas are not in the same space."""


class PartialLoadError(NeurodecodeDataError):
    """Some files of a multi-file load failed; the others loaded.

    Attributes
    ----------
    loaded : DecodingData or None
        Everything that did load, concatenated (None if nothing did).
    failures : dict of str to Exception
        The error of each file that failed, keyed by its path.
    """

    def __init__(self, loaded, failures):
        self.loaded = loaded
        self.failures = dict(failures)
        lines = [f"{len(self.failures)} file(s) failed to load"
                 + (f"; {len(loaded)} trials from the others were kept in .loaded"
                    if loaded is not None else "; nothing loaded") + ":"]
        lines += [f"  {path}: {type(err).__name__}: {err}" for path, err in self.failures.items()]
        super().__init__("\n".join(lines))
