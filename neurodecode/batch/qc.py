"""Quality control of one continuous recording: pure functions of (samples in volts, sampling rate, channel names).

Six checks, each with a threshold and a pass/fail; a recording fails QC when any check fails.

==================  =====================================================================  ========================
check               what is measured (per channel)                                         fails when
==================  =====================================================================  ========================
``nonfinite``       samples that are NaN or infinite                                       any channel has one
``flat``            standard deviation                                                     std < 0.1 µV
``noisy``           robust z-score of log(std) against the other channels                  z > 10
``line_noise``      power within ±1 Hz of 50 Hz and of 60 Hz over the power in 1-40 Hz    median over channels > 5
``clipping``        fraction of samples within 0.1 % of the range from the min or the max  > 1 % of samples
``amplitude``       fraction of samples with |x - channel median| > 1 mV                   > 0.1 % of samples
==================  =====================================================================  ========================

The defaults were measured on all 78 eegmmidb runs of the shared data (20 subjects, runs 1-14
present there; raw EDF in volts, no filter), and every run passes every check:

* smallest channel std 6.8 µV (the flat limit is 0.1 µV, 68 times lower; an EDF's 16-bit
  resolution there is about 1 µV, so a live electrode never reads below it);
* largest noisy z 8.3 (limit 10); the largest channel std of any run is 5.2 times that run's median;
* line noise: the 50 Hz median ratio is at most 0.024, the 60 Hz median at most 2.7 (subject 5, run
  8, recorded in the US with hum on 11 channels); single channels reach 92 (subject 17's T10), which
  is why the check is on the median over channels, not on the worst one;
* clipping: at most 0.10 % of a channel's samples sit at its min/max plateau (limit 1 %);
* amplitude: the largest |x - median| of any channel is 846 µV (limit 1 mV), so no sample counts.

The thresholds are for EEG in volts. MEG (tesla) or other units would need other thresholds:
pass a :class:`QCThresholds`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.signal import welch

__all__ = ["QCThresholds", "CHECKS", "run_qc", "channel_spectra", "nonfinite_channels", "flat_channels",
           "noisy_channels", "line_noise", "clipping", "amplitude_outliers"]

#: The checks, in the order they are reported.
CHECKS = ("nonfinite", "flat", "noisy", "line_noise", "clipping", "amplitude")


@dataclass(frozen=True)
class QCThresholds:
    """Limits of the QC checks (defaults: see the module docstring for what they measured on real data).

    Parameters
    ----------
    flat_std_v : float
        A channel whose standard deviation is below this (volts) is flat.
    noisy_z : float
        A channel whose robust z-score of log(std) exceeds this is noisy.
    noisy_min_scale : float
        Floor of the robust spread of log(std) (natural-log units): in a recording whose channels
        are all alike, a tiny spread would make an ordinary channel look like an outlier. 0.1 means a
        channel must be at least ``exp(noisy_z * 0.1)`` (2.7 with the defaults) times the median std.
    line_freqs : tuple of float
        Mains frequencies examined (Hz).
    line_halfwidth_hz : float
        Half width of the band around each mains frequency.
    line_reference_band : tuple of float
        The EEG band the mains power is compared with (Hz).
    line_ratio : float
        Fails when the median over channels of (mains power / reference-band power) exceeds this.
    clip_tolerance : float
        A sample is at a plateau when within this fraction of the channel's range from its min or max.
    clip_fraction : float
        A channel is clipped when more than this fraction of its samples sit at a plateau.
    amplitude_v : float
        Samples farther than this (volts) from the channel's median are amplitude outliers.
    amplitude_fraction : float
        A channel fails when more than this fraction of its samples are amplitude outliers (a
        single movement spike does not fail a recording; a channel in the wrong unit does).
    """

    flat_std_v: float = 1e-7
    noisy_z: float = 10.0
    noisy_min_scale: float = 0.1
    line_freqs: tuple = (50.0, 60.0)
    line_halfwidth_hz: float = 1.0
    line_reference_band: tuple = (1.0, 40.0)
    line_ratio: float = 5.0
    clip_tolerance: float = 1e-3
    clip_fraction: float = 0.01
    amplitude_v: float = 1e-3
    amplitude_fraction: float = 1e-3
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("extra")
        out["line_freqs"] = list(self.line_freqs)
        out["line_reference_band"] = list(self.line_reference_band)
        return out


def _as_2d(data) -> np.ndarray:
    data = np.asarray(data, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"QC needs samples of shape (n_channels, n_times); got shape {data.shape}")
    return data


def _check(name: str, passed: bool, value, threshold, channels, description: str) -> dict:
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold,
            "channels": list(channels), "description": description}


def _round(value, digits: int = 4):
    """Numbers for JSON: finite floats to ``digits`` significant digits, others as None."""
    if value is None or not np.isfinite(value):
        return None
    return float(f"{float(value):.{digits}g}")


def nonfinite_channels(data, ch_names) -> dict:
    """Channels holding a NaN or an infinite sample."""
    data = _as_2d(data)
    counts = (~np.isfinite(data)).sum(axis=1)
    bad = [ch_names[i] for i in np.nonzero(counts)[0]]
    return _check("nonfinite", not bad, int(counts.sum()), 0, bad,
                  "NaN or infinite samples (count); any one fails")


def _finite_rows(data) -> np.ndarray:
    return np.isfinite(data).all(axis=1)


def flat_channels(data, ch_names, thresholds: QCThresholds | None = None) -> dict:
    """Channels whose standard deviation is below ``flat_std_v`` volts (disconnected, zeroed)."""
    t = thresholds or QCThresholds()
    data = _as_2d(data)
    ok = _finite_rows(data)
    std = np.full(len(data), np.nan)
    std[ok] = data[ok].std(axis=1)
    bad = [ch_names[i] for i in np.nonzero(ok & (std < t.flat_std_v))[0]]
    smallest = np.nanmin(std) if ok.any() else np.nan
    return _check("flat", not bad, _round(smallest * 1e6), t.flat_std_v * 1e6, bad,
                  f"smallest channel std (µV); a channel below {t.flat_std_v * 1e6:g} µV is flat")


def _usable(data, t: QCThresholds) -> np.ndarray:
    """Rows that are finite and not flat: the others are reported by their own checks and would
    distort statistics taken across channels (log(0), a plateau equal to the whole channel)."""
    ok = _finite_rows(data)
    std = np.zeros(len(data))
    std[ok] = data[ok].std(axis=1)
    return ok & (std >= t.flat_std_v)


def noisy_z_scores(data, thresholds: QCThresholds | None = None) -> np.ndarray:
    """Robust z-score of each channel's log(std) (NaN for channels that are non-finite or flat).

    The log makes the score a ratio to the median channel (std is a scale, and a channel twice
    as noisy as the median is as far from it as one half as noisy); the median and the median
    absolute deviation (times 1.4826, so that it estimates the standard deviation of normal data)
    keep a few bad channels from hiding one another.
    """
    t = thresholds or QCThresholds()
    data = _as_2d(data)
    use = _usable(data, t)
    z = np.full(len(data), np.nan)
    if use.sum() < 3:  # no spread to speak of with fewer channels
        return z
    log_std = np.log(data[use].std(axis=1))
    center = np.median(log_std)
    scale = max(1.4826 * np.median(np.abs(log_std - center)), t.noisy_min_scale)
    z[use] = (log_std - center) / scale
    return z


def noisy_channels(data, ch_names, thresholds: QCThresholds | None = None) -> dict:
    """Channels far noisier than the others: robust z-score of log(std) above ``noisy_z``."""
    t = thresholds or QCThresholds()
    z = noisy_z_scores(data, t)
    bad = [ch_names[i] for i in np.nonzero(z > t.noisy_z)[0]]
    largest = np.nanmax(z) if np.isfinite(z).any() else np.nan
    return _check("noisy", not bad, _round(largest), t.noisy_z, bad,
                  f"largest robust z-score of log(channel std); above {t.noisy_z:g} is noisy")


def channel_spectra(data, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density of each channel (2 s Hann segments, half overlap), V²/Hz.

    Returns
    -------
    freqs : ndarray of shape (n_freqs,)
    psd : ndarray of shape (n_channels, n_freqs)
        NaN for a channel holding a non-finite sample.
    """
    data = _as_2d(data)
    nperseg = max(8, min(data.shape[1], int(round(2 * sfreq))))
    ok = _finite_rows(data)
    freqs = np.fft.rfftfreq(nperseg, 1 / sfreq)
    psd = np.full((len(data), len(freqs)), np.nan)
    if ok.any():
        freqs, psd[ok] = welch(data[ok], fs=sfreq, nperseg=nperseg, detrend="constant", axis=-1)
    return freqs, psd


