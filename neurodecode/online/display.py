"""What a live session shows on a terminal: one status line, notes, and every string made printable.

Class names come from a model's card and marker names, channel names and source ids from the
network: shared data, which may hold control characters. Written raw, ``"\\x1b[2J"`` would clear
the reader's screen, ``"\\r"`` overwrite the line, a bidi override reverse it. :func:`printable`
escapes them, and :class:`StatusLine` applies it to everything it writes.
"""

from __future__ import annotations

import math
import time

__all__ = ["StatusLine", "printable", "status_text"]


def _escape(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")


def printable(text) -> str:
    """``str(text)`` with every character that is not printable escaped as Python writes it.

    Control characters (C0, C1, DEL), line and paragraph separators and format characters
    (bidi overrides, zero-width joiners) become ``\\x1b``, ``\\n``, ``\\u202e``...; everything
    else, non-ASCII letters included, is kept.

    Parameters
    ----------
    text : object
        Converted with ``str``.

    Returns
    -------
    str
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


class StatusLine:
    """One status line: rewritten in place on a terminal, printed every ``every_s`` seconds otherwise.

    Parameters
    ----------
    stream : file-like
        Where to write (``sys.stdout``).
    every_s : float
        Seconds between lines when ``stream`` is not a terminal.
    """

    def __init__(self, stream, every_s: float = 5.0):
        self.stream = stream
        self.every_s = every_s
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last = -math.inf
        self._shown = False

    def show(self, text: str, *, force: bool = False) -> None:
        """The current status (shown at most every 0.2 s on a terminal, every ``every_s`` s otherwise)."""
        now = time.monotonic()
        if self.tty:
            if force or now - self._last >= 0.2:
                self.stream.write("\r" + printable(text) + "\x1b[K")
                self.stream.flush()
                self._last, self._shown = now, True
        elif force or now - self._last >= self.every_s:
            self.stream.write(printable(text) + "\n")
            self.stream.flush()
            self._last = now

    def note(self, text: str) -> None:
        """A line of its own (a dropout, a resumption) that stays on screen."""
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(printable(text) + "\n")
        self.stream.flush()
        self._shown = False

    def end(self) -> None:
        """Leave the status line on screen."""
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()


def status_text(decision, scores: dict | None = None, dropouts: int = 0) -> str:
    """The status line after a decision: time, class, probability, lag; running scores and dropouts.

    Parameters
    ----------
    decision : LiveDecision
    scores : dict or None
        :meth:`~neurodecode.online.LSLDecoder.scores` when a marker stream scores decisions.
    dropouts : int
        Dropouts so far.
    """
    text = (f"{decision.time_s:8.2f} s  #{decision.index + 1} {decision.class_name} (p={max(decision.proba):.2f})  "
            f"lag {decision.latency_ms:.1f} ms")
    if scores is not None:
        text += f"  | scored {scores['n_scored']}"
        if scores["n_scored"]:
            text += f", acc {scores['accuracy']:.2f}, nMCC {scores['nmcc']:.2f}, ITR {scores['itr']:.1f} bits/min"
    return text + (f"  | dropouts {dropouts}" if dropouts else "")
