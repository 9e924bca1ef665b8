"""Cross-subject, transfer and learning-curve evaluations on real eegmmidb data (3 subjects), with a stand-in
transfer estimator that follows TransferClassifier's interface (fit with routed calibration keys, calibrate)."""

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from neurodecode import cli
from neurodecode.benchmark.runner import BenchmarkConfig, run_benchmark
from neurodecode.evaluation import calibration_learning_curve, transfer_evaluate
from neurodecode.reports.benchmark_report import write_report

SUBJECTS = [1, 2, 3]

#: The stand-in, as a module the pipeline files import (so the test reads what the estimator was given).
STAND_IN = textwrap.dedent('''
import hashlib
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

CALLS = []


def trial_ids(X):
    return [hashlib.sha1(np.ascontiguousarray(t).tobytes()).hexdigest() for t in np.asarray(X)]


def _reference(X):
    X = np.asarray(X, dtype=float)
    cov = np.einsum("nct,ndt->cd", X, X) / (X.shape[0] * X.shape[2])
    w, v = np.linalg.eigh(cov)
    return (v / np.sqrt(np.maximum(w, 1e-12 * w.max()))) @ v.T


def _align(X, ref):
    return np.einsum("cd,ndt->nct", ref, np.asarray(X, dtype=float))


class StandInTransfer(ClassifierMixin, BaseEstimator):
    """The TransferClassifier interface: Euclidean alignment per subject, fine-tuning by refitting."""

    __metadata_request__fit = {"groups": True, "X_target_unlabeled": True, "X_target_labeled": True,
                               "y_target_labeled": True}

    def __init__(self, estimator, *, alignment="euclidean", by="subject", calibration="finetune"):
        self.estimator, self.alignment, self.by, self.calibration = estimator, alignment, by, calibration

    def _aligned(self, X, groups):
        if self.alignment is None:
            return np.asarray(X, dtype=float)
        groups = np.zeros(len(X)) if groups is None else np.asarray(groups)
        out = np.empty(np.shape(X))
        for g in np.unique(groups):
            out[groups == g] = _align(X[groups == g], _reference(X[groups == g]))
        return out

    def fit(self, X, y, groups=None, X_target_unlabeled=None, X_target_labeled=None, y_target_labeled=None):
        CALLS.append({"method": "fit", "ids": trial_ids(X), "groups": groups is not None,
                      "unlabeled": None if X_target_unlabeled is None else trial_ids(X_target_unlabeled),
                      "labeled": None if X_target_labeled is None else trial_ids(X_target_labeled)})
        self.source_X_, self.source_y_ = self._aligned(X, groups), np.asarray(y)
        self.target_ref_ = None
        Xt, yt = self.source_X_, self.source_y_
        target = X_target_labeled if X_target_labeled is not None else X_target_unlabeled
        if target is not None and self.alignment is not None:
            self.target_ref_ = _reference(target)
        if X_target_labeled is not None:
            Xt = np.concatenate([Xt, self._to_target(X_target_labeled)])
            yt = np.concatenate([yt, y_target_labeled])
        self.estimator_ = clone(self.estimator).fit(Xt, yt)
        self.classes_ = self.estimator_.classes_
        return self

    def calibrate(self, X, y=None):
        CALLS.append({"method": "calibrate", "ids": trial_ids(X), "labelled": y is not None})
        if self.alignment is not None and self.calibration is not None:
            self.target_ref_ = _reference(X)
        if y is not None and self.calibration == "finetune":
            self.estimator_ = clone(self.estimator).fit(np.concatenate([self.source_X_, self._to_target(X)]),
                                                        np.concatenate([self.source_y_, y]))
        return self

    def _to_target(self, X):
        if self.alignment is None:
            return np.asarray(X, dtype=float)
        ref = self.target_ref_ if self.target_ref_ is not None else _reference(X)
        return _align(X, ref)

    def predict(self, X):
        return self.estimator_.predict(self._to_target(X))

    def predict_proba(self, X):
        return self.estimator_.predict_proba(self._to_target(X))


class RoutedOnly(StandInTransfer):
    """No calibrate method: calibration reaches it only through fit's routed keys."""

    calibrate = None


def log_variance(X):
    return np.log(np.var(X, axis=2))
''')

PIPELINE_FILE = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from neurodecode.transforms.covariance import Covariances, TangentSpace
from standin_cs import StandInTransfer, log_variance

INNER = {inner}
PIPELINE = {{"name": "{name}", "paradigms": ["LeftRightImagery"],
             "pipeline": StandInTransfer(INNER, calibration="finetune")}}
"""
COV_TS_LR = "make_pipeline(Covariances(estimator='oas'), TangentSpace(), LogisticRegression(max_iter=1000))"
LOG_VAR_LR = "make_pipeline(FunctionTransformer(log_variance), LogisticRegression(max_iter=1000))"
PLAIN_FILE = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from standin_cs import log_variance

PIPELINE = {"name": "Plain", "paradigms": ["LeftRightImagery"],
            "pipeline": make_pipeline(FunctionTransformer(log_variance), LogisticRegression(max_iter=1000))}
"""


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """The stand-in module, importable as ``standin_cs``; its CALLS list records every fit and calibrate."""
    folder = tmp_path_factory.mktemp("standin")
    (folder / "standin_cs.py").write_text(STAND_IN)
    sys.path.insert(0, str(folder))
    import standin_cs

    yield standin_cs
    sys.path.remove(str(folder))


