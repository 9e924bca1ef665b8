"""MOABB dataset classes read offline through MoabbDataset.

MOABB finds eegmmidb through ``MNE_DATASETS_EEGBCI_PATH``; here that is a folder of the test's own
holding links to subject 1's eight files, so that nothing MOABB creates (it makes a folder for
each file it would download) lands in the shared data folder. MNE's config is read from a fake
home folder, so the user's own MNE settings play no part.
"""

import os
import pickle
import socket
import time

import numpy as np
import pytest

from neurodecode.data.errors import DataNotFoundError, EmptySelectionError, NeurodecodeDataError
from neurodecode.data.io.moabb_dataset import MoabbDataset, NetworkRefused, refuse_downloads

pytest.importorskip("moabb")

S001 = "MNE-eegbci-data/files/eegmmidb/1.0.0/S001"
# What PhysionetMI(imagined=True).data_path(1) asks for: baselines, then the hand and feet runs.
S001_RUNS = (1, 2, 4, 6, 8, 10, 12, 14)


@pytest.fixture
def mne_home(tmp_path, monkeypatch):
    """An empty MNE data folder and config of the test's own."""
    (tmp_path / "home").mkdir()
    (tmp_path / "mne_data").mkdir()
    monkeypatch.setenv("_MNE_FAKE_HOME_DIR", str(tmp_path / "home"))
    monkeypatch.setenv("MNE_DATA", str(tmp_path / "mne_data"))
    monkeypatch.delenv("MOABB_DOWNLOAD_PROVIDER", raising=False)
    return tmp_path / "mne_data"


@pytest.fixture
def eegbci(dataset_dir, mne_home, tmp_path, monkeypatch):
    """MOABB's eegmmidb folder: links to subject 1's files only (moabb_offline_env's settings)."""
    source = dataset_dir("eegmmidb") / S001
    folder = tmp_path / "eegbci" / S001
    folder.mkdir(parents=True)
    for run in S001_RUNS:
        (folder / f"S001R{run:02d}.edf").symlink_to(source / f"S001R{run:02d}.edf")
    monkeypatch.setenv("MNE_DATASETS_EEGBCI_PATH", str(tmp_path / "eegbci"))
    monkeypatch.setenv("MOABB_DOWNLOAD_PROVIDER", "upstream")
    return tmp_path / "eegbci"


@pytest.fixture(scope="module")
def reference(dataset_dir):
    from neurodecode.data.datasets.eegmmidb import load_eegmmidb

    dataset_dir("eegmmidb")
    return load_eegmmidb([1], progress=False)


def test_paradigm_comes_from_the_moabb_class():
    mi = MoabbDataset("BNCI2014_001")
    assert mi.name == "moabb:BNCI2014_001"
    assert (mi.paradigm.kind, mi.paradigm.classes) == ("imagery", ("feet", "left_hand", "right_hand", "tongue"))
    assert (mi.paradigm.interval, mi.paradigm.band) == ((2.0, 6.0), (8.0, 32.0))
    p300 = MoabbDataset("BNCI2014_009")
    assert (p300.paradigm.kind, p300.paradigm.classes, p300.paradigm.band) == ("p300", ("NonTarget", "Target"),
                                                                               (1.0, 24.0))
    assert MoabbDataset("Kalunga2016").paradigm.band == (7.0, 45.0)
    with pytest.raises(NeurodecodeDataError, match="no dataset class 'NoSuchData'"):
        MoabbDataset("NoSuchData")