def line_ratios(data, sfreq: float, thresholds: QCThresholds | None = None, spectra=None) -> dict:
    """Per channel, mains power over the reference band's power, for each mains frequency that fits below Nyquist.

    Returns ``{freq: ndarray of shape (n_channels,)}`` (NaN for unusable channels).
    """
    t = thresholds or QCThresholds()
    data = _as_2d(data)
    freqs, psd = spectra if spectra is not None else channel_spectra(data, sfreq)
    use = _usable(data, t)
    lo, hi = t.line_reference_band
    reference = psd[:, (freqs >= lo) & (freqs <= hi)].sum(axis=1)
    out = {}
    for f0 in t.line_freqs:
        if f0 + t.line_halfwidth_hz >= sfreq / 2:
            continue  # not measurable at this rate (and not in the data either)
        band = (freqs >= f0 - t.line_halfwidth_hz) & (freqs <= f0 + t.line_halfwidth_hz)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = psd[:, band].sum(axis=1) / reference
        ratio[~use] = np.nan
        out[float(f0)] = ratio
    return out


def line_noise(data, sfreq: float, ch_names, thresholds: QCThresholds | None = None, spectra=None) -> dict:
    """Mains interference: the median over channels of (power at 50 or 60 Hz) / (power in 1-40 Hz).

    The median, not the worst channel: a single hum-laden electrode is common in good recordings
    (eegmmidb subject 17's T10 carries 92 times its EEG power) and is listed; a recording
    whose typical channel carries more mains than EEG is not usable.
    """
    t = thresholds or QCThresholds()
    ratios = line_ratios(data, sfreq, t, spectra)
    medians = {f0: (np.nanmedian(r) if np.isfinite(r).any() else np.nan) for f0, r in ratios.items()}
    worst = max(medians.values(), default=np.nan, key=lambda v: -np.inf if not np.isfinite(v) else v)
    hum = sorted({ch_names[i] for r in ratios.values() for i in np.nonzero(r > t.line_ratio)[0]})
    passed = not (np.isfinite(worst) and worst > t.line_ratio)
    check = _check("line_noise", passed, _round(worst), t.line_ratio, hum,
                   "median over channels of mains power (±{:g} Hz around {}) / power in {:g}-{:g} Hz; "
                   "channels listed are above the limit on their own".format(
                       t.line_halfwidth_hz, " and ".join(f"{f:g}" for f in t.line_freqs), *t.line_reference_band))
    check["per_frequency"] = {f"{f0:g}": _round(v) for f0, v in medians.items()}
    if len(ratios) < len(t.line_freqs):
        check["not_measured"] = [f"{f0:g}" for f0 in t.line_freqs if float(f0) not in ratios]
    return check


