"""The ways a live LSL session can fail to start or go on (each one line, for ``neurodecode online``)."""

from __future__ import annotations

from ..data.errors import NeurodecodeDataError

__all__ = ["LSLError", "LSLStreamLostError", "LSLStreamNotFoundError"]


class LSLError(NeurodecodeDataError):
    """A live LSL session that cannot start or go on."""


class LSLStreamNotFoundError(LSLError):
    """No stream of that name (and source id) appeared within the timeout."""


class LSLStreamLostError(LSLError):
    """The stream sent nothing for longer than ``give_up_s`` and was not found again."""
