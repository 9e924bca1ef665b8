"""PhysioNet eegmmidb loader: trial-for-trial equal to MOABB's PhysionetMI, offline, read-only data."""

import hashlib
import os
import socket
import warnings

import mne
import numpy as np
import pytest

from conftest import NetworkBlocked
from neurodecode.data.datasets import eegmmidb
from neurodecode.data.datasets.eegmmidb import (available_runs, load_eegmmidb, moabb_offline_env,
                                                physionet_mi_offline, present_subjects, read_eegmmidb_run)
from neurodecode.data.errors import ChecksumMismatchError
from neurodecode.data.errors import (CorruptFileError, DataNotFoundError, EmptySelectionError, InvalidDataError,
                                     PartialLoadError)


def _snapshot(folder):
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in [folder, *folder.rglob("*")]}


@pytest.fixture(scope="module")
def eegmmidb_folder(dataset_dir):
    return dataset_dir("eegmmidb")


@pytest.fixture(scope="module")
def before_moabb(eegmmidb_folder):
    """The data folder's listing with mtimes and sizes, taken before MOABB runs."""
    return _snapshot(eegmmidb_folder)


def _moabb_get_data(paradigm, dataset, **kwargs):
    with moabb_offline_env(), warnings.catch_warnings(), mne.utils.use_log_level("error"):
        # MOABB asks MNE for the montage by its pre-1.13 name.
        warnings.simplefilter("ignore", FutureWarning)
        return paradigm.get_data(dataset, **kwargs)


@pytest.fixture(scope="module")
def moabb_left_right(before_moabb):
    """MOABB's LeftRightImagery on the 20 subjects, loaded once."""
    from moabb.paradigms import LeftRightImagery

    X, y, meta = _moabb_get_data(LeftRightImagery(), physionet_mi_offline())
    return X, np.asarray(y), meta


@pytest.fixture(scope="module")
def moabb_raw_s1(before_moabb):
    """MOABB's continuous run 4 of subject 1 (its run "0"), with the STIM channel it adds."""
    dataset = physionet_mi_offline()
    with moabb_offline_env(), warnings.catch_warnings(), mne.utils.use_log_level("error"):
        warnings.simplefilter("ignore", FutureWarning)
        return dataset.get_data(subjects=[1])[1]["0"]["0"]


def test_present_subjects_of_the_shared_folder(dataset_dir):
    runs = available_runs()
    assert present_subjects("left_right") == tuple(s for s, r in runs.items() if {4, 8, 12} <= set(r))
    assert present_subjects("imagery") == tuple(s for s, r in runs.items() if {4, 6, 8, 10, 12, 14} <= set(r))
    # What the shared folder stages (its PROVENANCE.md): 20 subjects, 4 with every imagery run.
    assert present_subjects("left_right") == tuple(range(1, 20)) + (42,)
    assert present_subjects("imagery") == (1, 4, 15, 42)
    assert runs[1] == (1, 2, 4, 6, 8, 10, 12, 14) and runs[4] == (4, 6, 8, 10, 12, 14) and runs[2] == (4, 8, 12)


def test_left_right_equals_moabb_for_every_subject(dataset_dir, isolated_cache, moabb_left_right):
    X_ref, y_ref, meta_ref = moabb_left_right
    data = load_eegmmidb()
    assert data.shape == X_ref.shape == (20 * 45, 64, 481)
    assert data.info.class_names == ("left_hand", "right_hand")
    for subject in present_subjects("left_right"):
        ours = data.select(subject=subject)
        ref = (meta_ref["subject"] == subject).to_numpy()
        assert ours.shape == (45, 64, 481), subject
        assert ours.metadata["run"].tolist() == meta_ref.loc[ref, "run"].astype(str).tolist(), subject
        assert ours.labels.tolist() == y_ref[ref].tolist(), subject
        # Same filter, same epochs, same scaling, computed by the same MNE calls: bit-identical.
        np.testing.assert_array_equal(ours.X, X_ref[ref], err_msg=f"subject {subject}")
    assert data.metadata["subject"].tolist() == meta_ref["subject"].tolist()


def test_channels_and_positions_equal_moabb(dataset_dir, isolated_cache, moabb_raw_s1):
    raw = read_eegmmidb_run(1, 4)
    ref = moabb_raw_s1.copy().pick("eeg")
    assert raw.ch_names == ref.ch_names
    assert raw.ch_names[:3] == ["FC5", "FC3", "FC1"] and "Fp1" in raw.ch_names and "Iz" in raw.ch_names
    ours_pos, ref_pos = raw.get_montage().get_positions(), ref.get_montage().get_positions()
    assert ours_pos["coord_frame"] == ref_pos["coord_frame"] == "head"
    for name in raw.ch_names:
        np.testing.assert_array_equal(ours_pos["ch_pos"][name], ref_pos["ch_pos"][name], err_msg=name)
    np.testing.assert_array_equal(raw.get_data(), ref.get_data())
    # MOABB keeps cues as annotations of 3 s; the fist cues must sit at the same times as ours.
    for name in ("left_hand", "right_hand"):
        ours_onsets = raw.annotations.onset[raw.annotations.description == name]
        ref_onsets = ref.annotations.onset[ref.annotations.description == name]
        np.testing.assert_allclose(ours_onsets, ref_onsets, atol=0.5 / raw.info["sfreq"])


