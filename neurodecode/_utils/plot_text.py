"""Strings from files, drawn in matplotlib figures as they are written."""

from __future__ import annotations

__all__ = ["literal"]


def literal(text) -> str:
    """``text`` as matplotlib draws it literally: every ``$`` escaped, so that none starts mathtext.

    A class, channel, pipeline or dataset name comes from a file someone else wrote; with two
    ``$`` in it matplotlib would parse it as mathtext, and ``"$\\frac$"`` fails the whole figure.
    ``\\$`` is drawn as ``$``. Only the strings are escaped: matplotlib's own labels (the
    ``10^{3}`` of a log axis) stay mathtext.

    Parameters
    ----------
    text : object
        Converted with ``str``.

    Returns
    -------
    label : str
    """
    return str(text).replace("$", r"\$")
