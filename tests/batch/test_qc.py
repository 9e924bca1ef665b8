"""QC of continuous recordings on real eegmmidb runs: the real runs pass, each kind of damage fails its own check.

The default thresholds were chosen from a measurement over all 78 eegmmidb runs of the shared data
(``neurodecode/batch/qc.py`` states the figures). Reading and checking all 78 takes about 20 s, so
these tests read the runs of subjects 3-5 (runs 4, 8, 12) and the runs that came closest to each limit
in that measurement: S005R08 (60 Hz median ratio 2.7, limit 5), S017R08 (one channel, T10, at 92 times
its EEG power in 60 Hz hum), S015R12 (noisy z 8.3, limit 10), S014R04 (0.10 % of samples at a
plateau, limit 1 %) and S013R12 (a sample 846 µV from its channel's median, limit 1 mV).
"""

import mne
import numpy as np
import pytest

from neurodecode.batch.qc import CHECKS, QCThresholds, channel_spectra, qc_reason, run_qc

EDF = "MNE-eegbci-data/files/eegmmidb/1.0.0/S{s:03d}/S{s:03d}R{r:02d}.edf"
USUAL = [(s, r) for s in (3, 4, 5) for r in (4, 8, 12)]
CLOSEST_TO_LIMITS = [(5, 8), (17, 8), (15, 12), (14, 4), (13, 12)]


def _read(dataset_dir, subject, run):
    raw = mne.io.read_raw_edf(dataset_dir("eegmmidb") / EDF.format(s=subject, r=run), preload=True, verbose="error")
    return raw.get_data(), raw.info["sfreq"], raw.ch_names


@pytest.fixture(scope="module")
def s003r04(dataset_dir):
    return _read(dataset_dir, 3, 4)


def _failed(qc):
    return {c["name"] for c in qc["checks"] if not c["passed"]}


@pytest.mark.parametrize("subject,run", sorted(set(USUAL + CLOSEST_TO_LIMITS)))
def test_real_runs_pass_every_check(dataset_dir, subject, run):
    qc = run_qc(*_read(dataset_dir, subject, run))
    assert qc["passed"], qc_reason(qc)
    assert [c["name"] for c in qc["checks"]] == list(CHECKS)
    assert qc["n_channels"] == 64 and qc["sfreq"] == 160.0


def test_the_runs_closest_to_the_limits_are_close(dataset_dir):
    # The margins stated in qc.py: if these drift (data or code change), the docstring is wrong.
    values = {}
    for subject, run in CLOSEST_TO_LIMITS:
        qc = run_qc(*_read(dataset_dir, subject, run))
        for check in qc["checks"]:
            values.setdefault(check["name"], []).append(check["value"])
    assert 2.5 < max(values["line_noise"]) < 2.8
    assert run_qc(*_read(dataset_dir, 17, 8))["checks"][CHECKS.index("line_noise")]["channels"] == ["T10."]
    assert 8.0 < max(values["noisy"]) < 8.5
    assert 0.0009 < max(values["clipping"]) < 0.0011
    assert max(values["amplitude"]) == 0


def _copy(data):
    return np.array(data, dtype=float, copy=True)


def test_all_zero_channel_is_flat_and_only_flat(s003r04):
    data, sfreq, names = s003r04
    broken = _copy(data)
    broken[10] = 0.0
    qc = run_qc(broken, sfreq, names)
    assert not qc["passed"]
    assert _failed(qc) == {"flat"}
    flat = qc["checks"][CHECKS.index("flat")]
    assert flat["channels"] == [names[10]]
    assert "flat" in qc_reason(qc) and names[10] in qc_reason(qc)


def test_nan_samples_fail_nonfinite(s003r04):
    data, sfreq, names = s003r04
    broken = _copy(data)
    broken[3, 1000:1010] = np.nan
    broken[7, 5] = np.inf
    qc = run_qc(broken, sfreq, names)
    check = qc["checks"][CHECKS.index("nonfinite")]
    assert not check["passed"] and check["value"] == 11 and check["channels"] == [names[3], names[7]]
    assert qc["channels"]["nonfinite"][3] == 10
    # The other checks leave the broken channels out rather than failing on NaN arithmetic.
    assert _failed(qc) == {"nonfinite"}


def test_noisy_channel(s003r04):
    data, sfreq, names = s003r04
    broken = _copy(data)
    rng = np.random.default_rng(0)
    # A loose electrode: white noise with 20 times the median channel's std (the real runs' widest is 5.2 times).
    broken[20] += rng.normal(0, 20 * np.median(data.std(axis=1)), size=data.shape[1])
    qc = run_qc(broken, sfreq, names)
    assert "noisy" in _failed(qc)
    assert qc["checks"][CHECKS.index("noisy")]["channels"] == [names[20]]