def _folder(tmp_path, inner, name="StandIn", plain=False):
    folder = tmp_path / "pipelines"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(PIPELINE_FILE.format(inner=inner, name=name))
    if plain:
        (folder / "Plain.py").write_text(PLAIN_FILE)
    return folder


@pytest.fixture(scope="module")
def three_subjects(data_root):
    from neurodecode.data.datasets.eegmmidb import load_eegmmidb

    return load_eegmmidb(SUBJECTS, progress=False)


def test_calibration_modes_are_moabbs():
    from moabb.evaluations import CrossSubjectMode

    from neurodecode.benchmark.moabb_glue import CALIBRATION_MODES

    assert CALIBRATION_MODES == tuple(m.value for m in CrossSubjectMode)


@pytest.mark.parametrize("argv, message", [
    (["--evaluation", "cross-subject", "--calibration", "TRAIN_AND_TARGET_LABELED_90P"], "unknown calibration mode"),
    (["--calibration", "TRAIN"], "applies to --evaluation cross-subject only"),
    (["--evaluation", "transfer", "--calibration", "train_and_target_labeled_20p"], "cross-subject only"),
])
def test_calibration_mistakes_are_one_line_exit_2(tmp_path, capsys, argv, message):
    status = cli.main(["benchmark", str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_cross_subject_calibration_is_routed_and_modes_never_mix(stand_in, tmp_path, data_root):
    folder = _folder(tmp_path, COV_TS_LR)
    out = tmp_path / "out"

    def run(mode):
        return run_benchmark(BenchmarkConfig(pipelines_dir=str(folder), subjects=SUBJECTS, out=str(out),
                                             evaluation="cross-subject", calibration=mode), progress=False)

    stand_in.CALLS.clear()
    labelled = run("TRAIN_AND_TARGET_LABELED_20P")
    assert len(labelled) == 3 and set(labelled["calibration"]) == {"train_and_target_labeled_20p"}
    fits = [c for c in stand_in.CALLS if c["method"] == "fit"]
    assert len(fits) == 3
    for call in fits:
        # MOABB's slice: the first 20 % of the held-out subject's 45 trials, labelled, never among the sources.
        assert call["labeled"] is not None and len(call["labeled"]) == 9 and call["unlabeled"] is None
        assert not set(call["labeled"]) & set(call["ids"])
    assert (labelled["n_test"] == 36).all()

    stand_in.CALLS.clear()
    plain = run("TRAIN")
    # Rows of the labelled mode are in the same file, but are never served for TRAIN: all 3 folds recomputed.
    assert plain.attrs["written"] == 3 and plain.attrs["skipped"] == 0
    assert set(plain["calibration"]) == {"train"} and (plain["n_test"] == 45).all()
    assert all(c["labeled"] is None and c["unlabeled"] is None for c in stand_in.CALLS)
    assert not np.allclose(plain.sort_values("subject")["score"], labelled.sort_values("subject")["score"])
    again = run("train_and_target_labeled_20p")
    assert again.attrs["written"] == 0 and again.attrs["skipped"] == 3
    pd.testing.assert_series_equal(again.sort_values("subject")["score"].reset_index(drop=True),
                                   labelled.sort_values("subject")["score"].reset_index(drop=True))
    stored = pd.read_json(out / "results.jsonl", lines=True)
    assert sorted(stored["calibration"]) == ["train"] * 3 + ["train_and_target_labeled_20p"] * 3
    # The report keeps the two modes apart: one evaluation label per mode.
    report = write_report(out, tmp_path / "report")
    datasets = pd.read_csv(report.parent / "datasets.csv")
    assert set(datasets["evaluation"]) == {"cross-subject [calibration: train]",
                                           "cross-subject [calibration: train_and_target_labeled_20p]"}


def test_transfer_protocol_never_trains_on_the_test_trials(stand_in, three_subjects):
    data = three_subjects
    subjects = data.groups("subject")
    target = SUBJECTS[0]
    own = np.flatnonzero(subjects == target)
    folds = [(own[a], own[b]) for a, b in StratifiedKFold(5, shuffle=True, random_state=42).split(own, data.y[own])]
    ids = stand_in.trial_ids(data.X)
    stand_in.CALLS.clear()
    estimator = stand_in.StandInTransfer(make_pipeline(FunctionTransformer(stand_in.log_variance),
                                                       LogisticRegression(max_iter=1000)))
    rows = transfer_evaluate(estimator, data, target, folds)
    assert [r["route"] for r in rows] == ["calibrate"] * 5 and all(0.0 <= r["score"] <= 1.0 for r in rows)
    fits = [c for c in stand_in.CALLS if c["method"] == "fit"]
    calibrations = [c for c in stand_in.CALLS if c["method"] == "calibrate"]
    # Pretrained once, on the other subjects' trials only, with their subjects routed as groups.
    assert len(fits) == 1 and fits[0]["groups"]
    assert set(fits[0]["ids"]) == {ids[i] for i in np.flatnonzero(subjects != target)}
    assert len(calibrations) == len(folds)
    for call, (train, test) in zip(calibrations, folds):
        assert call["labelled"] and set(call["ids"]) == {ids[i] for i in train}
        assert not set(call["ids"]) & {ids[i] for i in test}
    with pytest.raises(ValueError, match="other than"):
        transfer_evaluate(estimator, data, target, [(np.flatnonzero(subjects != target)[:5], own[:5])])


def test_learning_curve_zero_point_uses_no_target_label(stand_in, three_subjects):
    data = three_subjects
    subjects = data.groups("subject")
    target = SUBJECTS[1]
    ids = stand_in.trial_ids(data.X)
    stand_in.CALLS.clear()
    estimator = stand_in.StandInTransfer(make_pipeline(FunctionTransformer(stand_in.log_variance),
                                                       LogisticRegression(max_iter=1000)))
    rows = calibration_learning_curve(estimator, data, target, n_repeats=1)
    points = [r["trials_per_class"] for r in rows]
    # 45 trials: 25 % of each class tested leaves 16-17 per class, so 36 per class is left out and said so.
    assert points == [0, 4, 8, 16] and rows[0]["points_left_out"] == [36]
    fits = [c for c in stand_in.CALLS if c["method"] == "fit"]
    calls = [c for c in stand_in.CALLS if c["method"] == "calibrate"]
    assert len(fits) == 1 and not {ids[i] for i in np.flatnonzero(subjects == target)} & set(fits[0]["ids"])
    assert [c["labelled"] for c in calls] == [False, True, True, True]
    test = {ids[i] for i in rows[0]["test_idx"]}
    for row, call in zip(rows, calls):
        assert set(call["ids"]) == {ids[i] for i in row["calibration_idx"]} and not set(call["ids"]) & test
        assert {ids[i] for i in row["test_idx"]} == test  # one test part for every point
    assert rows[1]["n_calibration"] == 8 and rows[3]["n_calibration"] == 32
    assert set(rows[1]["calibration_idx"]) <= set(rows[2]["calibration_idx"])  # nested points
    # Without a calibrate method, the 0 point refits with the pool routed as X_target_unlabeled: still no label.
    stand_in.CALLS.clear()
    routed = stand_in.RoutedOnly(estimator.estimator)
    zero = calibration_learning_curve(routed, data, target, trials_per_class=(0, 4), n_repeats=1)
    assert [r["route"] for r in zero] == ["fit-routed", "fit-routed"]
    pretrain, refit_zero, refit_four = stand_in.CALLS
    assert pretrain["unlabeled"] is None and pretrain["labeled"] is None
    assert refit_zero["labeled"] is None
    assert set(refit_zero["unlabeled"]) == {ids[i] for i in zero[0]["calibration_idx"]}
    assert refit_four["unlabeled"] is None and len(refit_four["labeled"]) == 8


def test_benchmark_transfer_and_learning_curve_rows_and_report(stand_in, tmp_path, data_root):
    folder = _folder(tmp_path, LOG_VAR_LR, plain=True)
    out = tmp_path / "out"
    config = BenchmarkConfig(pipelines_dir=str(folder), subjects=SUBJECTS, out=str(out), evaluation="transfer")
    transfer = run_benchmark(config, progress=False)
    assert len(transfer) == 2 * 3 * 5 and set(transfer["evaluation"]) == {"transfer"}
    # The held-out subject's within-session folds: every trial of it tested once (45 per subject).
    assert (transfer.groupby(["pipeline", "subject"])["n_test"].sum() == 45).all()
    routes = transfer.groupby("pipeline")["route"].unique()
    assert list(routes["StandIn"]) == ["calibrate"] and list(routes["Plain"]) == ["none"]
    again = run_benchmark(config, progress=False)
    assert again.attrs["written"] == 0 and again.attrs["skipped"] == 30

    curve = run_benchmark(BenchmarkConfig(pipelines_dir=str(folder), subjects=SUBJECTS, out=str(out),
                                          pipelines=["StandIn"], evaluation="learning-curve"), progress=False)
    assert set(curve["trials_per_class"]) == {0, 4, 8, 16}
    assert set(curve["calibration"]) == {"0 per class", "4 per class", "8 per class", "16 per class"}
    assert len(curve) == 3 * 4 * 3  # subjects x points x repeats
    report = write_report(pd.concat([transfer, curve]), tmp_path / "report")
    page = report.read_text()
    assert (report.parent / "learning_curve.png").stat().st_size > 0
    assert "Calibration learning curve" in page and "The dashed line is chance" in page and "36" in page
    table = pd.read_csv(report.parent / "learning_curve.csv")
    assert list(table["trials_per_class"]) == [0, 4, 8, 16] and (table["subjects"] == 3).all()
