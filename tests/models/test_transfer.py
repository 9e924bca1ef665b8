"""TransferClassifier on real eegmmidb trials: per-subject alignment, calibration with and without labels,
fine-tuning through the Trainer, MOABB's metadata routing, and model files (classical and deep)."""

import copy
import dataclasses
import warnings
from collections import OrderedDict

import numpy as np
import pytest
from sklearn import config_context
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.metadata_routing import get_routing_for_object

from neurodecode.geometry import covariances, mean_riemann
from neurodecode.geometry.alignment import align_signals, recenter, signal_reference, whitener
from neurodecode.models import DeepClassifier, TransferClassifier
from neurodecode.transforms import Covariances, TangentSpace

MOTOR = ("C3", "C4", "Cz", "FC3", "FC4", "CP3", "CP4", "C1", "C2", "FCz", "CPz", "C5", "C6", "FC1", "FC2", "CP1")
ROUTED = {"groups", "subjects", "X_target_unlabeled", "X_target_labeled", "y_target_labeled"}


@pytest.fixture(scope="module")
def data(dataset_dir):
    """eegmmidb subjects 1-3, left/right imagery, 16 motor channels, first 2 s (321 samples at 160 Hz)."""
    from neurodecode.data import DecodingData, load_eegmmidb

    dataset_dir("eegmmidb")
    full = load_eegmmidb([1, 2, 3], progress=False)
    picks = [full.info.ch_names.index(c) for c in MOTOR]
    info = dataclasses.replace(full.info, ch_names=MOTOR, ch_types=("eeg",) * len(MOTOR))
    return DecodingData(full.X[:, picks, :321].copy(), full.y, full.metadata, info)


def _split(data):
    return data.select(subject=[1, 2]), data.select(subject=3)


def _cov_ts_lr():
    return make_pipeline(Covariances("oas"), TangentSpace(), LogisticRegression(max_iter=1000))


def test_recentring_transfer_equals_pyriemann_tlcenter(data):
    # Without calibration the held-out subject is recentred by its own trials: pyRiemann's TLCenter with
    # the target domain's (unlabelled) trials, then TangentSpace and the same logistic regression.
    from pyriemann.tangentspace import TangentSpace as PyTangentSpace
    from pyriemann.transfer import TLCenter, encode_domains

    source, target = _split(data)
    ours = TransferClassifier(_cov_ts_lr(), alignment="riemannian", calibration=None).fit(source, source.y)
    C = covariances(data.X, "oas")
    subjects = data.metadata["subject"].to_numpy()
    _, y_encoded = encode_domains(C, data.y, subjects)
    R = TLCenter(target_domain="3").fit_transform(C, y_encoded)
    theirs = make_pipeline(PyTangentSpace(metric="riemann"), LogisticRegression(max_iter=1000))
    theirs.fit(R[subjects != 3], data.y[subjects != 3])
    np.testing.assert_allclose(ours.predict_proba(target.X), theirs.predict_proba(R[subjects == 3]), atol=1e-6)
    assert ours.calibration_ is None and set(ours.alignment_.references_) == {1, 2}


def test_euclidean_sources_aligned_by_their_own_reference_and_new_people_by_theirs(data):
    source, target = _split(data)
    model = TransferClassifier(_cov_ts_lr(), alignment="euclidean", calibration=None, min_trials=10)
    model.fit(source, source.y)
    s = source.metadata["subject"].to_numpy()
    for subject in (1, 2):
        np.testing.assert_allclose(model.alignment_.references_[subject], signal_reference(source.X[s == subject]))
    # A source subject's trials keep their subject's reference (groups from the DecodingData's metadata).
    by_hand = np.concatenate([align_signals(source.X[s == k], whitener(model.alignment_.references_[k]))
                              for k in (1, 2)])
    np.testing.assert_allclose(model.predict_proba(source), model.estimator_.predict_proba(by_hand), atol=1e-10)
    # A new person, handed over together (45 trials), is whitened by their own mean covariance ...
    own = align_signals(target.X, whitener(signal_reference(target.X)))
    np.testing.assert_allclose(model.predict_proba(target.X), model.estimator_.predict_proba(own), atol=1e-10)
    # ... and fewer than min_trials by the sources' mean reference, not by a reference of 3 trials.
    few = target.X[:3]
    mean_source = (model.alignment_.references_[1] + model.alignment_.references_[2]) / 2
    np.testing.assert_allclose(model.source_reference_, mean_source)
    np.testing.assert_allclose(model.predict_proba(few),
                               model.estimator_.predict_proba(align_signals(few, whitener(mean_source))), atol=1e-10)


