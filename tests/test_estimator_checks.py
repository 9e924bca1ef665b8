"""One suite of scikit-learn citizenship checks, run over every estimator neurodecode defines.

Each estimator is listed once in CASES with the kind of input it takes (3-D signals, SPD matrices
or ragged fMRI time series). Every check runs twice: on synthetic inputs, which need no data
folder, and on small real inputs (which fail under ``CI=true`` when the data are missing, as the
``data_root`` fixture does). The estimators taking signals are also checked on a DecodingData. A
discovery test fails when a new estimator is added to the package without being listed here.
"""

import copy
import importlib
import inspect
import pickle
import pkgutil
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import neurodecode
from neurodecode.geometry import covariances

SFREQ = 160.0
MOTOR = ("C3", "C4", "Cz", "FC3", "FC4", "CP3", "CP4", "C1")


@pytest.fixture(scope="module")
def eeg(data_root):
    """Real EEG: 30 left/right trials of subject 1, 8 motor channels, first 1.5 s, 160 Hz."""
    from neurodecode.data import load_eegmmidb

    data = load_eegmmidb([1])
    assert data.info.sfreq == SFREQ
    picks = [data.info.ch_names.index(c) for c in MOTOR]
    return data.X[:30, picks, :240].copy(), data.y[:30].copy()


@pytest.fixture(scope="module")
def fmri(data_root):
    """Real resting-state fMRI: 16 ABIDE subjects without constant ROIs, first 20 ROIs, ragged lengths."""
    from neurodecode.data import load_abide

    data = load_abide()
    keep = np.nonzero(data.metadata["n_constant_rois"].to_numpy() == 0)[0]
    keep = np.concatenate([keep[data.y[keep] == k][:8] for k in (0, 1)])
    X = np.empty(len(keep), dtype=object)
    X[:] = [data.X[i][:20] for i in keep]
    return X, data.y[keep]


def _synthetic_eeg():
    """30 trials shaped like the real ones (8 channels, 240 samples at 160 Hz): spatially mixed noise,
    and in class 1 one more source shared by the first two channels."""
    rng = np.random.default_rng(42)
    y = np.tile([0, 1], 15)
    mixing = np.eye(len(MOTOR)) + 0.3 * rng.standard_normal((len(MOTOR), len(MOTOR)))
    X = mixing @ rng.standard_normal((30, len(MOTOR), 240))
    shared = rng.standard_normal((30, 240))
    X[y == 1, :2] += 1.5 * shared[y == 1, None]
    return X, y


def _synthetic_fmri():
    """16 subjects, 20 ROIs, 60 or 80 volumes: ROIs mixed from 5 sources in every subject, and in
    class 1 ROIs 0-3 share one more source."""
    rng = np.random.default_rng(7)
    y = np.tile([0, 1], 8)
    X = np.empty(len(y), dtype=object)
    for i, label in enumerate(y):
        n_times = 60 if i % 4 < 2 else 80
        signals = rng.standard_normal((20, 5)) @ rng.standard_normal((5, n_times)) + rng.standard_normal((20, n_times))
        if label:
            signals[:4] += 1.5 * rng.standard_normal(n_times)
        X[i] = signals
    return X, y


SYNTHETIC = {"signals": _synthetic_eeg(), "fmri": _synthetic_fmri()}


@pytest.fixture(params=["synthetic", "real"])
def source(request):
    """``source(kind)``: inputs of that kind, synthetic or real (real ones load on first use)."""
    def get(kind):
        if request.param == "synthetic":
            base = SYNTHETIC["fmri" if kind == "fmri" else "signals"]
        else:
            base = request.getfixturevalue("fmri" if kind == "fmri" else "eeg")
        return _spd(base) if kind == "spd" else base
    return get


def _spd(eeg):
    X, y = eeg
    return covariances(X, "oas"), y


def _standard_positions(names):
    """Positions (metres) of named electrodes on MNE's standard 10-05 montage, as a tuple (a parameter value)."""
    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        positions = mne.channels.make_standard_montage("standard_1005").get_positions()["ch_pos"]
    return tuple(tuple(float(v) for v in positions[name]) for name in names)


def _case(module, name, params, kind):
    return pytest.param((module, name, params, kind), id=name)


