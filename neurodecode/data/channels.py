"""Channel names matched across their usual spellings: the one rule wherever a recording meets a model.

EDF and other writers spell one electrode many ways: ``"EEG Fc5"``, ``"Fc5-REF"``, ``"EEG FC5-Ref"``,
``"Fc5."`` (BCI2000 pads labels with dots), ``"FC5 "``; older montages call T7 ``"T3"``. 10-20 names
are case-insensitive, so :func:`normalise_name` reduces every such spelling to one key, and
:func:`match_names` pairs wanted channels (a model's) with available ones (a recording's) by that key,
only where the pairing is unambiguous. The signal contract (``predict``, ``batch``, ``online``) and
the published foundation models both match through it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["IGNORED", "OLD_1020_NAMES", "NameMatch", "describe_unmatched", "match_names", "normalise_name"]

#: Old 10-20 names and their 10-10 equivalents (the same electrodes).
OLD_1020_NAMES = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
#: What :func:`normalise_name` ignores, as messages say it.
IGNORED = "case, 'EEG ' prefixes, '-REF' suffixes, dots, T3=T7 names"

_PREFIX = re.compile(r"^EEG[\s_-]*", re.IGNORECASE)
_REFERENCE_SUFFIX = re.compile(r"[-_ ](REF|LE|AVG|AR)$", re.IGNORECASE)


def normalise_name(name: str, aliases: bool = False) -> str:
    """A channel name reduced for matching: ``"EEG C3-REF"``, ``"c3.."`` and ``"C3"`` all give ``"C3"``.

    Ignored: letter case, surrounding spaces and padding dots, an ``EEG`` prefix (``"EEG "``,
    ``"EEG-"``, ``"EEG_"``) and a reference suffix (``-REF``, ``-LE``, ``-AVG``, ``-AR``).
    ``aliases=True`` also maps the old 10-20 names to their 10-10 ones (T3 -> T7...).
    """
    reduced = _PREFIX.sub("", str(name).strip().strip(".").strip())
    reduced = _REFERENCE_SUFFIX.sub("", reduced).strip().strip(".").strip().upper()
    return OLD_1020_NAMES.get(reduced, reduced) if aliases else reduced


@dataclass(frozen=True)
class NameMatch:
    """Which available channel feeds each wanted one (see :func:`match_names`).

    Attributes
    ----------
    wanted, available : tuple of str
    index : tuple of int
        For each wanted channel, the index of the available channel feeding it, or -1.
    ambiguous : dict of str to tuple of str
        Wanted channels left unmatched because several available channels reduce to them.
    """

    wanted: tuple
    available: tuple
    index: tuple
    ambiguous: dict = field(default_factory=dict)

    @property
    def missing(self) -> tuple:
        """Wanted channels no available channel feeds."""
        return tuple(w for w, j in zip(self.wanted, self.index) if j < 0)

    @property
    def renamed(self) -> dict:
        """Available name -> wanted name, for the pairs whose names differ."""
        return {self.available[j]: w for w, j in zip(self.wanted, self.index) if j >= 0 and self.available[j] != w}


def match_names(wanted, available) -> NameMatch:
    """Pair each wanted channel with the available channel of the same name under the one rule.

    Three passes, each available channel feeding one wanted channel at most: the exact name;
    then the name up to :func:`normalise_name` (case, ``EEG`` prefixes, ``-REF`` suffixes, padding
    dots); then also the old 10-20 names (T3 = T7, T4 = T8, T5 = P7, T6 = P8). A pairing is made only
    when it is unambiguous: when two available channels (``"EEG Cz"``, ``"Cz-REF"``) reduce to a
    wanted one, or two wanted ones to an available one, none of them is paired.

    Parameters
    ----------
    wanted : sequence of str
        E.g. the channels a model was trained on.
    available : sequence of str
        E.g. a recording's channels.

    Returns
    -------
    NameMatch
    """
    wanted, available = tuple(map(str, wanted)), tuple(map(str, available))
    exact = {name: j for j, name in enumerate(available)}
    index = [exact.get(name, -1) for name in wanted]
    ambiguous: dict = {}
    for aliases in (False, True):
        used = set(index)
        free: dict = {}
        for j, name in enumerate(available):
            if j not in used:
                free.setdefault(normalise_name(name, aliases), []).append(j)
        asking: dict = {}
        for i, name in enumerate(wanted):
            if index[i] < 0:
                asking.setdefault(normalise_name(name, aliases), []).append(i)
        for key, rows in asking.items():
            found = free.get(key, [])
            if len(found) == 1 and len(rows) == 1:
                index[rows[0]] = found[0]
                ambiguous.pop(wanted[rows[0]], None)
            elif found:
                for i in rows:
                    ambiguous[wanted[i]] = tuple(available[j] for j in found)
    return NameMatch(wanted=wanted, available=available, index=tuple(index), ambiguous=ambiguous)


def describe_unmatched(match: NameMatch, *, what: str = "model channels", shown: int = 5) -> str:
    """One short line: how many and which wanted channels were not found, and why ('' when none).

    E.g. ``"3 of 64 model channels not found: C3, Cz, C4 (no recording channel matches, even
    ignoring case, 'EEG ' prefixes, '-REF' suffixes, dots, T3=T7 names)"``.
    """
    missing = match.missing
    if not missing:
        return ""
    listed = ", ".join(missing[:shown]) + (f" and {len(missing) - shown} more" if len(missing) > shown else "")
    plain = [m for m in missing if m not in match.ambiguous]
    reasons = []
    if plain:
        reasons.append(f"no recording channel matches, even ignoring {IGNORED}")
    for name in [m for m in missing if m in match.ambiguous][:2]:
        reasons.append(f"{name} is ambiguous: {' or '.join(map(repr, match.ambiguous[name][:3]))}")
    return f"{len(missing)} of {len(match.wanted)} {what} not found: {listed} ({'; '.join(reasons)})"