def test_unlabelled_calibration_recentres_the_new_person_by_the_calibration_trials(data):
    source, target = _split(data)
    calibration, test = target.X[:20], target.X[20:]
    routed = TransferClassifier(_cov_ts_lr(), alignment="riemannian", calibration="finetune").fit(
        source, source.y, X_target_unlabeled=calibration)
    assert routed.calibration_ == "recentred" and routed.n_calibration_ == 20
    np.testing.assert_allclose(routed.target_reference_, mean_riemann(covariances(calibration, "oas")), rtol=1e-7)
    tail = routed.estimator_[1:]
    expected = tail.predict_proba(recenter(covariances(test, "oas"), routed.target_reference_))
    proba = routed.predict_proba(test)
    np.testing.assert_allclose(proba, expected, atol=1e-10)
    # The calibrated reference, not the test trials' own, aligns them.
    own = tail.predict_proba(recenter(covariances(test, "oas"), mean_riemann(covariances(test, "oas"))))
    assert np.abs(proba - own).max() > 1e-3
    # calibrate() on the uncalibrated model gives the same model as the routed fit.
    later = TransferClassifier(_cov_ts_lr(), alignment="riemannian", calibration="finetune").fit(source, source.y)
    assert later.calibrate(calibration) is later and later.calibration_ == "recentred"
    np.testing.assert_allclose(later.predict_proba(test), proba, atol=1e-10)


def test_labelled_calibration_refits_a_classical_last_step_on_pooled_features(data):
    source, target = _split(data)
    Xc, yc = target.X[:20], target.y[:20]
    refit = TransferClassifier(_cov_ts_lr(), alignment="riemannian", calibration="finetune").fit(
        source, source.y, X_target_labeled=Xc, y_target_labeled=yc)
    recentred = TransferClassifier(_cov_ts_lr(), alignment="riemannian", calibration="recenter").fit(
        source, source.y, X_target_labeled=Xc, y_target_labeled=yc)
    assert (refit.calibration_, recentred.calibration_) == ("refitted", "recentred")
    np.testing.assert_allclose(refit.target_reference_, recentred.target_reference_)
    # The refit is logistic regression on the source and calibration tangent vectors together.
    head, ts = refit.estimator_[0], refit.estimator_[1]
    s = source.metadata["subject"].to_numpy()
    source_cov = np.concatenate([recenter(head.transform(source.X[s == k]), refit.alignment_.references_[k])
                                 for k in (1, 2)])
    pooled = np.concatenate([ts.transform(source_cov), ts.transform(recenter(head.transform(Xc),
                                                                            refit.target_reference_))])
    by_hand = LogisticRegression(max_iter=1000).fit(pooled, np.concatenate([source.y, yc]))
    np.testing.assert_allclose(refit.estimator_[-1].coef_, by_hand.coef_, rtol=1e-6)
    assert not np.allclose(refit.estimator_[-1].coef_, recentred.estimator_[-1].coef_)
    with pytest.raises(ValueError, match="X_target_labeled and y_target_labeled go together"):
        TransferClassifier(_cov_ts_lr()).fit(source, source.y, X_target_labeled=Xc)
    with pytest.raises(ValueError, match=r"calibration labels \[7\] are not among the fitted classes"):
        refit.calibrate(Xc, np.full(20, 7))
    with pytest.raises(ValueError, match="needs a Pipeline of a covariance step and a classifier"):
        TransferClassifier(make_pipeline(LogisticRegression()), alignment="riemannian").fit(source, source.y)


def _fbcnet(**more):
    return DeepClassifier("FBCNet", max_epochs=1, batch_size=32, val_fraction=0.0, patience=None, device="cpu",
                          random_state=0, **more)


def test_labelled_calibration_fine_tunes_the_pretrained_network_through_the_trainer(data):
    import torch

    source, target = _split(data)
    Xc, yc = target.X[:20], target.y[:20]
    pretrained = TransferClassifier(_fbcnet(), alignment="euclidean", calibration="finetune", finetune_epochs=2)
    pretrained.fit(source, source.y)
    tuned = TransferClassifier(_fbcnet(), alignment="euclidean", calibration="finetune", finetune_epochs=2)
    tuned.fit(source, source.y, X_target_labeled=Xc, y_target_labeled=yc)
    assert (pretrained.calibration_, tuned.calibration_) == (None, "finetuned")
    assert len(tuned.estimator_.history_) == 2  # the fine-tuning's epochs, on the calibration trials
    before, after = pretrained.estimator_.module_.state_dict(), tuned.estimator_.module_.state_dict()
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert changed  # the same pretraining (same seed), then the weights moved on the calibration trials
    np.testing.assert_allclose(tuned.target_reference_, signal_reference(Xc))
    # The lower learning rate (a tenth of the network's) moves the weights less than the full one would.
    full = copy.deepcopy(pretrained).set_params(finetune_lr_scale=1.0).calibrate(Xc, yc)
    full_after = full.estimator_.module_.state_dict()

    def moved(state):
        return sum(float((state[k] - before[k]).norm()) for k in changed)

    assert 0 < moved(after) < moved(full_after)
    # calibrate() on the pretrained model does the same fine-tuning.
    pretrained.calibrate(Xc, yc)
    np.testing.assert_allclose(pretrained.predict_proba(target.X[20:]), tuned.predict_proba(target.X[20:]),
                               rtol=1e-5, atol=1e-6)


