"""`train_model` and `neurodecode train` on real eegmmidb trials.

What is under test: the card reports a leave-subjects-out cross-validation beside the pooled one,
each labelled, with chance level, and the grouped one is the headline; a model at chance is
flagged; progress goes to stderr; an output that cannot be written is refused before any data
are loaded; a full disk leaves no file; the rate and channels reach the model through the
DecodingData, as at prediction.
"""

import errno
import inspect
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from conftest import trained_model
from neurodecode.batch import train as train_module
from neurodecode.batch.train import chance_level, score_lines, train_model
from neurodecode.cli import main
from neurodecode.contract import read_card
from neurodecode.contract.pipeline_files import load_pipelines
from neurodecode.contract.versions import VERSIONED_PACKAGES, package_versions
from neurodecode.data.container import DecodingData
from neurodecode.data.dataset import Dataset
from neurodecode.data.registry import get_dataset
from neurodecode.transforms import BandPower

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
COV_TS_LR = PIPELINES / "COV_TS_LR.yml"


def _spec(name):
    specs, failures = load_pipelines(PIPELINES, names=[name])
    assert not failures
    return specs[0]


class _ShuffledLabels(Dataset):
    """eegmmidb with each subject's labels permuted (seeded): nothing left to learn."""

    def __init__(self, base):
        super().__init__(base.name, base.paradigm, modality=base.modality, picks=base.picks)
        self.base = base

    def subjects(self):
        return self.base.subjects()

    def recordings(self, subject):
        return self.base.recordings(subject)

    def load(self, subjects=None, **kwargs):
        data = super().load(subjects, **kwargs)
        rng = np.random.default_rng(0)
        return DecodingData(data.X, rng.permutation(data.y), data.metadata, data.info)


@pytest.fixture(scope="module")
def two_subject_card(tmp_path_factory, dataset_dir):
    """The card of the batch tests' model: COV+TS+LR on subjects 1-2, cv=2 (trained once per session)."""
    return read_card(trained_model(tmp_path_factory, dataset_dir))


@pytest.fixture(scope="module")
def one_subject(dataset_dir):
    """BandPower+LDA on subject 1 alone, 3 folds: (estimator, card)."""
    dataset_dir("eegmmidb")
    return train_model(_spec("BandPower+LDA"), "eegmmidb", subjects=[1], cv=3)


# -- 1. cross-validation grouped by subject, beside the pooled one -------------------------------

def test_the_headline_leaves_subjects_out_and_the_pooled_figure_is_beside_it(two_subject_card):
    scores = two_subject_card.scores
    assert scores["headline"] == "leave-subjects-out" and scores["metric"] == "roc_auc" and scores["chance"] == 0.5
    by_subject, pooled = scores["by_subject"], scores["pooled"]
    assert by_subject["cv"]["kind"] == "GroupKFold" and by_subject["cv"]["groups"] == "subject"
    # min(cv=2, 2 subjects) folds, each testing one subject the fold's model never saw.
    assert by_subject["cv"]["n_splits"] == 2 and sorted(by_subject["cv"]["test_subjects"]) == [[1], [2]]
    assert pooled["cv"]["kind"] == "StratifiedKFold" and pooled["cv"]["pooled_subjects"] is True
    # The card's top-level figure is the headline's, with the headline's split.
    assert (scores["mean"], scores["per_fold"], scores["cv"]) == (by_subject["mean"], by_subject["per_fold"],
                                                                  by_subject["cv"])
    assert scores["mean"] == pytest.approx(np.mean(scores["per_fold"]))
    # Measured: pooled 0.751 (folds 0.775, 0.727) against 0.696 on the subject left out (0.630, 0.761):
    # pooling the same people in training and test is what inflated the old single figure.
    assert pooled["mean"] == pytest.approx(0.751, abs=0.002) and by_subject["mean"] == pytest.approx(0.696, abs=0.002)
    # Two folds cannot bound the figure for a new person: the interval spans the whole range.
    assert scores["ci95"] == [0.0, 1.0] and scores["at_chance"] is True