# (module, class, non-default parameters, input kind)
CASES = [
    _case("neurodecode.transforms.covariance", "Covariances", {"estimator": "lwf"}, "signals"),
    _case("neurodecode.transforms.covariance", "TangentSpace", {"tol": 1e-7}, "spd"),
    _case("neurodecode.transforms.augmented", "AugmentedCovariance", {"order": 2, "lag": 3}, "signals"),
    _case("neurodecode.transforms.augmented", "AugmentedCovarianceSelector",
          {"orders": [1, 2], "lags": [1, 2], "cv": 2}, "signals"),
    _case("neurodecode.transforms.spectral", "BandPower", {"sfreq": 160.0, "bands": {"mu": (8, 13)}}, "signals"),
    _case("neurodecode.transforms.connectivity_eeg", "EEGConnectivity",
          {"sfreq": 160.0, "method": "plv", "mode": "fourier", "bands": {"beta": (13, 30)}}, "signals"),
    _case("neurodecode.transforms.connectivity_fmri", "Connectome", {"kind": "tangent"}, "fmri"),
    _case("neurodecode.transforms.alignment", "EuclideanAlignment", {"rcond": 1e-9}, "signals"),
    _case("neurodecode.transforms.alignment", "RiemannianRecentering", {"tol": 1e-7}, "spd"),
    _case("neurodecode.transforms.alignment", "RiemannianStretching", {"dispersion": 2.0}, "spd"),
    _case("neurodecode.transforms.alignment", "RiemannianRotation", {"metric": "riemann"}, "spd"),
    _case("neurodecode.transforms.alignment", "RunningAlignment", {"weighting": "exponential", "halflife": 10.0},
          "signals"),
    # Recentring after its default Covariances step; min_trials so that a 15-trial fold aligns by its own trials.
    _case("neurodecode.models.transfer", "TransferClassifier", {"alignment": "riemannian", "min_trials": 5}, "signals"),
    _case("neurodecode.models.riemann", "MDM", {"tol": 1e-7}, "spd"),
    _case("neurodecode.models.riemann", "FgMDM", {"tol": 1e-7}, "spd"),
    # One epoch of a small network on the CPU, without a validation split: seconds, and deterministic.
    _case("neurodecode.models.deep", "DeepClassifier",
          {"model": "ShallowFBCSPNet", "max_epochs": 1, "batch_size": 16, "val_fraction": 0.0, "patience": None,
           "device": "cpu"}, "signals"),
    # Tokenizers of 32-sample patches (7 per channel here); the VQ one trains 2 epochs on the CPU.
    _case("neurodecode.transforms.tokenizers", "KMeansTokenizer", {"n_codes": 8, "patch_size": 32}, "signals"),
    _case("neurodecode.transforms.tokenizers", "VQTokenizer",
          {"n_codes": 8, "patch_size": 32, "max_epochs": 2, "batch_size": 256, "device": "cpu"}, "signals"),
    # A one-layer encoder fine-tuned for one epoch; electrode positions of the 8 motor channels given.
    _case("neurodecode.models.foundation", "FoundationClassifier",
          {"encoder_params": {"patch_size": 32, "d_model": 16, "n_layers": 1, "n_heads": 2},
           "positions": _standard_positions(MOTOR), "sfreq": 160.0, "max_epochs": 1, "batch_size": 16,
           "val_fraction": 0.0, "patience": None, "device": "cpu"}, "signals"),
]


def _make(case):
    module, name, params, kind = case
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        pytest.fail(f"{module}.{name} is listed in the estimator checks but cannot be imported: {err}")
    return cls(**params), params, kind


def _features(est, X):
    out = est.transform(X) if hasattr(est, "transform") else est.predict(X)
    return np.asarray(out).reshape(len(out), -1)


def _corrupt(X, value):
    if X.dtype == object:
        bad = X.copy()
        bad[1] = bad[1].copy()
        bad[1][0, 0] = value
        return bad
    bad = X.copy()
    bad[1].flat[0] = value  # a diagonal entry of SPD input, so it stays symmetric
    return bad


def _fewer_channels(X, kind):
    if kind == "signals":
        return X[:, :-1]
    if kind == "spd":
        return X[:, :-1, :-1]
    out = np.empty(len(X), dtype=object)
    out[:] = [x[:-1] for x in X]
    return out


@pytest.mark.parametrize("case", CASES)
def test_parameters_survive_clone_and_round_trip(case):
    est, params, _ = _make(case)
    for key, value in params.items():
        assert est.get_params()[key] == value, f"__init__ altered {key}"
    cloned = clone(est)
    assert cloned.get_params() == est.get_params()
    twin = type(est)().set_params(**params)
    assert twin.get_params() == est.get_params()
    # __init__ stores, fit validates: an absurd value must not raise at construction.
    signature = inspect.signature(type(est).__init__)
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY
               for name, p in signature.parameters.items() if name != "self"), "no *args/**kwargs"