def test_physionet_mi_offline_matches_the_eegmmidb_loader(eegbci, reference):
    ds = MoabbDataset("PhysionetMI", imagined=True)
    assert ds.paradigm.classes == ("feet", "hands", "left_hand", "rest", "right_hand")
    assert [r.run for r in ds.recordings(1)] == ["0", "1", "2", "3", "4", "5"]
    raw = ds.recordings(1)[0].read()
    assert {"left_hand", "right_hand", "rest"} <= set(raw.annotations.description)
    data = ds.load([1])  # every class: each of the six runs holds some
    left_right = np.isin(np.asarray(data.info.class_names)[data.y], ["left_hand", "right_hand"])
    assert left_right.sum() == len(reference) == 45
    names = np.asarray(data.info.class_names)[data.y[left_right]]
    np.testing.assert_array_equal(names, np.asarray(reference.info.class_names)[reference.y])
    np.testing.assert_allclose(data.X[left_right], reference.X, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(data.metadata["run"][left_right], reference.metadata["run"])


def test_configured_moabb_object_left_right_only(eegbci, reference):
    from moabb.datasets import PhysionetMI

    physionet = PhysionetMI(imagined=True)
    physionet.feet_runs = []  # the hand runs 4, 8, 12 only, as load_eegmmidb reads
    ds = MoabbDataset(physionet)
    data = ds.load([1], classes=["left_hand", "right_hand"])
    assert data.shape == reference.shape
    np.testing.assert_array_equal(data.y, reference.y)
    np.testing.assert_allclose(data.X, reference.X, rtol=0, atol=1e-9)
    with pytest.raises(NeurodecodeDataError, match="keyword arguments"):
        MoabbDataset(physionet, imagined=True)


def test_subjects_are_those_whose_files_are_present(eegbci):
    ds = MoabbDataset("PhysionetMI", imagined=True, subjects=[1, 2, 3])
    started = time.perf_counter()
    assert ds.subjects() == (1,)
    assert time.perf_counter() - started < 10
    with pytest.raises(DataNotFoundError, match="PhysionetMI needs files for subject 2"):
        ds.load([2])
    with pytest.raises(EmptySelectionError, match="no subject"):
        ds.load([500])


def test_absent_files_raise_data_not_found_without_network(mne_home):
    ds = MoabbDataset("BNCI2014_001")
    started = time.perf_counter()
    with pytest.raises(DataNotFoundError) as err:
        ds.load([1])
    message = str(err.value)
    assert "MOABB dataset BNCI2014_001 needs files for subject 1" in message
    assert str(mne_home) in message and "download=True" in message and "\n" not in message
    with pytest.raises(DataNotFoundError, match="BNCI2014_001 needs files for subject 2"):
        ds.recordings(2)
    # The message is the guard's, not the test suite's socket block (conftest's NetworkBlocked).
    chain, cause = [], err.value
    while cause is not None:
        chain.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    assert "NetworkBlocked" not in chain
    assert ds.subjects() == ()
    assert time.perf_counter() - started < 20


def test_moabb_object_for_moabb_evaluations_is_offline_and_picklable(mne_home):
    native = MoabbDataset("BNCI2014_001").moabb_dataset()
    with pytest.raises(DataNotFoundError, match="subject 1"):
        native.get_data(subjects=[1])
    assert type(pickle.loads(pickle.dumps(native))).__name__ == "BNCI2014_001"


def test_download_opt_in_lists_every_subject(mne_home, monkeypatch):
    monkeypatch.setenv("NEURODECODE_ALLOW_DOWNLOAD", "1")
    assert MoabbDataset("BNCI2014_001").subjects() == tuple(range(1, 10))  # each is obtainable
    assert MoabbDataset("BNCI2014_001", download=False).subjects() == ()  # the argument wins


def test_offline_guard(tmp_path):
    real = (socket.socket.connect, socket.create_connection, socket.getaddrinfo, os.mkdir)
    server = socket.create_server(("127.0.0.1", 0))
    try:
        with refuse_downloads() as attempts:
            with pytest.raises(NetworkRefused, match="connect to"):
                socket.create_connection(("192.0.2.1", 80), timeout=1)
            with pytest.raises(NetworkRefused, match="look up example.org"):
                socket.getaddrinfo("example.org", 443)
            with socket.create_connection(server.getsockname(), timeout=1):
                pass  # loopback stays open
            assert len(attempts) == 2
    finally:
        server.close()
    assert (socket.socket.connect, socket.create_connection, socket.getaddrinfo, os.mkdir) == real


def test_offline_guard_removes_the_empty_folders_it_saw_created(tmp_path):
    # What MOABB does for a missing file: create its folder, then connect.
    with pytest.raises(NetworkRefused):
        with refuse_downloads():
            (tmp_path / "MNE-x-data" / "sub").mkdir(parents=True)
            socket.create_connection(("192.0.2.1", 80), timeout=1)
    assert not (tmp_path / "MNE-x-data").exists()
    (tmp_path / "before").mkdir()
    with refuse_downloads():
        (tmp_path / "filled").mkdir()
        (tmp_path / "filled" / "run.edf").write_bytes(b"x")
        (tmp_path / "empty").mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before", "filled"]


def test_default_download_provider_falls_back_to_the_local_files(eegbci, monkeypatch):
    # MOABB's default provider first asks NEMAR for the subject: refused at once offline, after
    # which MOABB reads the files it has.
    monkeypatch.delenv("MOABB_DOWNLOAD_PROVIDER")
    started = time.perf_counter()
    data = MoabbDataset("PhysionetMI", imagined=True).load([1], fmin=None, fmax=None)
    assert time.perf_counter() - started < 30
    assert len(data) == 174 and set(data.info.class_names) == {"feet", "hands", "left_hand", "rest", "right_hand"}


def test_offline_block_for_moabb_evaluations(mne_home, monkeypatch):
    ds = MoabbDataset("BNCI2014_001")
    with ds.offline():
        with pytest.raises(NetworkRefused):
            socket.create_connection(("192.0.2.1", 80), timeout=1)
    before = (socket.create_connection, socket.socket.connect)
    with ds.offline():
        assert socket.create_connection is not before[0]
    monkeypatch.setenv("NEURODECODE_ALLOW_DOWNLOAD", "1")
    with ds.offline():  # downloads allowed: the block patches nothing
        assert (socket.create_connection, socket.socket.connect) == before


def test_files_in_moabbs_local_nemar_store_are_found(dataset_dir, mne_home, tmp_path, monkeypatch, reference):
    """MOABB's default download() fills a local copy of NEMAR's sourcedata/; get_data links files from it."""
    from moabb.datasets import PhysionetMI
    from moabb.datasets.download import nemar_store

    empty = tmp_path / "eegbci"
    empty.mkdir()
    monkeypatch.setenv("MNE_DATASETS_EEGBCI_PATH", str(empty))  # nothing in MOABB's usual layout
    store = nemar_store(PhysionetMI().code, PhysionetMI.nemar_id) / "sourcedata" / "S001"
    store.mkdir(parents=True)
    for run in S001_RUNS:
        (store / f"S001R{run:02d}.edf").symlink_to(dataset_dir("eegmmidb") / S001 / f"S001R{run:02d}.edf")
    ds = MoabbDataset("PhysionetMI", imagined=True, subjects=[1, 2])
    assert ds.subjects() == (1,)
    data = ds.load([1])
    left_right = np.isin(np.asarray(data.info.class_names)[data.y], ["left_hand", "right_hand"])
    np.testing.assert_allclose(data.X[left_right], reference.X, rtol=0, atol=1e-9)


@pytest.mark.parametrize("stim", [True, False])
def test_trials_equal_moabbs_own_paradigm(mne_home, stim):
    """MOABB's FakeDataset: cues on a stim channel, or only as annotations that MOABB moves to cue + interval[0]."""
    from moabb.datasets.fake import FakeDataset
    from moabb.paradigms import MotorImagery

    fake = FakeDataset(event_list=("fake1", "fake2"), n_sessions=1, n_subjects=2, seed=3, duration=60, n_events=20,
                       stim=stim, annotations=not stim)
    fake.interval = [1, 3]  # a trial starting 1 s after its cue exercises the offset
    X, labels, meta = MotorImagery(events=["fake1", "fake2"], n_classes=2, fmin=8, fmax=32).get_data(fake, [1])
    data = MoabbDataset(fake).load([1])
    assert data.shape == X.shape and len(X) == 40
    np.testing.assert_array_equal(np.asarray(data.info.class_names)[data.y], labels)
    np.testing.assert_allclose(data.X, X, rtol=0, atol=1e-6 * np.abs(X).max())
    np.testing.assert_array_equal(data.metadata["run"], meta["run"])
