"""DeepClassifier: a scikit-learn citizen, built from the data's signal contract, trained by the Trainer,
learning a separable synthetic problem, running on real eegmmidb trials; deep_pipeline and the
pipeline files. On the CPU, with budgets of a few epochs."""

import pickle
import runpy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone

from neurodecode.models import DeepClassifier, deep_pipeline, default_max_epochs
from neurodecode.models.deep import _BatchAugment, _make_augment

REPO = Path(__file__).resolve().parents[2]


def _rhythm(n, seed, amplitude=1.0):
    """Two classes of 8-channel, 1 s trials at 128 Hz: a 10 Hz rhythm (random phase) on channels 0-1
    for "left", on channels 4-5 for "right", in unit white noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.arange(128) / 128.0
    X = rng.standard_normal((n, 8, 128))
    wave = amplitude * np.sin(2 * np.pi * 10 * t[None] + rng.uniform(0, 2 * np.pi, n)[:, None])
    X[y == 0, 0:2] += wave[y == 0, None]
    X[y == 1, 4:6] += wave[y == 1, None]
    return X, np.where(y == 0, "left", "right")


def _small(**params):
    return DeepClassifier("ShallowFBCSPNet", **{"max_epochs": 2, "batch_size": 16, "device": "cpu", **params})


def test_parameters_are_stored_as_given_clone_and_set_params():
    clf = DeepClassifier("EEGNet", {"F1": 4}, sfreq=160.0, max_epochs=3, lr=-1.0, augment=["ftsurrogate"])
    params = clf.get_params()
    assert params["model"] == "EEGNet" and params["model_params"] == {"F1": 4} and params["lr"] == -1.0
    twin = clone(clf)
    assert twin.get_params() == params and twin.model_params is not clf.model_params
    assert DeepClassifier().set_params(**params).get_params() == params
    X, y = _rhythm(20, 0)
    with pytest.raises(ValueError, match="lr"):  # __init__ stores, fit validates
        clf.fit(X, y)


# scikit-learn's own checks that need no data. The others of `check_estimator` feed 2-D tables
# (n_samples, n_features), which are not trials of (channels, times): their intents (fit leaves the
# parameters alone, NaN and wrong shapes refused, pickling, clone-and-refit equality) are checked on
# 3-D trials in tests/test_estimator_checks.py, where DeepClassifier is listed.
SKLEARN_CHECKS = ["check_no_attributes_set_in_init", "check_parameters_default_constructible",
                  "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
                  "check_estimator_repr", "check_mixin_order", "check_do_not_raise_errors_in_init_or_set_params",
                  "check_estimator_tags_renamed"]


@pytest.mark.parametrize("check", SKLEARN_CHECKS)
def test_sklearn_checks_without_data(check):
    from sklearn.utils import estimator_checks

    getattr(estimator_checks, check)("DeepClassifier", DeepClassifier())


def test_fit_predict_shapes_classes_and_learned_attributes():
    X, y = _rhythm(40, 0)
    clf = _small(max_epochs=3).fit(X, y)
    assert list(clf.classes_) == ["left", "right"]
    assert clf.predict(X).shape == (40,) and set(clf.predict(X)) <= {"left", "right"}
    proba = clf.predict_proba(X)
    assert proba.shape == (40, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    assert (clf.n_chans_, clf.n_times_, clf.sfreq_, clf.device_, clf.max_epochs_) == (8, 128, None, "cpu", 3)
    assert clf.scale_ == pytest.approx(X.std())
    assert len(clf.history_) == 3 and 1 <= clf.best_epoch_ <= 3
    assert next(clf.module_.parameters()).device.type == "cpu" and not clf.module_.training
    # The same seed gives the same network; pickling keeps it; the caller's generator is untouched.
    state, numpy_state = torch.get_rng_state(), np.random.get_state()
    again = _small(max_epochs=3).fit(X, y)
    assert torch.equal(torch.get_rng_state(), state) and np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    np.testing.assert_array_equal(again.predict_proba(X), proba)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), proba)
    other_seed = _small(max_epochs=3, random_state=1).fit(X, y)
    assert not np.array_equal(other_seed.predict_proba(X), proba)


def test_learns_a_separable_problem():
    # Measured (8 seeds, 80 training trials, 8 epochs, lr 3e-3): accuracy 1.00 on 200 new trials for
    # every seed, in about 1.5 s each; with 5 epochs 0.865-1.00. Trained on shuffled labels the same
    # network must stay near chance (0.5), which shows the test trials do not give the answer away.
    X, y = _rhythm(80, 0)
    X_test, y_test = _rhythm(200, 1)
    clf = DeepClassifier("ShallowFBCSPNet", max_epochs=8, lr=3e-3, batch_size=32, device="cpu").fit(X, y)
    assert (clf.predict(X_test) == y_test).mean() >= 0.95
    history = clf.history_
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    shuffled = np.random.default_rng(0).permutation(y)
    control = DeepClassifier("ShallowFBCSPNet", max_epochs=8, lr=3e-3, batch_size=32, device="cpu").fit(X, shuffled)
    assert 0.3 < (control.predict(X_test) == y_test).mean() < 0.7


def test_real_eegmmidb_subject_1_few_epochs_of_eegnet(data_root):
    from neurodecode.data.datasets.eegmmidb import load_eegmmidb

    data = load_eegmmidb([1], progress=False)
    train = np.arange(len(data.y)) % 5 != 0
    # From the container: the network is built for 64 channels x 481 samples at 160 Hz.
    clf = DeepClassifier("EEGNet", max_epochs=3, device="cpu").fit(data[train], data.y[train])
    assert (clf.n_chans_, clf.n_times_, clf.sfreq_) == (64, 481, 160.0)
    assert clf.ch_names_ == tuple(data.info.ch_names) and clf.module_.sfreq == 160.0
    n_test = int((~train).sum())
    assert clf.predict(data[~train]).shape == (n_test,)
    assert clf.predict(data.X[~train]).shape == (n_test,)  # plain arrays too
    proba = clf.predict_proba(data.X[~train])
    assert proba.shape == (n_test, 2) and set(clf.classes_) == set(np.unique(data.y))
    assert len(clf.history_) == 3 and all(np.isfinite(r["train_loss"]) for r in clf.history_)
    assert len(np.unique(proba.round(6), axis=0)) > 1, "constant outputs"


def test_refusals():
    X, y = _rhythm(30, 0)
    with pytest.raises(ValueError, match="(?i)nan"):
        _small().fit(np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y)
    with pytest.raises(ValueError, match="shape"):
        _small().fit(X.reshape(30, -1), y)
    with pytest.raises(ValueError, match="one class"):
        _small().fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="read from the data"):
        _small(model_params={"n_chans": 8}).fit(X, y)
    with pytest.raises(ValueError, match="no network named"):
        DeepClassifier("NotANet", device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="unknown augmentation"):
        _small(augment="rotate").fit(X, y)
    with pytest.raises(ValueError, match="sfreq"):
        _small(sfreq=-3.0).fit(X, y)
    clf = _small().fit(X, y)
    with pytest.raises(ValueError, match="channels"):
        clf.predict(X[:, :7])
    with pytest.raises(ValueError, match="time samples"):
        clf.predict(X[:, :, :100])


def test_network_gets_the_sampling_rate_when_it_takes_one():
    X, y = _rhythm(30, 0)
    clf = DeepClassifier("FBCNet", sfreq=128.0, max_epochs=1, device="cpu").fit(X, y)
    assert clf.module_.sfreq == 128.0 and clf.sfreq_ == 128.0
    # FBCNet holds parametrized (max-norm) layers, which torch refuses to pickle whole: the
    # classifier pickles the weights and builds the network again.
    with pytest.raises(RuntimeError, match="parametrized"):
        pickle.dumps(clf.module_)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), clf.predict_proba(X))
    built = []

    def factory(n_chans, n_outputs, n_times):  # no sfreq argument: none is passed
        built.append((n_chans, n_outputs, n_times))
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n_chans * n_times, n_outputs))

    DeepClassifier(factory, sfreq=128.0, max_epochs=1, device="cpu").fit(X, y)
    assert built == [(8, 2, 128)]


# -- augmentation ------------------------------------------------------------------------------------

SEEN = []


def _count(x, y):
    SEEN.append(len(x))
    return x, y


def test_augmentation_applies_to_training_batches_only():
    X, y = _rhythm(40, 0)
    SEEN.clear()
    # 40 trials, val_fraction 0.2: 32 training trials per epoch, the 8 validation ones never augmented.
    _small(max_epochs=3, augment=_count).fit(X, y)
    assert sum(SEEN) == 3 * 32


def test_braindecode_augmentations_run_and_change_training():
    X, y = _rhythm(40, 0)
    plain = _small().fit(X, y)
    names = ["ftsurrogate", "smooth_time_mask", "channels_dropout", "gaussian_noise", "sign_flip", "frequency_shift"]
    augmented = _small(augment=names, sfreq=128.0).fit(X, y)
    assert np.isfinite(augmented.history_[-1]["train_loss"])
    assert not np.allclose(plain.predict_proba(X), augmented.predict_proba(X))
    # Each name is a braindecode transform; its random generator's state goes into checkpoints.
    hook = _make_augment(names, n_times=128, sfreq=128.0, seed=0)
    assert isinstance(hook, _BatchAugment)
    assert [type(t).__name__ for t in hook.transforms] == ["FTSurrogate", "SmoothTimeMask", "ChannelsDropout",
                                                           "GaussianNoise", "SignFlip", "FrequencyShift"]
    xb, yb = torch.randn(8, 8, 128), torch.arange(8) % 2
    state = hook.state_dict()
    first = hook(xb, yb)[0]
    hook.load_state_dict(state)
    torch.testing.assert_close(hook(xb, yb)[0], first)  # the same draws again
    assert not torch.allclose(first, xb)
    with pytest.raises(ValueError, match="sampling rate"):
        _make_augment("frequency_shift", n_times=128, sfreq=None, seed=0)


def test_a_killed_fit_resumes_from_its_checkpoint(tmp_path):
    X, y = _rhythm(40, 0)
    full = _small(max_epochs=3, checkpoint_dir=str(tmp_path / "a")).fit(X, y)
    # A finished checkpoint is reused: refitting with the same folder returns the stored network.
    again = _small(max_epochs=3, checkpoint_dir=str(tmp_path / "a")).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), full.predict_proba(X))
    assert (tmp_path / "a" / "checkpoint.pt").exists()


# -- epochs, the pipeline helper and the pipeline files -------------------------------------------------

def test_default_epochs(monkeypatch):
    monkeypatch.delenv("NEURODECODE_DEEP_EPOCHS", raising=False)
    assert default_max_epochs("cpu") == 10 and default_max_epochs("cuda") == 300
    monkeypatch.setenv("NEURODECODE_DEEP_EPOCHS", "3")
    assert default_max_epochs("cpu") == 3 == default_max_epochs("cuda")
    # deep_pipeline resolves the budget when built, so that it is part of the pipeline's parameters.
    pipe = deep_pipeline("EEGNet", lr=1e-3)
    assert pipe.steps[-1][1].max_epochs == 3 and pipe.steps[-1][1].device == "auto"
    monkeypatch.setenv("NEURODECODE_DEEP_EPOCHS", "zero")
    with pytest.raises(ValueError, match="NEURODECODE_DEEP_EPOCHS"):
        default_max_epochs("cpu")


@pytest.mark.parametrize("name, model", [("EEGNet", "EEGNet"), ("ShallowFBCSPNet", "ShallowFBCSPNet"),
                                         ("FBCNet", "FBCNet")])
def test_pipeline_files(name, model, monkeypatch):
    monkeypatch.setenv("NEURODECODE_DEEP_EPOCHS", "1")
    spec = runpy.run_path(str(REPO / "pipelines" / f"{name}.py"))["PIPELINE"]
    clf = spec["pipeline"].steps[-1][1]
    assert spec["name"] == name and isinstance(clf, DeepClassifier) and clf.model == model
    assert clf.max_epochs == 1 and clf.sfreq is None  # the benchmark binds the data's rate
    X, y = _rhythm(24, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = clone(spec["pipeline"]).set_params(deepclassifier__sfreq=128.0, deepclassifier__device="cpu").fit(X, y)
    assert fitted.predict(X).shape == (24,)
