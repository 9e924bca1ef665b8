"""`neurodecode calibrate` and batch's recentring, on real eegmmidb data.

The model is RCT+TS+LR (``pipelines/RCT_TS_LR.py``, a TransferClassifier with Riemannian recentring)
trained with ``train_model`` on subjects 1-3 (cv=2); the new person is subject 4, whose run 4 (15
left/right imagery cues, T1/T2 in the EDF) is the calibration run. A non-transfer model is the
pretrained model's inner pipeline saved on its own (COV+TS+LR fitted, no TransferClassifier).
"""

import copy
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurodecode.batch.calibrate import calibrate_model, cue_trials, figure_path
from neurodecode.batch.predict import predict_recording
from neurodecode.batch.runner import run_batch
from neurodecode.batch.report import write_report
from neurodecode.cli import main
from neurodecode.contract.model_file import load_model, save_model
from neurodecode.contract.signal import model_input

REPO = Path(__file__).resolve().parents[2]
EDF = "MNE-eegbci-data/files/eegmmidb/1.0.0/S{s:03d}/S{s:03d}R{r:02d}.edf"
EVENTS = {"T1": "left_hand", "T2": "right_hand"}
EVENTS_ARG = "T1=left_hand,T2=right_hand"


@pytest.fixture(scope="module")
def rct_model(tmp_path_factory, dataset_dir):
    """RCT+TS+LR trained on eegmmidb subjects 1-3, two folds (about 40 s on 2 shared cores)."""
    from neurodecode.batch import train_model
    from neurodecode.contract.pipeline_files import load_pipelines

    dataset_dir("eegmmidb")
    (spec,), failures = load_pipelines(REPO / "pipelines" / "RCT_TS_LR.py")
    assert not failures
    path = tmp_path_factory.mktemp("calibrate") / "rct.ndm"
    train_model(spec, "eegmmidb", subjects=[1, 2, 3], cv=2, out=path)
    return path


@pytest.fixture(scope="module")
def run4(dataset_dir):
    return dataset_dir("eegmmidb") / EDF.format(s=4, r=4)


@pytest.fixture(scope="module")
def plain_model(rct_model):
    """A model that is not a transfer model: the fitted inner COV+TS+LR pipeline, saved with the same card."""
    model, card = load_model(rct_model)
    path = rct_model.with_name("plain.ndm")
    save_model(model.estimator_, card, path)
    return path


def _reference_of(model, card, X):
    """The target reference a copy of ``model`` gets from an unlabelled calibration on ``X``."""
    return copy.deepcopy(model).calibrate(model_input(model, X, card)).target_reference_


def test_calibrate_writes_a_model_whose_card_records_a_calibration_scored_on_held_out_trials_only(
        rct_model, run4, tmp_path, capsys):
    out = tmp_path / "s4.ndm"
    assert main(["calibrate", str(rct_model), str(run4), "--out", str(out), "--events", EVENTS_ARG]) == 0
    printed = capsys.readouterr().out
    # The file loads (full trust check) and its card records the calibration, recordings by name only.
    model, card = load_model(out)
    record = card.extra["calibration"]
    assert record["recordings"] == ["S004R04.edf"]
    assert str(run4.parent) not in json.dumps(card.to_dict())
    assert record["mode"] == "labelled" and record["calibration"] == "recentred"
    assert record["n_trials"] == 15 and record["class_counts"] == {"left_hand": 8, "right_hand": 7}
    split = record["split"]
    assert (split["n_calibration"], split["n_holdout"], split["holdout"]) == (10, 5, 0.3)
    assert sum(split["holdout_counts"].values()) == 5
    # Before and after were computed on the 5 held-out trials only: recomputed here from those trials.
    pretrained, pre_card = load_model(rct_model)
    X, y, onsets, n_cues = cue_trials(run4, pre_card, events=EVENTS)
    assert len(y) == n_cues == 15 and np.all(np.diff(onsets) > 0)
    for when, fitted in (("before", pretrained), ("after", model)):
        scores = record[when]
        assert sum(scores["predicted"].values()) == 5
        predicted = fitted.predict(model_input(fitted, X[10:], pre_card))
        recall = [np.mean(predicted[y[10:] == k] == k) for k in (0, 1)]
        assert scores["balanced_accuracy"] == pytest.approx(np.mean(recall))
        assert scores["balanced_accuracy_chance"] == 0.5 and scores["roc_auc_chance"] == 0.5
    # Labelled: the reference is the calibration part's (the first 10 trials), not the held-out ones'.
    np.testing.assert_allclose(model.target_reference_, _reference_of(pretrained, pre_card, X[:10]))
    assert not np.allclose(model.target_reference_, _reference_of(pretrained, pre_card, X))
    # Printed: the split and before/after with chance; the figure beside the file is a PNG.
    assert "the first 10 trials calibrate" in printed and "the last 5 are held out" in printed
    assert "balanced accuracy" in printed and "ROC-AUC" in printed and "chance 0.5" in printed
    assert f"before {record['before']['balanced_accuracy']:.3f}  after {record['after']['balanced_accuracy']:.3f}" \
        in printed
    assert figure_path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unlabelled_calibration_takes_every_trial_for_the_reference_and_still_scores_the_held_out_part(rct_model, run4):
    model, card = calibrate_model(rct_model, [run4], None, unlabelled=True, holdout=0.4, events=EVENTS)
    record = card.extra["calibration"]
    assert record["mode"] == "unlabelled" and record["n_reference"] == 15
    assert (record["split"]["n_calibration"], record["split"]["n_holdout"]) == (9, 6)
    assert sum(record["after"]["predicted"].values()) == 6 == sum(record["before"]["predicted"].values())
    pretrained, pre_card = load_model(rct_model)
    X, _, _, _ = cue_trials(run4, pre_card, events=EVENTS)
    np.testing.assert_allclose(model.target_reference_, _reference_of(pretrained, pre_card, X))