@pytest.mark.parametrize("case", CASES)
def test_fit_transform_pickle_and_no_state_change(case, source):
    est, _, kind = _make(case)
    X, y = source(kind)
    with pytest.raises(NotFittedError):
        _features(est, X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert est.fit(X, y) is est
    fitted = {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}
    assert fitted, "fit must set at least one attribute ending in '_'"
    state = copy.deepcopy({k: v for k, v in vars(est).items()})
    first = _features(est, X)
    assert np.isfinite(first).all() and len(first) == len(X)
    assert set(vars(est)) == set(state), "transform added attributes"
    for k, v in state.items():
        assert type(vars(est)[k]) is type(v), f"transform changed {k}"
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(_features(restored, X), first, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_features(clone(est).fit(X, y), X), first, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_input_is_refused(case, value, source):
    est, _, kind = _make(case)
    X, y = source(kind)
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        est.fit(_corrupt(X, value), y)
    est.fit(X, y)
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        _features(est, _corrupt(X, value))


@pytest.mark.parametrize("case", CASES)
def test_wrong_shapes_are_refused(case, source):
    est, _, kind = _make(case)
    X, y = source(kind)
    flat = np.stack([np.asarray(x)[:, :5].ravel() for x in X]) if X.dtype == object else X.reshape(len(X), -1)
    with pytest.raises(ValueError):
        est.fit(flat, y)
    est.fit(X, y)
    with pytest.raises(ValueError, match="(?i)channel|roi|fitted|shape|match"):
        _features(est, _fewer_channels(X, kind))


def _downstream(est):
    """What follows the estimator in the pipeline checks: a classifier for a transformer, nothing for a classifier."""
    if not hasattr(est, "transform"):
        return []
    return [FunctionTransformer(_flatten), StandardScaler(), LogisticRegression(max_iter=200)]


def _flatten(F):
    return np.asarray(F).reshape(len(F), -1)


@pytest.mark.parametrize("case", CASES)
def test_in_pipeline_and_grid_search(case, source):
    est, params, kind = _make(case)
    X, y = source(kind)
    pipe = make_pipeline(est, *_downstream(est))
    step = pipe.steps[0][0]
    first_param = next(iter(params))
    grid_params = {f"{step}__{first_param}": [params[first_param]]}
    if hasattr(est, "transform"):
        grid_params["logisticregression__C"] = [0.1, 1.0]
    grid = GridSearchCV(pipe, grid_params, cv=StratifiedKFold(2, shuffle=True, random_state=0), error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid.fit(X, y)
        # The refitted best pipeline is the pipeline with the best parameters, fitted on all of X.
        by_hand = clone(pipe).set_params(**grid.best_params_).fit(X, y)
    np.testing.assert_array_equal(grid.best_estimator_.predict(X), by_hand.predict(X))


SIGNAL_CASES = [case for case in CASES if case.values[0][3] == "signals"]


def _decoding_data(X, y, sfreq=SFREQ, ch_names=MOTOR):
    from neurodecode.data import DecodingData, SignalInfo

    info = SignalInfo(sfreq, ch_names, ("eeg",) * len(ch_names), "eeg", class_names=("left_hand", "right_hand"))
    meta = pd.DataFrame({"subject": 1, "session": "0", "run": "0", "onset": np.arange(len(X)) * 4.0,
                         "dataset": "checks"})
    return DecodingData(X, y, meta, info)


@pytest.mark.parametrize("case", SIGNAL_CASES)
def test_decoding_data_gives_rate_and_channels_and_others_are_refused(case, source):
    est, params, _ = _make(case)
    X, y = source("signals")
    data = _decoding_data(X, y)
    # A pinned sampling rate is left out: the DecodingData supplies it.
    from_data = type(est)(**{k: v for k, v in params.items() if k != "sfreq"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert from_data.fit(data, data.y) is from_data
        est.fit(X, y)
    assert (from_data.sfreq_, from_data.ch_names_) == (SFREQ, MOTOR)
    features = _features(from_data, data)
    np.testing.assert_allclose(features, _features(est, X), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"fitted at 160.0 Hz, given data at 128.0 Hz: resample the recording "
                                         r"or refit"):
        _features(from_data, _decoding_data(X, y, sfreq=128.0))
    order = [1, 0, *range(2, len(MOTOR))]
    permuted = _decoding_data(X[:, order], y, ch_names=tuple(MOTOR[i] for i in order))
    with pytest.raises(ValueError, match=r"channels differ from those fitted: position 0 is 'C4' here, 'C3' at fit"):
        _features(from_data, permuted)
    other = _decoding_data(X, y, ch_names=MOTOR[:-1] + ("Pz",))
    with pytest.raises(ValueError, match=r"channels differ from those fitted: .*missing: \['C1'\]"):
        _features(from_data, other)
    # The refusals wrote nothing: the fitted estimator gives the same features.
    np.testing.assert_array_equal(_features(from_data, data), features)
    # In a Pipeline the first step gets the DecodingData, the later ones arrays.
    steps = _downstream(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = make_pipeline(clone(from_data), *steps).fit(data, data.y)
        by_array = make_pipeline(clone(est), *[clone(s) for s in steps]).fit(X, y)
    np.testing.assert_array_equal(pipe.predict(data), by_array.predict(X))
    with pytest.raises(ValueError, match="channels differ from those fitted"):
        pipe.predict(permuted)


#: Bases that are no estimator on their own: each is checked through every subclass the cases list.
BASES = {"TorchEstimator": ("DeepClassifier", "FoundationClassifier")}


def test_every_estimator_of_the_package_is_checked():
    listed = {case.values[0][1] for case in CASES + IMAGE_CASES}
    assert all(set(subclasses) <= listed for subclasses in BASES.values())
    listed |= set(BASES)
    found = set()
    for info in pkgutil.walk_packages(neurodecode.__path__, "neurodecode."):
        if info.name.startswith("neurodecode.cli"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseEstimator) and obj.__module__ == info.name
                    and not name.startswith("_")):
                found.add(name)
    assert found <= listed, f"estimators missing from the shared checks: {sorted(found - listed)}"


# -- estimators whose targets or inputs are images ------------------------------------------------
# FMRIToImage maps voxels (n, n_voxels) to images (n, height, width) and DiffusionPrior learns from
# images alone: neither fits the shared checks' (signals, class labels) shapes, the stratified
# splits or a downstream classifier, so they have the same checks here, on their own inputs.

def _tiny_prior():
    from neurodecode.models.fmri_image import DiffusionPrior

    return DiffusionPrior(n_components=4, unet_channels=(8, 16), max_epochs=1, batch_size=32, n_inference_steps=2,
                          device="cpu")


IMAGE_CASES = [
    pytest.param(("neurodecode.models.fmri_image", "DiffusionPrior",
                  {"n_components": 4, "unet_channels": (8, 16), "max_epochs": 1, "batch_size": 32,
                   "n_inference_steps": 2, "device": "cpu"}, "images"), id="DiffusionPrior"),
    pytest.param(("neurodecode.models.fmri_image", "FMRIToImage",
                  {"prior": _tiny_prior(), "lowres_factor": 2, "n_inference_steps": 2, "device": "cpu"},
                  "voxels_images"), id="FMRIToImage"),
    # The path is bound by the tests to a tiny random pipeline they write (see ``_bind``).
    pytest.param(("neurodecode.models.fmri_image", "PretrainedImagePrior",
                  {"path": "tiny-pipeline", "embedder": None, "n_inference_steps": 2, "device": "cpu"},
                  "pretrained"), id="PretrainedImagePrior"),
]


class _PixelProjection:
    """A fixed random linear map of any image size to 6 dimensions (stands in for a CLIP encoder)."""

    def transform(self, images):
        flat = np.asarray(images).reshape(len(images), -1)
        return flat @ np.random.default_rng(0).standard_normal((flat.shape[1], 6)) / np.sqrt(flat.shape[1])


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    """A randomly initialised image-variation pipeline (UNet, VAE, scheduler) in diffusers' folder layout."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    root = tmp_path_factory.mktemp("pipeline")
    torch.manual_seed(0)
    UNet2DConditionModel(sample_size=4, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                         norm_num_groups=8, cross_attention_dim=6, attention_head_dim=2,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).save_pretrained(root / "unet")
    AutoencoderKL(latent_channels=4, block_out_channels=(8, 16), norm_num_groups=8, layers_per_block=1,
                  down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2).save_pretrained(root / "vae")
    DDIMScheduler().save_pretrained(root / "scheduler")
    return root


def _bind(est, kind, request):
    if kind == "pretrained":
        est.set_params(path=request.getfixturevalue("tiny_pipeline"), embedder=_PixelProjection())
    return est


def _synthetic_voxels_images():
    """24 images of one bar (8 x 8), and 30 voxels as a fixed random linear code of the pixels plus noise."""
    rng = np.random.default_rng(3)
    images = np.zeros((24, 8, 8))
    for i in range(24):
        k = rng.integers(1, 7)
        if i % 2:
            images[i, k - 1:k + 1, 1:-1] = 1.0
        else:
            images[i, 1:-1, k - 1:k + 1] = 1.0
    X = images.reshape(24, -1) @ rng.standard_normal((64, 30))
    return X + 0.1 * rng.standard_normal(X.shape), images


@pytest.fixture(scope="module")
def digit69(data_root):
    """Real fMRI: the first 24 digit69 training trials (3092 voxels) and their 28 x 28 stimuli."""
    from neurodecode.data.datasets.digit69 import load_digit69, load_digit69_images

    return load_digit69("train").X[:24].copy(), load_digit69_images("train")[:24] / 255.0


@pytest.fixture(params=["synthetic", "real"])
def image_source(request):
    return _synthetic_voxels_images() if request.param == "synthetic" else request.getfixturevalue("digit69")


def _image_inputs(kind, voxels, images):
    """(X, y) the estimator fits on: images alone for a prior, voxels and images for a reconstruction."""
    return (voxels, images) if kind == "voxels_images" else (images, None)


def _image_output(est, X):
    out = est.transform(X) if hasattr(est, "transform") else est.predict(X)
    return np.asarray(out).reshape(len(out), -1)


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_image_estimator_parameters_survive_clone(case):
    est, params, _ = _make(case)
    shallow = est.get_params(deep=False)
    for key, value in params.items():
        assert shallow[key] is value, f"__init__ altered {key}"
    cloned = clone(est).get_params(deep=False)
    assert {k: repr(v) for k, v in cloned.items()} == {k: repr(v) for k, v in shallow.items()}
    signature = inspect.signature(type(est).__init__)
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY
               for name, p in signature.parameters.items() if name != "self"), "no *args/**kwargs"


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_image_estimator_fit_pickle_and_no_state_change(case, image_source, request):
    est, _, kind = _make(case)
    _bind(est, kind, request)
    X, y = _image_inputs(kind, *image_source)
    with pytest.raises(NotFittedError):
        _image_output(est, X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert est.fit(X, y) is est
    assert {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}
    state = {k: type(v) for k, v in vars(est).items()}
    first = _image_output(est, X)
    assert np.isfinite(first).all() and len(first) == len(X)
    assert {k: type(v) for k, v in vars(est).items()} == state, "predicting changed the fitted state"
    np.testing.assert_allclose(_image_output(pickle.loads(pickle.dumps(est)), X), first, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_image_output(clone(est).fit(X, y), X), first, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", IMAGE_CASES)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_image_estimator_refuses_non_finite_input(case, value, image_source, request):
    est, _, kind = _make(case)
    _bind(est, kind, request)
    X, y = _image_inputs(kind, *image_source)
    bad = X.copy()
    bad[1].flat[0] = value
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        est.fit(bad, y)
    est.fit(X, y)
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        _image_output(est, bad)


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_image_estimator_refuses_wrong_shapes(case, image_source, request):
    est, _, kind = _make(case)
    _bind(est, kind, request)
    X, y = _image_inputs(kind, *image_source)
    with pytest.raises(ValueError, match="shape"):
        est.fit(X.reshape(len(X), -1, 1) if kind == "voxels_images" else X.reshape(len(X), -1), y)
    est.fit(X, y)
    smaller = X[:, :-1] if kind == "voxels_images" else X[:, :-2, :-2]
    with pytest.raises(ValueError, match="(?i)fitted"):
        _image_output(est, smaller)


def test_image_reconstruction_in_grid_search(image_source):
    from sklearn.model_selection import KFold

    est = _make(next(case.values[0] for case in IMAGE_CASES if case.values[0][1] == "FMRIToImage"))[0]
    X, images = image_source
    grid = GridSearchCV(est, {"guidance_scale": [1.0, 3.0]}, cv=KFold(2, shuffle=True, random_state=0),
                        error_score="raise").fit(X, images)
    by_hand = clone(est).set_params(**grid.best_params_).fit(X, images)
    np.testing.assert_array_equal(grid.best_estimator_.predict(X), by_hand.predict(X))
