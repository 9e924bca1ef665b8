"""A user's card naming their own recordings (here: real eegmmidb EDF files under new subject numbers)."""

from pathlib import Path

import mne
import numpy as np
import pytest

from neurodecode.data.errors import (ChecksumMismatchError, DataNotFoundError, InvalidDataError, PartialLoadError,
                                     UnknownEventError)
from neurodecode.data.io.card_recordings import CardDataset

S001 = "MNE-eegbci-data/files/eegmmidb/1.0.0/S001"
RUNS = (4, 8, 12)

HEADER = """
name = "my_imagery"
title = "Left/right fist imagery recorded in my lab"
modality = "eeg"
folder = "{folder}"
licence = "CC-BY-4.0"
source = "my lab"
citation = "me"
obtain = "ask me"
"""

PARADIGM = """
[paradigm]
name = "imagery"
classes = ["left_hand", "right_hand"]
interval = [0.0, 3.0]
band = [8.0, 32.0]
idle = "rest"
"""

EVENTS = """
[events]
T0 = "rest"
T1 = "left_hand"
T2 = "right_hand"
"""


def _files(names, subject=7, extra=None):
    extra = extra or {}
    return "".join(f'\n[[files]]\npath = "{name}"\nsubject = {subject}\n' + extra.get(name, "") for name in names)


@pytest.fixture
def edf_folder(dataset_dir, tmp_path):
    """The three left/right runs of eegmmidb subject 1, linked into the test's folder ``edf/``."""
    source = dataset_dir("eegmmidb") / S001
    folder = tmp_path / "edf"
    folder.mkdir()
    for run in RUNS:
        (folder / f"S001R{run:02d}.edf").symlink_to(source / f"S001R{run:02d}.edf")
    return folder


def _card(tmp_path, body: str, folder="edf", top: str = "") -> Path:
    path = tmp_path / "card.toml"
    path.write_text(HEADER.format(folder=folder) + top + body)  # top-level keys go before the tables
    return path


EDFS = [f"S001R{run:02d}.edf" for run in RUNS]


@pytest.fixture(scope="module")
def reference(dataset_dir):
    from neurodecode.data.datasets.eegmmidb import load_eegmmidb

    dataset_dir("eegmmidb")
    return load_eegmmidb([1], progress=False)


def test_card_dataset_equals_the_eegmmidb_loader(edf_folder, tmp_path, reference):
    # folder is relative to the card file; no sha256: the files are read unverified.
    ds = CardDataset(_card(tmp_path, _files(EDFS) + EVENTS + PARADIGM))
    assert ds.subjects() == (7,)
    assert [(r.session, r.run) for r in ds.recordings(7)] == [("0", "0"), ("0", "1"), ("0", "2")]
    data = ds.load()
    assert data.shape == reference.shape == (45, 64, 481)
    np.testing.assert_array_equal(data.y, reference.y)
    # Same samples; the channel names differ (the EDF's "Fc5." labels; the eegmmidb loader renames them).
    np.testing.assert_allclose(data.X, reference.X, rtol=0, atol=1e-9)
    assert data.info.ch_names[0] == "Fc5." and reference.info.ch_names[0] == "FC5"
    assert data.info.class_names == ("left_hand", "right_hand")
    assert set(data.metadata["subject"]) == {7}
    assert list(data.metadata["recording"].unique()) == EDFS
    np.testing.assert_allclose(data.metadata["onset"], reference.metadata["onset"])


def test_absolute_folder_sessions_and_runs_from_the_card(edf_folder, tmp_path, reference):
    extra = {EDFS[0]: 'session = "day1"\nrun = "a"\n', EDFS[1]: 'session = "day2"\n', EDFS[2]: 'session = "day2"\n'}
    ds = CardDataset(_card(tmp_path, _files(EDFS, extra=extra) + EVENTS + PARADIGM, folder=str(edf_folder)))
    assert [(r.session, r.run) for r in ds.recordings(7)] == [("day1", "a"), ("day2", "0"), ("day2", "1")]
    assert ds.n_sessions() == 2
    data = ds.load()
    assert data.metadata.groupby("session").size().to_dict() == {"day1": 15, "day2": 30}
    np.testing.assert_array_equal(data.y, reference.y)


def test_wrong_sha256_is_named(edf_folder, tmp_path):
    extra = {EDFS[1]: 'sha256 = "' + "0" * 64 + '"\n'}
    ds = CardDataset(_card(tmp_path, _files(EDFS, extra=extra) + EVENTS + PARADIGM))
    with pytest.raises(ChecksumMismatchError, match="S001R08.edf") as err:
        ds.recordings(7)[1].read()
    assert "0" * 64 in str(err.value)
    with pytest.raises(PartialLoadError) as err:
        ds.load()
    assert [type(e) for e in err.value.failures.values()] == [ChecksumMismatchError]
    assert len(err.value.loaded) == 30  # the two good runs still loaded