def test_the_leave_subjects_out_figure_is_what_scikit_learn_gives(two_subject_card, eegmmidb_two_subjects):
    # Recomputed independently: GroupKFold by subject and cross_val_score on the same trials.
    data = eegmmidb_two_subjects
    expected = cross_val_score(_spec("COV+TS+LR").pipeline, data.X, data.y, groups=data.groups("subject"),
                               cv=GroupKFold(n_splits=2), scoring="roc_auc")
    np.testing.assert_allclose(two_subject_card.scores["by_subject"]["per_fold"], expected, rtol=0, atol=1e-12)


def test_one_subject_says_no_figure_on_new_people_is_possible(one_subject):
    _, card = one_subject
    scores = card.scores
    assert scores["by_subject"] is None and scores["headline"] == "pooled"
    assert scores["per_fold"] == scores["pooled"]["per_fold"] and len(scores["per_fold"]) == 3
    lines = score_lines(card)
    assert lines[0].startswith("BandPower+LDA on eegmmidb: roc_auc 0.") and "within subject 1" in lines[0]
    assert any("new subjects: no figure is possible from one subject" in line for line in lines)
    assert "  chance: roc_auc 0.5" in lines


def test_the_number_of_subject_folds_is_min_of_cv_and_subjects(dataset_dir):
    dataset_dir("eegmmidb")
    _, card = train_model(make_pipeline(DummyClassifier()), "eegmmidb", subjects=[1, 2, 3], cv=5)
    by_subject = card.scores["by_subject"]
    assert by_subject["cv"]["n_splits"] == 3 and sorted(by_subject["cv"]["test_subjects"]) == [[1], [2], [3]]
    assert len(card.scores["pooled"]["per_fold"]) == 5


# -- 2. a model at chance is flagged ---------------------------------------------------------------

def test_a_model_that_always_says_the_same_is_at_chance(dataset_dir):
    dataset_dir("eegmmidb")
    _, card = train_model(make_pipeline(DummyClassifier(strategy="prior")), "eegmmidb", subjects=[1, 2, 3], cv=3)
    assert card.scores["per_fold"] == [0.5, 0.5, 0.5] and card.scores["at_chance"] is True
    warning = score_lines(card)[-1]
    assert warning.startswith("WARNING: Pipeline on eegmmidb is not distinguishable from chance on new subjects")
    assert "reaches chance (0.5)" in warning


def test_cov_ts_lr_on_shuffled_labels_is_at_chance_and_on_true_labels_is_not(dataset_dir):
    dataset_dir("eegmmidb")
    base = get_dataset("eegmmidb")
    _, shuffled = train_model(_spec("COV+TS+LR"), _ShuffledLabels(base), subjects=[1], cv=5)
    _, true = train_model(_spec("COV+TS+LR"), base, subjects=[1], cv=5)
    # Measured: shuffled 0.54 (95% CI 0.25-0.83), true labels 0.92 (0.83-1.00); the same 45 trials, 5 folds.
    assert shuffled.scores["at_chance"] is True and shuffled.scores["ci95"][0] <= 0.5
    assert true.scores["at_chance"] is False and true.scores["ci95"][0] > 0.7
    assert score_lines(shuffled)[-1].startswith("WARNING: ")
    assert not any(line.startswith("WARNING") for line in score_lines(true))


def test_chance_levels():
    assert chance_level("roc_auc", 2) == 0.5
    assert chance_level("balanced_accuracy", 4) == 0.25
    with pytest.raises(ValueError, match="no chance level known for metric 'accuracy'"):
        chance_level("accuracy", 3)


# -- 3. progress on stderr, and the command's summary ---------------------------------------------------

