"""The DecodingData contract of the signal transformers (rate and channels from the data, refused
contradictions), pipelines fitted on a DecodingData, and bind_signal_info for array-only callers."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from neurodecode._utils.checks import unpack_data
from neurodecode.data import DecodingData, SignalInfo
from neurodecode.transforms import (AugmentedCovarianceSelector, BandPower, Covariances, EEGConnectivity,
                                    bind_signal_info)

SFREQ = 160.0
CHANNELS = ("C3", "C4", "Cz", "Pz")


def _data(sfreq=SFREQ, channels=CHANNELS, n_trials=16, n_times=320, seed=0):
    """Noise trials; in class 1 the first channel carries a 10 Hz rhythm."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n_trials // 2)
    X = rng.standard_normal((n_trials, len(channels), n_times))
    X[y == 1, 0] += 2.0 * np.sin(2 * np.pi * 10.0 * np.arange(n_times) / sfreq)
    info = SignalInfo(sfreq, channels, ("eeg",) * len(channels), "eeg", class_names=("rest", "task"))
    meta = pd.DataFrame({"subject": 1, "session": "0", "run": "0", "onset": np.arange(n_trials) * 3.0,
                         "dataset": "synthetic"})
    return DecodingData(X, y, meta, info)


def _relabelled(data, **info_changes):
    """The same trials under other signal info (another rate, other channel names)."""
    return DecodingData(data.X, data.y, data.metadata, replace(data.info, **info_changes))


def _permuted(data, order):
    """The channels of ``data`` in another order, names and signals together."""
    return DecodingData(data.X[:, order], data.y, data.metadata,
                        replace(data.info, ch_names=tuple(data.info.ch_names[i] for i in order)))


def _conn(**kwargs):
    return EEGConnectivity(method="coh", mode="fourier", bands={"alpha": (8, 13)}, **kwargs)


def test_unpack_data():
    data = _data()
    X, info = unpack_data(data)
    assert X is data.X and info is data.info
    array = np.zeros((2, 3, 4))
    assert unpack_data(array)[0] is array and unpack_data(array)[1] is None
    trials = [np.zeros((3, 4))]
    assert unpack_data(trials) == (trials, None)


@pytest.mark.parametrize("make", [BandPower, _conn], ids=["BandPower", "EEGConnectivity"])
def test_sampling_rate_comes_from_the_data(make):
    data = _data(sfreq=128.0)
    est = make().fit(data)
    assert est.sfreq is None, "fit must not rewrite the parameter"
    assert (est.sfreq_, est.ch_names_, est.n_channels_) == (128.0, CHANNELS, 4)
    by_array = make(sfreq=128.0).fit(data.X)
    assert by_array.ch_names_ is None and by_array.sfreq_ == 128.0
    np.testing.assert_array_equal(est.transform(data), by_array.transform(data.X))
    # An explicit rate that agrees with the data is accepted.
    np.testing.assert_array_equal(make(sfreq=128).fit(data).transform(data), by_array.transform(data.X))
    # Channel names of the data name the features.
    assert list(est.get_feature_names_out()[:4]) == [f"{list(est.bands_)[0]}_{c}" for c in CHANNELS]


def test_contradictions_are_refused_with_both_values():
    data = _data()
    with pytest.raises(ValueError, match=r"^BandPower: sfreq=250.0 Hz was given but the DecodingData is sampled "
                                         r"at 160.0 Hz"):
        BandPower(sfreq=250).fit(data)
    with pytest.raises(ValueError, match=r"^EEGConnectivity: sfreq is None and X is a plain array: pass sfreq=\.\.\."
                                         r".* or a DecodingData"):
        _conn().fit(data.X)
    no_rate = _relabelled(data, sfreq=None, modality="other")
    with pytest.raises(ValueError, match="sfreq is None and the DecodingData has no sampling rate"):
        BandPower().fit(no_rate)
    est = BandPower().fit(data)
    with pytest.raises(ValueError, match=r"^BandPower: fitted at 160.0 Hz, given data at 128.0 Hz: resample the "
                                         r"recording or refit$"):
        est.transform(_relabelled(data, sfreq=128.0))
    with pytest.raises(ValueError, match=r"^BandPower: channels differ from those fitted: position 0 is 'C4' here, "
                                         r"'C3' at fit; same channels in another order"):
        est.transform(_permuted(data, [1, 0, 2, 3]))
    with pytest.raises(ValueError, match=r"position 3 is 'Oz' here, 'Pz' at fit; not seen at fit: \['Oz'\]; "
                                         r"missing: \['Pz'\]"):
        est.transform(_relabelled(data, ch_names=("C3", "C4", "Cz", "Oz")))
    fewer = DecodingData(data.X[:, :3], data.y, data.metadata,
                         replace(data.info, ch_names=CHANNELS[:3], ch_types=("eeg",) * 3))
    with pytest.raises(ValueError, match=r"position 3 is nothing here, 'Pz' at fit; missing: \['Pz'\]"):
        est.transform(fewer)
    # The same object, fitted on the data, still transforms them.
    assert est.transform(data).shape == (len(data), 3 * 4)