def test_a_model_that_is_not_a_transfer_model_is_refused_in_one_line(plain_model, run4, tmp_path, capsys):
    out = tmp_path / "new.ndm"
    assert main(["calibrate", str(plain_model), str(run4), "--out", str(out), "--events", EVENTS_ARG]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "needs a model trained with a transfer pipeline" in err
    assert not out.exists() and not figure_path(out).exists()


def test_output_faults_are_one_line_before_any_recording_is_read(rct_model, run4, tmp_path, capsys):
    missing_recording = str(tmp_path / "absent.edf")  # would fail if it were read before the output check
    for out, says in [(tmp_path / "no-such-folder" / "new.ndm", "does not exist"),
                      (tmp_path, "it is a folder"),
                      (rct_model, "it is the model being calibrated")]:
        assert main(["calibrate", str(rct_model), missing_recording, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
    # A recording without the model's class names, and no --events: one line naming its annotations.
    assert main(["calibrate", str(rct_model), str(run4), "--out", str(tmp_path / "n.ndm")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--events" in err and "T1" in err
    assert main(["calibrate", str(rct_model), str(run4), "--out", str(tmp_path / "n.ndm"), "--holdout", "1"]) == 2


def test_batch_recentres_a_transfer_model_on_each_recording_and_leaves_other_models_alone(
        rct_model, plain_model, run4, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / run4.name).symlink_to(run4)
    told = io.StringIO()
    run_batch(inputs, rct_model, tmp_path / "out", progress=False, step_s=1.5, events=EVENTS, ids="name",
              stream=told)
    assert "recentred without labels" in told.getvalue()
    rec_id = next((tmp_path / "out" / "results").glob("*.json")).stem
    result = json.loads((tmp_path / "out" / "results" / f"{rec_id}.json").read_text())
    # 123 s at 160 Hz: 40 non-overlapping windows of 481 samples.
    assert result["recentred"] is True and result["recentring"]["n_windows"] == 40
    model, card = load_model(rct_model)
    table = pd.read_csv(tmp_path / "out" / "results" / f"{rec_id}.csv")
    expected = predict_recording(model, card, run4, step_s=1.5, recentre=True)
    assert expected.attrs["recentred"] == 40
    assert list(table["predicted"]) == list(expected["predicted"])
    np.testing.assert_allclose(table["proba_left_hand"], expected["proba_left_hand"], atol=1e-9)
    index = write_report(tmp_path / "out")
    assert "recentred" in index.read_text()
    assert "recentred without labels" in (index.parent / f"{rec_id}.html").read_text()
    # A non-transfer model: no recentring, the same predictions as before this change.
    run_batch(inputs, plain_model, tmp_path / "plain", progress=False, step_s=1.5, events=EVENTS, ids="name",
              stream=io.StringIO())
    result = json.loads((tmp_path / "plain" / "results" / f"{rec_id}.json").read_text())
    assert "recentred" not in result
    plain, plain_card = load_model(plain_model)
    table = pd.read_csv(tmp_path / "plain" / "results" / f"{rec_id}.csv")
    unchanged = predict_recording(plain, plain_card, run4, step_s=1.5)
    assert unchanged.attrs["recentred"] is None
    assert list(table["predicted"]) == list(unchanged["predicted"])
    assert "recentred" not in write_report(tmp_path / "plain").read_text()


def test_predict_recentres_a_transfer_model_as_batch_does(rct_model, run4, tmp_path, capsys):
    assert main(["predict", str(rct_model), str(run4), "--out", str(tmp_path / "p")]) == 0
    assert "recentred without labels on 40 windows" in capsys.readouterr().out
    model, card = load_model(rct_model)
    expected = predict_recording(model, card, run4, recentre=True)
    plain = predict_recording(model, card, run4)
    written = pd.read_csv(tmp_path / "p" / f"{run4.stem}.csv")
    np.testing.assert_allclose(written[[c for c in written if c.startswith("proba_")]].to_numpy(),
                               expected[[c for c in expected if c.startswith("proba_")]].to_numpy(), atol=1e-5)
    assert expected.attrs["recentred"] == 40 and plain.attrs["recentred"] is None
