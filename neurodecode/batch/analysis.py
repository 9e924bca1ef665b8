"""What the batch computes about a recording besides its predictions, for the report: spectra by scalp region,
band power, class separability per channel, channel positions and the cue intervals.

Every function reads a recording already matched to the model (:func:`~neurodecode.contract.signal.match_recording`)
and returns plain JSON-ready values (floats rounded, non-finite values as None).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["SPECTRUM_FMAX", "band_power", "channel_groups", "cues", "group_spectra", "positions", "round_list",
           "separability"]

#: Highest frequency of the stored spectra (Hz): the report shows up to here.
SPECTRUM_FMAX = 80.0


def channel_groups(ch_names) -> dict:
    """Channels by scalp region from their 10-20/10-05 names (``"FC3"`` -> central); others in ``"other"``.

    Returns ``{group: [channel, ...]}`` in a fixed order of regions, empty groups left out; a
    montage whose names follow no 10-20 convention gives one group, ``"all channels"``.
    """
    regions = {"frontal": ("FP", "AF", "F"), "central": ("FC", "C"), "parietal": ("CP", "P"),
               "occipital": ("PO", "O", "I"), "temporal": ("FT", "T", "TP")}
    by_prefix = {p: region for region, prefixes in regions.items() for p in prefixes}
    out = {region: [] for region in regions}
    out["other"] = []
    for name in ch_names:
        match = re.fullmatch(r"([A-Za-z]+?)(\d+|z|Z)", name.strip())
        region = by_prefix.get(match.group(1).upper()) if match else None
        out[region or "other"].append(name)
    if len(out["other"]) == len(ch_names):
        return {"all channels": list(ch_names)}
    return {k: v for k, v in out.items() if v}


def round_list(values, digits: int = 5) -> list:
    """``values`` as a list of floats of ``digits`` significant digits, non-finite ones as None."""
    return [None if not np.isfinite(v) else float(f"{float(v):.{digits}g}") for v in np.asarray(values, dtype=float)]


def band_power(freqs, psd, band) -> np.ndarray:
    """Power in ``band`` = (fmin, fmax) Hz per channel, from a spectrum ``psd`` of shape (n_channels, n_freqs).

    Returns
    -------
    power : ndarray of shape (n_channels,)
        In the spectrum's unit times Hz (V^2 for a PSD in V^2/Hz).
    """
    lo, hi = band
    sel = (freqs >= lo) & (freqs <= hi)
    df = freqs[1] - freqs[0] if len(freqs) > 1 else 1.0
    return psd[:, sel].sum(axis=1) * df


def separability(raw, table: pd.DataFrame, card) -> dict | None:
    """Per channel, how well log band power separates the annotated classes (r², eta² beyond two classes).

    Computed on the windows whose ``true`` class is one of the model's, after the model's band-pass;
    None when fewer than two classes have at least two such windows.
    """
    if "true" not in table:
        return None
    labelled = table[table["true"].isin(card.class_names)]
    counts = labelled["true"].value_counts()
    classes = [c for c in card.class_names if counts.get(c, 0) >= 2]
    if len(classes) < 2:
        return None
    labelled = labelled[labelled["true"].isin(classes)]
    filtered = raw.copy()
    band = (card.paradigm or {}).get("band")
    if band is not None:
        filtered.filter(band[0], band[1], method="iir", picks="all", verbose="error")
    x = filtered.get_data()
    sfreq = float(filtered.info["sfreq"])
    starts = np.rint(labelled["start_s"].to_numpy() * sfreq).astype(int)
    n = card.n_times
    logpow = np.stack([np.log(x[:, s:s + n].var(axis=1) + 1e-30) for s in starts])  # (n_windows, n_channels)
    y = labelled["true"].to_numpy()
    total = ((logpow - logpow.mean(axis=0)) ** 2).sum(axis=0)
    between = sum((y == c).sum() * (logpow[y == c].mean(axis=0) - logpow.mean(axis=0)) ** 2 for c in classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(total > 0, between / total, 0.0)
    return {"classes": classes, "values": round_list(r2, 4), "n_windows": {c: int((y == c).sum()) for c in classes},
            "measure": "r2" if len(classes) == 2 else "eta2", "band": None if band is None else list(band)}


def positions(raw, montage: str | None) -> dict:
    """Channel positions (head frame, metres) from the recording's montage, else from a named standard one."""
    names = list(raw.ch_names)
    found = raw.get_montage()
    if found is not None:
        pos = found.get_positions()["ch_pos"]
        if all(n in pos and np.isfinite(pos[n]).all() and np.any(pos[n]) for n in names):
            return {"source": "recording", "ch_pos": {n: round_list(pos[n], 6) for n in names}}
    if montage:
        import mne

        pos = mne.channels.make_standard_montage(montage).get_positions()["ch_pos"]
        if all(n in pos for n in names):
            return {"source": f"standard montage {montage!r}, by channel name", "ch_pos":
                    {n: round_list(pos[n], 6) for n in names}}
        missing = [n for n in names if n not in pos]
        return {"source": None, "note": f"{len(missing)} channel(s) not in the {montage!r} montage "
                                        f"({', '.join(missing[:5])}); no scalp map"}
    return {"source": None, "note": "the recording has no channel positions; no scalp map"}


def cues(raw, card) -> list:
    """Trial intervals [onset + tmin, onset + tmax] of the annotations naming the model's classes, in seconds
    from the first sample (only class names are kept: free-text annotations are never copied)."""
    from .predict import cue_onsets

    tmin, tmax = card.window
    onsets, names = cue_onsets(raw, card.class_names)
    return [[round(float(t) + tmin, 4), round(float(t) + tmax, 4), str(name)] for t, name in zip(onsets, names)]


def group_spectra(freqs, psd, ch_names) -> dict:
    """The mean spectrum of each scalp region (:func:`channel_groups`) up to :data:`SPECTRUM_FMAX`.

    Parameters
    ----------
    freqs : ndarray of shape (n_freqs,)
    psd : ndarray of shape (n_channels, n_freqs)
        Welch PSD in V^2/Hz.
    ch_names : list of str
        One per row of ``psd``.

    Returns
    -------
    spectrum : dict
        ``unit``, ``freqs`` and ``groups``: ``{group: {"channels": [...], "psd": [...]}}``.
    """
    keep = freqs <= SPECTRUM_FMAX
    groups = channel_groups(ch_names)
    index = {n: i for i, n in enumerate(ch_names)}
    group_psd = {g: np.nanmean(psd[[index[c] for c in chans]][:, keep], axis=0) for g, chans in groups.items()}
    return {"unit": "V^2/Hz", "freqs": round_list(freqs[keep], 6),
            "groups": {g: {"channels": groups[g], "psd": round_list(v)} for g, v in group_psd.items()}}
