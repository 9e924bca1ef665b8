"""One suite of scikit-learn citizenship checks, run over every estimator neurodecode defines.

Each estimator is listed once in CASES with small real inputs of the kind it takes (3-D signals,
SPD matrices or ragged fMRI time series); a discovery test fails when a new estimator is added to
the package without being listed here.
"""

import copy
import importlib
import inspect
import pickle
import pkgutil
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import neurodecode
from neurodecode.geometry import covariances

RNG = np.random.default_rng(42)


@pytest.fixture(scope="module")
def eeg(data_root):
    """Real EEG: 30 left/right trials of subject 1, 8 motor channels, first 1.5 s, 160 Hz."""
    from neurodecode.data import load_eegmmidb

    data = load_eegmmidb([1])
    picks = [data.info.ch_names.index(c) for c in ("C3", "C4", "Cz", "FC3", "FC4", "CP3", "CP4", "C1")]
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


def _spd(eeg):
    X, y = eeg
    return covariances(X, "oas"), y


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
]


def _make(case):
    module, name, params, kind = case
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        pytest.fail(f"{module}.{name} is listed in the estimator checks but cannot be imported: {err}")
    return cls(**params), params, kind


def _data(kind, eeg, fmri):
    if kind == "signals":
        return eeg
    if kind == "spd":
        return _spd(eeg)
    return fmri


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
def test_fit_transform_pickle_and_no_state_change(case, eeg, fmri):
    est, _, kind = _make(case)
    X, y = _data(kind, eeg, fmri)
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
def test_non_finite_input_is_refused(case, value, eeg, fmri):
    est, _, kind = _make(case)
    X, y = _data(kind, eeg, fmri)
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        est.fit(_corrupt(X, value), y)
    est.fit(X, y)
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        _features(est, _corrupt(X, value))


@pytest.mark.parametrize("case", CASES)
def test_wrong_shapes_are_refused(case, eeg, fmri):
    est, _, kind = _make(case)
    X, y = _data(kind, eeg, fmri)
    flat = np.stack([np.asarray(x)[:, :5].ravel() for x in X]) if X.dtype == object else X.reshape(len(X), -1)
    with pytest.raises(ValueError):
        est.fit(flat, y)
    est.fit(X, y)
    with pytest.raises(ValueError, match="(?i)channel|roi|fitted|shape|match"):
        _features(est, _fewer_channels(X, kind))


@pytest.mark.parametrize("case", CASES)
def test_in_pipeline_and_grid_search(case, eeg, fmri):
    est, params, kind = _make(case)
    X, y = _data(kind, eeg, fmri)
    steps = [est, FunctionTransformer(lambda F: np.asarray(F).reshape(len(F), -1)), StandardScaler(),
             LogisticRegression(max_iter=200)]
    pipe = make_pipeline(*steps)
    step = pipe.steps[0][0]
    first_param = next(iter(params))
    grid = GridSearchCV(pipe, {f"{step}__{first_param}": [params[first_param]],
                               "logisticregression__C": [0.1, 1.0]},
                        cv=StratifiedKFold(2, shuffle=True, random_state=0), error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid.fit(X, y)
    assert grid.best_estimator_.predict(X).shape == (len(X),)
    assert 0.0 <= grid.best_score_ <= 1.0


def test_every_estimator_of_the_package_is_checked():
    listed = {case.values[0][1] for case in CASES}
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