def test_train_command_tells_progress_and_labels_both_figures(tmp_path, capsys, dataset_dir):
    dataset_dir("eegmmidb")
    out = tmp_path / "m.ndm"
    assert main(["train", str(COV_TS_LR), "--subjects", "1-2", "--cv", "2", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    progress = captured.err.splitlines()
    assert progress[:2] == [line for line in progress if line.startswith("train: subject ")]
    assert progress[0].startswith("train: subject 1 (1/2): 45 trials, ")
    folds = [line for line in progress if " fold " in line]
    assert [line.split(":")[1] for line in folds] == [
        " leave-subjects-out, fold 1/2 (test subject(s) 2)", " leave-subjects-out, fold 2/2 (test subject(s) 1)",
        " pooled, fold 1/2", " pooled, fold 2/2"]
    assert all(line.endswith(" s") and " roc_auc 0." in line for line in folds)
    assert progress[-1].startswith("train: final fit on 90 trials: ")
    lines = captured.out.splitlines()
    assert lines[0].startswith("COV+TS+LR on eegmmidb: roc_auc 0.")
    assert "on new subjects (2-fold CV, 90 trials" in lines[0]
    assert lines[1].startswith("  leave-subjects-out (GroupKFold by subject, 2 folds; the headline): roc_auc ")
    assert lines[2].startswith("  pooled (StratifiedKFold, 2 folds over every subject's trials mixed; the same people")
    assert lines[3] == "  chance: roc_auc 0.5"
    # Two folds of one subject each cannot tell a new person's figure from chance: said, not hidden.
    assert lines[4].startswith("WARNING: COV+TS+LR on eegmmidb is not distinguishable from chance")
    assert lines[5] == f"model: {out}  card: {out}.card.json"
    card = json.loads(Path(f"{out}.card.json").read_text())
    assert card == read_card(out).to_dict() and card["scores"]["at_chance"] is True


def test_quiet_prints_no_progress(tmp_path, capsys, dataset_dir):
    dataset_dir("eegmmidb")
    out = tmp_path / "m.ndm"
    assert main(["train", str(COV_TS_LR), "--subjects", "1", "--cv", "2", "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "within subject 1 (2-fold CV, 45 trials of subjects 1" in captured.out


# -- 4. output checks before any data are loaded, and a full disk ---------------------------------

@pytest.fixture
def no_loading(monkeypatch):
    """Any load of a dataset fails the test: a refusal must come before the data."""
    def refuse(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the output was checked")
    monkeypatch.setattr(Dataset, "load", refuse)


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder in which no file can be created: a read-only mount as root, mode 0555 otherwise."""
    folder = tmp_path / "ro"
    mounted = _mount_tmpfs(folder, "ro,size=64k")
    if not mounted:
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            pytest.skip("cannot make a read-only folder here (root without mount)")
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o755)


@pytest.fixture
def full_folder(tmp_path):
    """A file system with room for a few pages only (a COV+TS+LR model file is about 41 kB)."""
    folder = tmp_path / "full"
    if not _mount_tmpfs(folder, "size=16k"):
        pytest.skip("needs root and mount to make a full file system")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def _one_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("target, expected", [
    ("existing_folder", "it is a folder; name a file in it"),
    ("missing/m.ndm", "folder {tmp}/missing does not exist"),
    ("a_file/m.ndm", "{tmp}/a_file is not a folder"),
    ("read_only.ndm", "the file is read-only"),
])
def test_an_output_that_cannot_be_written_is_refused_before_loading(target, expected, tmp_path, capsys, no_loading):
    (tmp_path / "existing_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "read_only.ndm").write_text("an old model")
    (tmp_path / "read_only.ndm").chmod(0o444)
    code = main(["train", str(COV_TS_LR), "--subjects", "1", "--out", str(tmp_path / target)])
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert code == 2 and line.startswith("neurodecode train: error: cannot write the model file to ")
    assert expected.format(tmp=tmp_path) in line and captured.out == ""
    assert (tmp_path / "read_only.ndm").read_text() == "an old model"


def test_a_card_path_that_is_a_folder_is_refused_before_loading(tmp_path, capsys, no_loading):
    (tmp_path / "m.ndm.card.json").mkdir()
    assert main(["train", str(COV_TS_LR), "--subjects", "1", "--out", str(tmp_path / "m.ndm")]) == 2
    assert "cannot write the card to" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "m.ndm").exists()


def test_a_read_only_folder_is_refused_before_loading(read_only_folder, capsys, no_loading):
    code = main(["train", str(COV_TS_LR), "--subjects", "1", "--out", str(read_only_folder / "m.ndm")])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and f"no file can be created in folder {read_only_folder}" in line
    assert list(read_only_folder.iterdir()) == []


def test_a_full_disk_is_one_line_and_leaves_no_file(full_folder, capsys, dataset_dir):
    dataset_dir("eegmmidb")
    code = main(["train", str(COV_TS_LR), "--subjects", "1", "--cv", "2", "--out", str(full_folder / "m.ndm"),
                 "--quiet"])
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert code == 2 and line.startswith(f"neurodecode train: error: cannot write the model file {full_folder}/m.ndm")
    assert "No space left on device" in line
    assert list(full_folder.iterdir()) == []  # no half model file, no temporary file, no card


def test_a_card_that_cannot_be_written_leaves_no_stale_card(tmp_path, capsys, monkeypatch, dataset_dir):
    dataset_dir("eegmmidb")
    out = tmp_path / "m.ndm"
    Path(f"{out}.card.json").write_text('{"name": "a previous model"}')
    from neurodecode._utils import files

    def disk_full(path, content, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    # The command writes the card through files.write_atomically; the model file was written before it.
    monkeypatch.setattr(files, "write_atomically", disk_full)
    assert main(["train", str(COV_TS_LR), "--subjects", "1", "--cv", "2", "--out", str(out), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"the model was saved to {out}, but its card could not be written" in line
    assert read_card(out).subjects == [1] and not Path(f"{out}.card.json").exists()


def test_train_model_keeps_the_fitted_model_when_the_write_fails(tmp_path, monkeypatch, dataset_dir):
    dataset_dir("eegmmidb")
    from neurodecode.contract import ModelFileError

    def disk_full(estimator, card, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(train_module, "save_model", disk_full)
    with pytest.raises(ModelFileError, match="No space left on device; nothing was written there") as caught:
        train_model(_spec("COV+TS+LR"), "eegmmidb", subjects=[1], cv=2, out=tmp_path / "m.ndm")
    assert caught.value.card.subjects == [1] and hasattr(caught.value.estimator, "predict")


# -- 5. the rate and channels reach the model through the DecodingData -----------------------------

def test_a_neurodecode_first_step_records_the_data_rate_and_channels(one_subject):
    estimator, card = one_subject
    # Fitted on the DecodingData, as prediction hands it (model_input): what is checked there is known.
    assert estimator[0].sfreq_ == 160.0 and list(estimator[0].ch_names_) == card.ch_names


def test_a_rate_set_by_hand_that_contradicts_the_data_is_refused(tmp_path, dataset_dir):
    dataset_dir("eegmmidb")
    pinned = make_pipeline(BandPower(sfreq=250.0), LinearDiscriminantAnalysis())
    with pytest.raises(ValueError, match=r"BandPower: sfreq=250.0 Hz was given but the DecodingData is sampled at "
                                         r"160.0 Hz"):
        train_model(pinned, "eegmmidb", subjects=[1], cv=2, out=tmp_path / "m.ndm")
    assert list(tmp_path.iterdir()) == []


def test_one_route_for_the_rate():
    source = inspect.getsource(train_module)
    assert "_check_rate_parameters" not in source and "bind_signal_info" not in source


# -- 6. no skorch ---------------------------------------------------------------------------------------

def test_skorch_is_named_nowhere_in_train_or_the_recorded_versions():
    assert "skorch" not in VERSIONED_PACKAGES and "skorch" not in package_versions()
    assert "skorch" not in inspect.getsource(train_module)