@pytest.mark.parametrize("task, events", [("hands_feet", ["hands", "feet"]),
                                          ("imagery", ["left_hand", "right_hand", "hands", "feet"])])
def test_other_tasks_equal_moabb_motor_imagery(dataset_dir, isolated_cache, before_moabb, task, events):
    from moabb.paradigms import MotorImagery

    data = load_eegmmidb(task=task)
    X_ref, y_ref, meta_ref = _moabb_get_data(MotorImagery(events=events, n_classes=len(events)),
                                             physionet_mi_offline(with_feet_runs=True))
    per_subject = 45 * len(events) // 2
    assert data.shape == (4 * per_subject, 64, 481)
    assert data.info.class_names == tuple(events)
    assert sorted(set(data.metadata["subject"])) == list(present_subjects("imagery"))
    for subject in present_subjects("imagery"):
        counts = data.select(subject=subject).class_counts()
        assert sum(counts.values()) == per_subject and min(counts.values()) >= 20, (subject, counts)
    assert data.labels.tolist() == list(y_ref)
    assert data.metadata["run"].tolist() == meta_ref["run"].astype(str).tolist()
    np.testing.assert_array_equal(data.X, X_ref)
    expected_runs = {"hands_feet": [6, 10, 14], "imagery": [4, 8, 12, 6, 10, 14]}[task]
    assert data.select(subject=4).metadata["physionet_run"].unique().tolist() == expected_runs


@pytest.mark.parametrize("kwargs, n_times", [(dict(tmin=0.5, tmax=2.5), 321),
                                             (dict(fmin=7.0, fmax=35.0, resample=128.0), 385),
                                             (dict(tmin=1.0, resample=100.0), 201)])
def test_window_band_and_resampling_follow_moabb(dataset_dir, isolated_cache, before_moabb, kwargs, n_times):
    from moabb.paradigms import LeftRightImagery

    data = load_eegmmidb([1, 42], **kwargs)
    X_ref, y_ref, _ = _moabb_get_data(LeftRightImagery(**kwargs), physionet_mi_offline(), subjects=[1, 42])
    assert data.shape == X_ref.shape == (90, 64, n_times)
    assert data.info.sfreq == kwargs.get("resample", 160.0)
    assert data.info.tmin == kwargs.get("tmin", 0.0)
    assert data.labels.tolist() == list(y_ref)
    np.testing.assert_array_equal(data.X, X_ref)


def test_read_run_names_the_cues_by_class(dataset_dir, isolated_cache):
    expected = {4: {"rest", "left_hand", "right_hand"}, 6: {"rest", "hands", "feet"}, 1: {"rest"}}
    for run, classes in expected.items():
        raw = read_eegmmidb_run(15, run)
        assert set(raw.annotations.description) == classes, run
        assert raw.info["sfreq"] == 160.0 and len(raw.ch_names) == 64
        assert set(raw.get_channel_types()) == {"eeg"}
    raw = read_eegmmidb_run(1, 8)
    # 15 cues alternating with 15 rests, about 4.1 s apart.
    assert len(raw.annotations) == 30
    assert (raw.annotations.description[::2] == "rest").all()
    assert np.diff(raw.annotations.onset).min() > 4.0


def test_read_run_verifies_the_checksum(dataset_dir, isolated_cache):
    import json

    read_eegmmidb_run(42, 12)
    cached = json.loads((isolated_cache / "sha256.json").read_text())
    entry = eegmmidb._card().entry("MNE-eegbci-data/files/eegmmidb/1.0.0/S042/S042R12.edf")
    [(_, value)] = [(p, v) for p, v in cached.items() if p.endswith("S042R12.edf")]
    assert value[2] == entry.sha256