def test_right_sha256_verifies(edf_folder, tmp_path):
    from neurodecode.data.cards import sha256_of

    extra = {name: f'sha256 = "{sha256_of(edf_folder / name)}"\n' for name in EDFS}
    ds = CardDataset(_card(tmp_path, _files(EDFS, extra=extra) + EVENTS + PARADIGM))
    assert ds.recordings(7)[0].key == sha256_of(edf_folder / EDFS[0])
    assert len(ds.load(subjects=[7])) == 45


def test_event_name_in_no_file_is_one_clear_error(edf_folder, tmp_path):
    # T3 appears in none of the files (they hold T0, T1, T2): a typo the user must hear about.
    events = EVENTS + 'T3 = "feet"\n'
    ds = CardDataset(_card(tmp_path, _files(EDFS) + events + PARADIGM))
    with pytest.raises(UnknownEventError, match=r"\['T3'\] occur in none of the 3 file\(s\)") as err:
        ds.load()
    assert "T0" in str(err.value) and "\n" not in str(err.value)


def test_no_event_name_found_anywhere(edf_folder, tmp_path):
    events = '\n[events]\nleft = "left_hand"\nright = "right_hand"\n'
    ds = CardDataset(_card(tmp_path, _files(EDFS) + events + PARADIGM))
    with pytest.raises(UnknownEventError, match=r"\['left', 'right'\] occur in none") as err:
        ds.load()
    assert "S001R04.edf" in str(err.value) and "'T1'" in str(err.value)
    with pytest.raises(UnknownEventError, match=r"S001R08.edf: none of the \[events\] names"):
        ds.recordings(7)[1].read()


def test_missing_file_names_the_expected_path(edf_folder, tmp_path):
    ds = CardDataset(_card(tmp_path, _files(EDFS + ["S001R99.edf"]) + EVENTS + PARADIGM))
    assert ds.subjects() == ()
    with pytest.raises(DataNotFoundError, match="S001R99.edf") as err:
        ds.load()
    assert str(edf_folder / "S001R99.edf") in str(err.value)


def test_card_errors_name_what_is_wrong(edf_folder, tmp_path):
    with pytest.raises(InvalidDataError, match=r"no \[paradigm\] table"):
        CardDataset(_card(tmp_path, _files(EDFS) + EVENTS))
    with pytest.raises(InvalidDataError, match=r"class\(es\) \['right_hand'\] of \[paradigm\] have no \[events\]"):
        CardDataset(_card(tmp_path, _files(EDFS) + '\n[events]\nT1 = "left_hand"\n' + PARADIGM))
    no_subject = "".join(f'\n[[files]]\npath = "{name}"\n' for name in EDFS)
    with pytest.raises(InvalidDataError, match="S001R04.edf' has no subject"):
        CardDataset(_card(tmp_path, no_subject + EVENTS + PARADIGM))
    with pytest.raises(InvalidDataError, match="subject = '7'"):
        CardDataset(_card(tmp_path, _files(EDFS, subject='"7"') + EVENTS + PARADIGM))
    twice = _files(EDFS[:1]) + f'\n[[files]]\npath = "{EDFS[1]}"\nsubject = 7\nrun = "0"\n'
    with pytest.raises(InvalidDataError, match="are both subject 7"):
        CardDataset(_card(tmp_path, twice + EVENTS + PARADIGM))


def test_events_from_a_stim_channel(edf_folder, tmp_path, reference):
    """Trigger codes named as strings in [events] become class annotations at each trigger."""
    raw = mne.io.read_raw_edf(edf_folder / EDFS[0], preload=True, verbose="error")
    events, _ = mne.events_from_annotations(raw, event_id={"T0": 1, "T1": 2, "T2": 3}, verbose="error")
    stim = mne.io.RawArray(np.zeros((1, raw.n_times)), mne.create_info(["TRIG"], raw.info["sfreq"], "stim"),
                           verbose="error")
    raw.add_channels([stim], force_update_info=True)
    raw.add_events(events, stim_channel="TRIG")
    raw.set_annotations(None)
    raw.save(edf_folder / "run4_raw.fif", fmt="double", verbose="error")

    events = '\n[events]\n"2" = "left_hand"\n"3" = "right_hand"\n'
    ds = CardDataset(_card(tmp_path, _files(["run4_raw.fif"]) + events + PARADIGM, top='stim_channel = "TRIG"\n'))
    assert ds.stim_channel == "TRIG"
    data = ds.load()
    assert data.shape == (15, 64, 481)  # the stim channel is not an EEG channel
    first_run = (reference.metadata["physionet_run"] == 4).to_numpy()
    np.testing.assert_array_equal(data.y, reference.y[first_run])
    np.testing.assert_allclose(data.X, reference.X[first_run], rtol=0, atol=1e-9)

    # Without stim_channel the file's first stim channel is used for names that are not annotations.
    plain = _card(tmp_path, _files(["run4_raw.fif"]) + events + PARADIGM)
    np.testing.assert_array_equal(CardDataset(plain).load().y, data.y)