def clip_fractions(data, thresholds: QCThresholds | None = None) -> np.ndarray:
    """Per channel, the fraction of samples at its min or max plateau (NaN for unusable channels)."""
    t = thresholds or QCThresholds()
    data = _as_2d(data)
    use = _usable(data, t)
    out = np.full(len(data), np.nan)
    if use.any():
        x = data[use]
        lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
        tol = t.clip_tolerance * (hi - lo)
        out[use] = ((x <= lo + tol) | (x >= hi - tol)).mean(axis=1)
    return out


def clipping(data, ch_names, thresholds: QCThresholds | None = None) -> dict:
    """Channels whose samples pile up at their extremes (an amplifier or converter at its limit)."""
    t = thresholds or QCThresholds()
    frac = clip_fractions(data, t)
    bad = [ch_names[i] for i in np.nonzero(frac > t.clip_fraction)[0]]
    largest = np.nanmax(frac) if np.isfinite(frac).any() else np.nan
    return _check("clipping", not bad, _round(largest), t.clip_fraction, bad,
                  f"largest fraction of a channel's samples at its min/max plateau; above {t.clip_fraction:g} "
                  "is clipped")


def amplitude_fractions(data, thresholds: QCThresholds | None = None) -> np.ndarray:
    """Per channel, the fraction of samples farther than ``amplitude_v`` from the channel's median."""
    t = thresholds or QCThresholds()
    data = _as_2d(data)
    ok = _finite_rows(data)
    out = np.full(len(data), np.nan)
    if ok.any():
        x = data[ok]
        # The median, not zero: EDF channels carry DC offsets of hundreds of µV that are not artefacts.
        out[ok] = (np.abs(x - np.median(x, axis=1, keepdims=True)) > t.amplitude_v).mean(axis=1)
    return out