def test_moabb_routes_subjects_and_each_calibration_slice(tmp_path):
    # MOABB 1.7.2's CrossSubjectEvaluation routes the training subjects and the held-out subject's
    # calibration slice to the steps that request them; TransferClassifier requests them by default.
    from moabb.datasets.fake import FakeDataset
    from moabb.evaluations import CrossSubjectEvaluation
    from moabb.paradigms import LeftRightImagery

    with config_context(enable_metadata_routing=True):
        pipe = make_pipeline(TransferClassifier(alignment="riemannian"))
        assert get_routing_for_object(pipe).consumes("fit", ROUTED) == ROUTED
        pipe[-1].set_fit_request(X_target_unlabeled=False)
        assert "X_target_unlabeled" not in get_routing_for_object(pipe).consumes("fit", ROUTED)
    seen = []

    class Recorder(TransferClassifier):
        def fit(self, X, y, groups=None, subjects=None, X_target_unlabeled=None, X_target_labeled=None,
                y_target_labeled=None):
            super().fit(X, y, groups=groups, subjects=subjects, X_target_unlabeled=X_target_unlabeled,
                        X_target_labeled=X_target_labeled, y_target_labeled=y_target_labeled)
            seen.append((self.calibration_, self.n_calibration_, len(self.groups_)))
            return self

    dataset = FakeDataset(["left_hand", "right_hand"], n_subjects=3, n_sessions=1, n_runs=1, seed=9, n_events=20)
    expected = {"train": (None, 0), "train_and_target_unlabeled_20p": ("recentred", 4),
                "train_and_target_labeled_20p": ("refitted", 4)}
    for mode, (calibration, n) in expected.items():
        seen.clear()
        evaluation = CrossSubjectEvaluation(paradigm=LeftRightImagery(), datasets=[dataset], cs_mode=mode,
                                            overwrite=True, n_jobs=1, hdf5_path=str(tmp_path), suffix=mode)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = evaluation.process(OrderedDict([("T", make_pipeline(Recorder(alignment="riemannian")))]))
        assert len(results) == 3
        assert seen == [(calibration, n, 2)] * 3, mode


def _card(data, name):
    from neurodecode.contract import ModelCard

    return ModelCard(name=name, created="2026-01-01T00:00:00+00:00", neurodecode_version="0", versions={},
                     dataset="eegmmidb", subjects=[1, 2], paradigm={}, sfreq=160.0, ch_names=list(MOTOR),
                     window=[0.0, 2.0], class_names=["left_hand", "right_hand"], scores={}, pipeline_name=name,
                     pipeline_hash="h")


@pytest.mark.parametrize("kind", ["classical", "deep"])
def test_fitted_and_calibrated_model_survives_a_model_file(kind, data, tmp_path):
    from neurodecode.contract import load_model, save_model

    source, target = _split(data)
    if kind == "classical":
        model = TransferClassifier(_cov_ts_lr(), alignment="riemannian").fit(source, source.y)
    else:
        model = TransferClassifier(make_pipeline(_fbcnet()), alignment="euclidean", finetune_epochs=1)
        model.fit(source, source.y)
    test = target.X[20:]
    uncalibrated = model.predict_proba(test)
    path = save_model(model, _card(data, kind), tmp_path / f"{kind}.ndm")
    loaded, _ = load_model(path)
    np.testing.assert_allclose(loaded.predict_proba(test), uncalibrated, rtol=1e-6, atol=1e-7)
    # A calibrated model (the new person's reference, and a fine-tuned network) round-trips too.
    model.calibrate(target.X[:20], target.y[:20])
    loaded_then_calibrated, _ = load_model(path)
    loaded_then_calibrated.calibrate(target.X[:20], target.y[:20])
    save_model(model, _card(data, kind), tmp_path / "calibrated.ndm")
    calibrated, _ = load_model(tmp_path / "calibrated.ndm")
    assert calibrated.calibration_ == ("recentred" if kind == "classical" else "finetuned")
    np.testing.assert_allclose(calibrated.target_reference_, model.target_reference_)
    np.testing.assert_allclose(calibrated.predict_proba(test), model.predict_proba(test), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(loaded_then_calibrated.predict_proba(test), model.predict_proba(test), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(calibrated.predict(test), model.predict(test))