def test_metadata_and_signal_info(dataset_dir, isolated_cache):
    data = load_eegmmidb([1, 4])
    meta = data.metadata
    assert {"subject", "session", "run", "onset", "dataset", "physionet_run"} <= set(meta.columns)
    assert meta["subject"].tolist() == [1] * 45 + [4] * 45
    assert isinstance(meta["subject"].iloc[0], (int, np.integer))
    assert set(meta["session"]) == {"0"} and set(meta["dataset"]) == {"eegmmidb"}
    assert meta["run"].tolist() == (["0"] * 15 + ["1"] * 15 + ["2"] * 15) * 2
    assert meta["physionet_run"].tolist() == ([4] * 15 + [8] * 15 + [12] * 15) * 2
    # Onsets are cue times within each run: increasing, on the sample grid, inside a 2-minute run.
    for _, run in meta.groupby(["subject", "run"]):
        onset = run["onset"].to_numpy()
        assert (np.diff(onset) > 4.0).all() and onset[0] > 0 and onset[-1] < 125
        np.testing.assert_allclose(onset * 160, np.round(onset * 160), atol=1e-6)
    info = data.info
    assert info.sfreq == 160.0 and info.modality == "eeg" and info.tmin == 0.0
    assert info.ch_types == ("eeg",) * 64 and info.ch_names[10] == "Cz"
    assert info.positions.shape == (64, 3) and np.isfinite(info.positions).all()
    # Head-frame positions in metres: on a ~9 cm sphere, C3 on the left (negative x).
    assert 0.05 < np.linalg.norm(info.positions, axis=1).min() < np.linalg.norm(info.positions, axis=1).max() < 0.15
    assert info.positions[info.ch_names.index("C3"), 0] < 0 < info.positions[info.ch_names.index("C4"), 0]
    # Microvolts, as MOABB: band-passed EEG is tens of uV, never volts.
    assert 1 < np.abs(data.X).max() < 5000


def test_unknown_subject_or_run_is_named(dataset_dir, isolated_cache):
    # A missing file is named with the path it was expected at and where to get it.
    with pytest.raises(DataNotFoundError, match=r"S099R04\.edf' not found at .*S099/S099R04\.edf.*physionet"):
        read_eegmmidb_run(99, 4)
    with pytest.raises(DataNotFoundError, match=r"S002R06\.edf' not found"):
        read_eegmmidb_run(2, 6)
    with pytest.raises(DataNotFoundError, match=r"subject 110, run 4 does not exist.*1-109"):
        read_eegmmidb_run(110, 4)
    with pytest.raises(EmptySelectionError, match=r"\[2\] lack files of runs \[6, 10, 14\].*S002R06\.edf.*"
                                                  r"\[1, 4, 15, 42\]"):
        load_eegmmidb(2, task="hands_feet")
    with pytest.raises(EmptySelectionError, match=r"\[200\]"):
        load_eegmmidb([1, 200])
    with pytest.raises(InvalidDataError, match="unknown task 'rest'.*left_right"):
        load_eegmmidb(task="rest")
    with pytest.raises(InvalidDataError, match="subject must be an integer, got '1'"):
        load_eegmmidb(["1"])
    with pytest.raises(InvalidDataError, match="tmin=3.5 must be smaller than tmax=3.0"):
        load_eegmmidb([1], tmin=3.5)


def test_one_bad_subject_is_reported_and_the_others_kept(dataset_dir, isolated_cache, monkeypatch):
    real = eegmmidb.read_eegmmidb_run

    def damaged_subject_2(subject, run):
        if subject == 2:
            raise CorruptFileError(f"S002R{run:02d}.edf is damaged")
        return real(subject, run)

    monkeypatch.setattr(eegmmidb, "read_eegmmidb_run", damaged_subject_2)
    with pytest.raises(PartialLoadError, match="S002R04.edf is damaged") as err:
        load_eegmmidb([1, 2, 3])
    # Dataset.load reads run by run: each of subject 2's runs is named (MOABB's run names 0-2).
    assert set(err.value.failures) == {f"subject 2, session 0, run {run}" for run in "012"}
    assert err.value.loaded.metadata["subject"].unique().tolist() == [1, 3]
    with pytest.warns(UserWarning, match="3 file"):
        kept = load_eegmmidb([1, 2], on_error="skip")
    assert len(kept) == 45


def test_moabb_helpers_stay_offline_and_restore_the_environment(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MOABB_DOWNLOAD_PROVIDER", "auto")
    monkeypatch.delenv("MNE_DATASETS_EEGBCI_PATH", raising=False)
    with moabb_offline_env():
        assert os.environ["MOABB_DOWNLOAD_PROVIDER"] == "upstream"
        assert os.path.isdir(os.path.join(os.environ["MNE_DATASETS_EEGBCI_PATH"], "MNE-eegbci-data"))
    assert os.environ["MOABB_DOWNLOAD_PROVIDER"] == "auto" and "MNE_DATASETS_EEGBCI_PATH" not in os.environ
    dataset = physionet_mi_offline()
    assert dataset.subject_list == list(present_subjects("left_right")) and dataset.feet_runs == []
    full = physionet_mi_offline(with_feet_runs=True)
    assert full.subject_list == list(present_subjects("imagery")) and full.feet_runs == [6, 10, 14]
    # A folder lacking the files: refuse before MOABB could go and download them.
    (tmp_path / "eegmmidb").mkdir()
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"6 file\(s\) MOABB would read are missing"):
        physionet_mi_offline([1, 2])
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("physionet.org", 443))