def amplitude_outliers(data, ch_names, thresholds: QCThresholds | None = None) -> dict:
    """Channels with more than ``amplitude_fraction`` of samples beyond ±``amplitude_v`` of their median."""
    t = thresholds or QCThresholds()
    frac = amplitude_fractions(data, t)
    bad = [ch_names[i] for i in np.nonzero(frac > t.amplitude_fraction)[0]]
    largest = np.nanmax(frac) if np.isfinite(frac).any() else np.nan
    return _check("amplitude", not bad, _round(largest), t.amplitude_fraction, bad,
                  f"largest fraction of a channel's samples beyond ±{t.amplitude_v * 1e6:g} µV of its median; "
                  f"above {t.amplitude_fraction:g} fails")


def run_qc(data, sfreq: float, ch_names, thresholds: QCThresholds | None = None) -> dict:
    """Every QC check on one continuous recording.

    Parameters
    ----------
    data : array of shape (n_channels, n_times)
        Samples in volts (EEG).
    sfreq : float
        Sampling rate in Hz.
    ch_names : list of str
        One name per row of ``data``.
    thresholds : QCThresholds or None
        Limits; default :class:`QCThresholds()`.

    Returns
    -------
    qc : dict
        ``passed`` (bool), ``failed`` (names of the failed checks), ``checks`` (one dict per check
        in :data:`CHECKS` order: ``name``, ``passed``, ``value``, ``threshold``, ``channels``,
        ``description``), ``channels`` (per-channel measures: ``std_uv``, ``noisy_z``,
        ``line_<f>``, ``clip_fraction``, ``amplitude_fraction``, ``nonfinite``), ``thresholds``,
        ``n_channels``, ``n_times``, ``sfreq``, and ``spectrum`` (``freqs`` and ``psd`` in V²/Hz,
        per channel, for the report).
    """
    t = thresholds or QCThresholds()
    data = _as_2d(data)
    ch_names = list(ch_names)
    if len(ch_names) != len(data):
        raise ValueError(f"QC got {len(ch_names)} channel names for {len(data)} channels")
    if not (np.isfinite(sfreq) and sfreq > 0):
        raise ValueError(f"QC needs a positive sampling rate, got {sfreq!r}")
    spectra = channel_spectra(data, sfreq)
    checks = [nonfinite_channels(data, ch_names), flat_channels(data, ch_names, t), noisy_channels(data, ch_names, t),
              line_noise(data, sfreq, ch_names, t, spectra), clipping(data, ch_names, t),
              amplitude_outliers(data, ch_names, t)]
    ok = _finite_rows(data)
    std = np.full(len(data), np.nan)
    std[ok] = data[ok].std(axis=1)
    per_channel = {"name": ch_names, "std_uv": [_round(s * 1e6) for s in std],
                   "noisy_z": [_round(z) for z in noisy_z_scores(data, t)],
                   "clip_fraction": [_round(v) for v in clip_fractions(data, t)],
                   "amplitude_fraction": [_round(v) for v in amplitude_fractions(data, t)],
                   "nonfinite": [int(n) for n in (~np.isfinite(data)).sum(axis=1)]}
    for f0, ratio in line_ratios(data, sfreq, t, spectra).items():
        per_channel[f"line_{f0:g}"] = [_round(v) for v in ratio]
    failed = [c["name"] for c in checks if not c["passed"]]
    freqs, psd = spectra
    return {"passed": not failed, "failed": failed, "checks": checks, "channels": per_channel,
            "thresholds": t.to_dict(), "n_channels": len(data), "n_times": int(data.shape[1]),
            "sfreq": float(sfreq), "spectrum": {"freqs": freqs, "psd": psd}}


def qc_reason(qc: dict) -> str:
    """One line saying why a recording failed QC (empty when it passed)."""
    parts = []
    for check in qc["checks"]:
        if not check["passed"]:
            channels = check["channels"]
            named = f" ({', '.join(channels[:5])}{' ...' if len(channels) > 5 else ''})" if channels else ""
            parts.append(f"{check['name']} {check['value']} > {check['threshold']}{named}"
                         if check["name"] != "flat" else f"flat channel(s){named}")
    return "QC failed: " + "; ".join(parts) if parts else ""
