"""A BIDS copy of real eegmmidb runs, read back through BIDSDataset, equals the eegmmidb loader."""

import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import write_eegmmidb_bids
from neurodecode.data.dataset import Paradigm
from neurodecode.data.errors import DataNotFoundError, InvalidDataError
from neurodecode.data.io.bids import BIDSDataset

mne_bids = pytest.importorskip("mne_bids")

RUNS = (4, 8, 12)
LEFT_RIGHT = {"name": "imagery", "classes": ["left_hand", "right_hand"], "interval": [0.0, 3.0], "band": [8.0, 32.0]}
TOML = """name = "eegmmidb_bids"

[paradigm]
name = "imagery"
classes = ["left_hand", "right_hand"]
interval = [0.0, 3.0]
band = [8.0, 32.0]
idle = "rest"
"""


@pytest.fixture(scope="module")
def bids_root(data_root, dataset_dir, tmp_path_factory):
    """eegmmidb subjects 1 and 2, runs 4, 8, 12, as a BIDS dataset (sub-01, sub-02), no neurodecode.toml."""
    dataset_dir("eegmmidb")
    root = tmp_path_factory.mktemp("bids") / "eegmmidb_bids"
    return write_eegmmidb_bids(data_root, root, (1, 2), RUNS)


@pytest.fixture(scope="module")
def reference(eegmmidb_two_subjects):
    return eegmmidb_two_subjects


def _same(data, reference):
    assert data.shape == reference.shape == (90, 64, 481)
    np.testing.assert_array_equal(data.y, reference.y)
    np.testing.assert_allclose(data.X, reference.X, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(data.metadata["subject"], reference.metadata["subject"])
    np.testing.assert_allclose(data.metadata["onset"], reference.metadata["onset"])


def test_paradigm_from_neurodecode_toml(bids_root, tmp_path, reference):
    root = tmp_path / "with_toml"
    shutil.copytree(bids_root, root)
    (root / "neurodecode.toml").write_text(TOML)
    ds = BIDSDataset(root)
    assert ds.name == "eegmmidb_bids"
    assert ds.paradigm == Paradigm("imagery", ("left_hand", "right_hand"), (0.0, 3.0), (8.0, 32.0), "rest")
    assert ds.subjects() == (1, 2)
    recs = ds.recordings(2)
    assert [(r.subject, r.session, r.run) for r in recs] == [(2, "0", "4"), (2, "0", "8"), (2, "0", "12")]
    assert recs[0].extra == {"bids_subject": "02", "bids_task": "imagery"} and len(recs[0].key) == 64
    data = ds.load()
    _same(data, reference)
    assert list(data.metadata["run"].unique()) == ["4", "8", "12"]


def test_paradigm_from_the_constructor(bids_root, reference):
    ds = BIDSDataset(bids_root, paradigm=LEFT_RIGHT)
    assert ds.paradigm.classes == ("left_hand", "right_hand")
    _same(ds.load(), reference)
    # classes= replaces the classes of whichever paradigm; the labels follow the new order.
    flipped = BIDSDataset(bids_root, paradigm=LEFT_RIGHT, classes=["right_hand", "left_hand"]).load()
    np.testing.assert_array_equal(flipped.y, 1 - reference.y)


def test_inferred_paradigm_never_makes_rest_a_class_and_says_what_it_chose(bids_root, reference, caplog):
    with caplog.at_level(logging.WARNING, logger="neurodecode.data.io.bids"):
        ds = BIDSDataset(bids_root)
    # Every task trial type, sorted; "rest" (T0, between cues) is the idle marker, not a third class;
    # the shortest trial (left/right cues last 4.1 s); MOABB's MI band.
    assert ds.paradigm == Paradigm("imagery", ("left_hand", "right_hand"), (0.0, 4.1), (8.0, 32.0), idle="rest")
    assert ds.paradigm_source == "inferred" and ds.name == "eegmmidb_bids"
    [record] = caplog.records
    assert record.getMessage() == (
        f"BIDS dataset {bids_root.resolve()}: no neurodecode.toml, so the classes are the events files' trial types "
        "['left_hand', 'right_hand'] ('rest' left out: rest, used as the idle marker); declare them in "
        "neurodecode.toml [paradigm] classes (or pass classes=) to choose others")
    _same(ds.load(tmax=3.0), reference)
    # Declared classes are taken as they are, without a word.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="neurodecode.data.io.bids"):
        declared = BIDSDataset(bids_root, classes=["right_hand", "left_hand"])
    assert declared.paradigm.classes == ("right_hand", "left_hand") and declared.paradigm_source == "argument"
    assert not caplog.records


def test_the_chosen_classes_are_one_line_on_stderr(bids_root, tmp_path):
    code = f"from neurodecode.data.io.bids import BIDSDataset; print(BIDSDataset({str(bids_root)!r}).paradigm.classes)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "('left_hand', 'right_hand')\n"
    [line] = done.stderr.splitlines()
    assert line.endswith("('rest' left out: rest, used as the idle marker); declare them in neurodecode.toml "
                         "[paradigm] classes (or pass classes=) to choose others")


def test_non_numeric_subject_labels(data_root, tmp_path, reference):
    root = tmp_path / "labels"
    write_eegmmidb_bids(data_root, root, (1, 2), (4,), label={1: "bob", 2: "alice"}.get)
    ds = BIDSDataset(root, paradigm=LEFT_RIGHT)
    assert ds.subjects() == (1, 2)  # alice, bob in sorted order
    assert ds.recordings(1)[0].extra["bids_subject"] == "alice"
    data = ds.load(subjects=[1])
    assert set(data.metadata["bids_subject"]) == {"alice"}
    subject2_run4 = ((reference.metadata["subject"] == 2) & (reference.metadata["physionet_run"] == 4)).to_numpy()
    np.testing.assert_allclose(data.X, reference.X[subject2_run4], rtol=0, atol=1e-9)


def test_registry_resolves_a_bids_folder(bids_root):
    from neurodecode.data.registry import get_dataset

    ds = get_dataset(str(bids_root))
    assert isinstance(ds, BIDSDataset) and ds.root == bids_root.resolve()


def test_errors(bids_root, tmp_path):
    with pytest.raises(DataNotFoundError, match="no dataset_description.json"):
        BIDSDataset(tmp_path)
    with pytest.raises(DataNotFoundError, match="no eeg recording of task 'rest'"):
        BIDSDataset(bids_root, task="rest")
    one_class = tmp_path / "one_class"
    shutil.copytree(bids_root / "sub-01", one_class / "sub-01")
    shutil.copy(bids_root / "dataset_description.json", one_class)
    for tsv in one_class.glob("sub-01/eeg/*_events.tsv"):
        lines = tsv.read_text().splitlines()
        tsv.write_text("\n".join([lines[0]] + [line for line in lines[1:] if "\trest\t" in line]) + "\n")
    with pytest.raises(InvalidDataError, match=r"cannot infer a paradigm.*\['rest'\]"):
        BIDSDataset(one_class)
