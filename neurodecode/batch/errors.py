"""What a batch run refuses before it starts, and what stops it: one line each, for the command's exit status 2."""

from __future__ import annotations

__all__ = ["BatchError", "NoRecordingsError", "OutputError"]


class BatchError(ValueError):
    """A batch that cannot start: a missing input folder, an unreadable or refused model, bad options, a locked
    output folder."""


class NoRecordingsError(BatchError):
    """The input folder holds no recording in a supported format."""


class OutputError(BatchError):
    """The output folder cannot be written (read-only, a file, a full disk): the run stops, what is finished stays."""