def test_nothing_was_written_under_the_data_folder(eegmmidb_folder, before_moabb, moabb_left_right, moabb_raw_s1):
    assert _snapshot(eegmmidb_folder) == before_moabb


EEGMMIDB_FILES = "MNE-eegbci-data/files/eegmmidb/1.0.0"


def _place(data_dir, root, subject, run, *, as_subject=None):
    """Link one run of the shared folder into a user's folder, optionally under another subject's name."""
    target_subject = as_subject or subject
    src = data_dir / "eegmmidb" / EEGMMIDB_FILES / f"S{subject:03d}" / f"S{subject:03d}R{run:02d}.edf"
    dst = root / "eegmmidb" / EEGMMIDB_FILES / f"S{target_subject:03d}" / f"S{target_subject:03d}R{run:02d}.edf"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if as_subject:
        dst.write_bytes(src.read_bytes())
    else:
        dst.symlink_to(src)


def test_any_subject_present_loads_and_a_misnamed_file_is_refused(data_root, tmp_path, monkeypatch, isolated_cache):
    # A user's folder holding some subjects: subject 2 and 7, and subject 1's runs copied under subject 77's name.
    for subject in (2, 7):
        for run in (4, 8, 12):
            _place(data_root, tmp_path, subject, run)
    for run in (4, 8, 12):
        _place(data_root, tmp_path, 1, run, as_subject=77)
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))
    eegmmidb._card.cache_clear()
    try:
        assert present_subjects("left_right") == (2, 7, 77)
        data = load_eegmmidb([2, 7])
        assert data.shape == (90, 64, 481) and data.metadata["subject"].unique().tolist() == [2, 7]
        # The registry holds every subject's own sha256: a file under another subject's name is caught.
        with pytest.raises(ChecksumMismatchError, match=r"S077R04\.edf has sha256"):
            read_eegmmidb_run(77, 4)
        with pytest.raises(PartialLoadError, match=r"S077R04\.edf"):
            load_eegmmidb([77])
        with pytest.raises(EmptySelectionError, match=r"subject\(s\) \[3\] lack files.*S003R04\.edf"):
            load_eegmmidb([3])
    finally:
        eegmmidb._card.cache_clear()


def test_generic_dataset_view_equals_the_loader(dataset_dir, isolated_cache):
    from neurodecode.data.registry import get_dataset

    ds = get_dataset("eegmmidb")
    ours = ds.load([1])
    ref = load_eegmmidb([1])
    np.testing.assert_array_equal(ours.X, ref.X)
    assert ours.labels.tolist() == ref.labels.tolist() and ours.info == ref.info
    assert ours.metadata.equals(ref.metadata)
    assert get_dataset("eegmmidb:hands_feet").paradigm.classes == ("hands", "feet")


def _digest(data) -> str:
    digest = hashlib.sha256()
    digest.update(np.round(data.X, 6).tobytes())
    digest.update(data.y.astype(np.int64).tobytes())
    digest.update(data.metadata.to_csv(index=False).encode())
    info = data.info
    digest.update(repr((info.sfreq, info.ch_names, info.class_names, info.tmin, info.unit)).encode())
    return digest.hexdigest()[:16]


# Digests of subject 1's epochs (X to 1e-6 uV, y, metadata, signal info) as eegmmidb's own epoching
# (_load_subject, removed when load_eegmmidb moved onto Dataset.load) gave them: the one path gives the same.
_BEFORE_ONE_PATH = {"default": ({}, "60193d6799d492e6"), "imagery": ({"task": "imagery"}, "30bbf5872b1b6398"),
                    "window_rate": ({"tmin": 1.0, "resample": 100.0, "fmin": 7.0, "fmax": 35.0}, "2b66d3f774829e48")}


@pytest.mark.parametrize("case", sorted(_BEFORE_ONE_PATH))
def test_the_one_epoching_path_gives_the_epochs_of_the_old_one(dataset_dir, isolated_cache, monkeypatch, case):
    from neurodecode.data.dataset import Dataset

    kwargs, expected = _BEFORE_ONE_PATH[case]
    calls = []
    real_load = Dataset.load
    monkeypatch.setattr(Dataset, "load", lambda self, *a, **k: calls.append(self.name) or real_load(self, *a, **k))
    data = load_eegmmidb([1], progress=False, **kwargs)
    assert calls == [eegmmidb.EEGMMIDB(kwargs.get("task", "left_right")).name]  # through the generic path
    assert _digest(data) == expected
    assert set(data.metadata["dataset"]) == {"eegmmidb"}