def test_a_fit_on_arrays_checks_what_it_knows():
    data = _data()
    # The rate was given, the channel names were not: a DecodingData later is checked for its rate only.
    est = BandPower(sfreq=SFREQ).fit(data.X)
    with pytest.raises(ValueError, match="fitted at 160.0 Hz, given data at 128.0 Hz"):
        est.transform(_relabelled(data, sfreq=128.0))
    assert est.transform(_permuted(data, [1, 0, 2, 3])).shape == (len(data), 12)
    # Without a rate either (covariances need none), nothing is compared.
    cov = Covariances().fit(data.X)
    assert cov.sfreq_ is None and cov.ch_names_ is None
    assert cov.transform(_relabelled(data, sfreq=128.0)).shape == (len(data), 4, 4)


def test_supervised_selector_needs_y_with_a_decoding_data():
    data = _data()
    # pipe.fit(data) hands every step y=None; the labels are not taken from the container behind its back.
    with pytest.raises(ValueError, match=r"y is required; with a DecodingData call fit\(data, data.y\)"):
        make_pipeline(AugmentedCovarianceSelector(orders=[1], lags=[1]), Covariances()).fit(data)


def test_pipelines_and_searches_take_a_decoding_data():
    data = _data()
    pipe = make_pipeline(BandPower(), LinearDiscriminantAnalysis())
    predicted = pipe.fit(data, data.y).predict(data)
    assert pipe[0].sfreq_ == SFREQ and pipe[0].ch_names_ == CHANNELS
    by_array = make_pipeline(BandPower(sfreq=SFREQ), LinearDiscriminantAnalysis()).fit(data.X, data.y)
    np.testing.assert_array_equal(predicted, by_array.predict(data.X))
    with pytest.raises(ValueError, match="channels differ from those fitted"):
        pipe.predict(_permuted(data, [3, 2, 1, 0]))
    # Cross-validation indexes the container like an array.
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    np.testing.assert_array_equal(cross_val_score(pipe, data, data.y, cv=cv),
                                  cross_val_score(by_array, data.X, data.y, cv=cv))


def test_bind_signal_info_in_a_grid_search_over_a_pipeline():
    data = _data()
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    grid = GridSearchCV(make_pipeline(BandPower(bands={"alpha": (8, 13)}), LinearDiscriminantAnalysis()),
                        {"lineardiscriminantanalysis__solver": ["svd", "lsqr"]}, cv=cv)
    bound = bind_signal_info(grid, data.info)
    assert bound is not grid and grid.estimator[0].sfreq is None, "the estimator given is left as it was"
    assert bound.estimator[0].sfreq == SFREQ
    with pytest.raises(ValueError, match="sfreq is None and X is a plain array"):
        GridSearchCV(grid.estimator, grid.param_grid, cv=cv, error_score="raise").fit(data.X, data.y)
    bound.fit(data.X, data.y)  # plain arrays, as MOABB hands them
    assert bound.best_estimator_[0].sfreq_ == SFREQ
    by_data = grid.fit(data, data.y)
    np.testing.assert_array_equal(bound.cv_results_["mean_test_score"], by_data.cv_results_["mean_test_score"])
    # A rate already set is kept, so a contradiction with the data still surfaces at fit.
    pinned = bind_signal_info(make_pipeline(BandPower(sfreq=250.0), LinearDiscriminantAnalysis()), data.info)
    assert pinned[0].sfreq == 250.0
    with pytest.raises(ValueError, match="sfreq=250.0 Hz was given but the DecodingData is sampled at 160.0 Hz"):
        pinned.fit(data, data.y)


class _NeedsSignal(TransformerMixin, BaseEstimator):
    def __init__(self, sfreq=None, ch_names=None, n_chans=None, n_times=None, other=None):
        self.sfreq = sfreq
        self.ch_names = ch_names
        self.n_chans = n_chans
        self.n_times = n_times
        self.other = other


def test_bind_signal_info_fills_every_unset_signal_parameter():
    data = _data(n_times=200)
    pipe = make_pipeline(_NeedsSignal(), _NeedsSignal(n_chans=2))
    bound = bind_signal_info(pipe, data)
    first, second = bound[0].get_params(), bound[1].get_params()
    assert first == {"sfreq": SFREQ, "ch_names": list(CHANNELS), "n_chans": 4, "n_times": 200, "other": None}
    assert second["n_chans"] == 2 and second["sfreq"] == SFREQ
    # A SignalInfo knows no trial length: n_times stays unset unless given.
    assert bind_signal_info(pipe, data.info)[0].n_times is None
    assert bind_signal_info(pipe, data.info, n_times=50)[0].n_times == 50
    with pytest.raises(TypeError, match="SignalInfo or a DecodingData"):
        bind_signal_info(pipe, {"sfreq": SFREQ})


@pytest.mark.parametrize("name", ["EEGNet.py", "ShallowFBCSPNet.py"])
def test_deep_pipeline_files_pin_no_signal_fact(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "pipelines" / name
    spec = importlib.util.spec_from_file_location(f"_pipeline_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pipe = module.PIPELINE["pipeline"]
    # Rate, channels and length come from the data (or bind_signal_info), never from the file.
    pinned = {k: v for k, v in pipe.get_params().items()
              if k.rsplit("__", 1)[-1] in ("sfreq", "ch_names", "n_chans", "n_times") and v is not None}
    assert pinned == {}