def test_mains_hum_on_every_channel_fails_line_noise(s003r04):
    data, sfreq, names = s003r04
    t = np.arange(data.shape[1]) / sfreq
    # 200 µV of hum: 20000 µV² against about 1600 µV² of EEG in 1-40 Hz (12 times; 100 µV gives 3 times).
    hum = 200e-6 * np.sin(2 * np.pi * 60 * t)
    qc = run_qc(data + hum, sfreq, names)
    assert _failed(qc) == {"line_noise"}
    check = qc["checks"][CHECKS.index("line_noise")]
    assert check["per_frequency"]["60"] > 5 and check["per_frequency"]["50"] < 0.1
    # 50 Hz is found as well (European mains).
    assert "line_noise" in _failed(run_qc(data + 200e-6 * np.sin(2 * np.pi * 50 * t), sfreq, names))


def test_hum_on_one_channel_is_listed_but_passes(s003r04):
    # As in eegmmidb subject 17 (T10): one electrode with hum is common in usable recordings.
    data, sfreq, names = s003r04
    broken = _copy(data)
    broken[5] += 200e-6 * np.sin(2 * np.pi * 60 * np.arange(data.shape[1]) / sfreq)
    check = run_qc(broken, sfreq, names)["checks"][CHECKS.index("line_noise")]
    assert check["passed"] and check["channels"] == [names[5]]


def test_clipped_channel(s003r04):
    data, sfreq, names = s003r04
    broken = _copy(data)
    lo, hi = np.percentile(broken[30], [5, 95])
    broken[30] = np.clip(broken[30], lo, hi)  # 10 % of the samples on the rails
    qc = run_qc(broken, sfreq, names)
    assert _failed(qc) == {"clipping"}
    assert qc["checks"][CHECKS.index("clipping")]["channels"] == [names[30]]
    assert 0.09 < qc["channels"]["clip_fraction"][30] < 0.11


def test_amplitude_outliers(s003r04):
    data, sfreq, names = s003r04
    broken = _copy(data)
    broken[40, ::50] += 5e-3  # 2 % of the samples 5 mV off
    qc = run_qc(broken, sfreq, names)
    assert "amplitude" in _failed(qc)
    assert qc["checks"][CHECKS.index("amplitude")]["channels"] == [names[40]]
    # One movement spike is not enough: 0.1 % of the samples are allowed.
    spike = _copy(data)
    spike[40, 100:110] += 5e-3
    assert "amplitude" not in _failed(run_qc(spike, sfreq, names))


def test_a_dc_offset_is_not_an_amplitude_outlier(s003r04):
    data, sfreq, names = s003r04
    assert run_qc(data + 0.2, sfreq, names)["passed"]  # 200 mV offset on every channel, as some amplifiers store


def test_thresholds_can_be_tightened(s003r04):
    data, sfreq, names = s003r04
    qc = run_qc(data, sfreq, names, QCThresholds(flat_std_v=1.0))  # every channel is "flat" below 1 V
    assert _failed(qc) == {"flat"} and len(qc["checks"][CHECKS.index("flat")]["channels"]) == 64
    assert qc["thresholds"]["flat_std_v"] == 1.0


def test_rates_without_mains_bands_skip_them():
    rng = np.random.default_rng(1)
    data = rng.normal(0, 20e-6, size=(8, 1000))
    qc = run_qc(data, 100.0, [f"E{i}" for i in range(8)])  # Nyquist 50 Hz: neither band is measurable
    check = qc["checks"][CHECKS.index("line_noise")]
    assert check["passed"] and check["not_measured"] == ["50", "60"] and check["value"] is None
    assert qc["passed"]


def test_spectrum_is_welch_power(s003r04):
    data, sfreq, _ = s003r04
    freqs, psd = channel_spectra(data[:2], sfreq)
    assert freqs[1] - freqs[0] == pytest.approx(0.5)  # 2 s segments
    # Parseval: the integral of the density is the variance.
    assert np.allclose(psd.sum(axis=1) * 0.5, data[:2].var(axis=1), rtol=0.05)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="n_channels, n_times"):
        run_qc(np.zeros(10), 100.0, ["a"])
    with pytest.raises(ValueError, match="2 channel names for 3 channels"):
        run_qc(np.zeros((3, 10)), 100.0, ["a", "b"])
    with pytest.raises(ValueError, match="positive sampling rate"):
        run_qc(np.zeros((1, 10)), 0, ["a"])
