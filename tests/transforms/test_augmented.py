"""Augmented covariance: embedding, estimators, exact fast assembly, selection, MOABB pipeline file."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.covariance import OAS, LedoitWolf, empirical_covariance
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from neurodecode.transforms.augmented import (AugmentedCovariance, AugmentedCovarianceSelector, LaggedProducts,
                                              covariance_from_sums, delay_embed)

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
SKLEARN = {"scm": lambda z: empirical_covariance(z.T),
           "oas": lambda z: OAS().fit(z.T).covariance_,
           "lwf": lambda z: LedoitWolf().fit(z.T).covariance_}


@pytest.fixture(scope="module")
def subject1(dataset_dir):
    from neurodecode.data.datasets.eegmmidb import load_eegmmidb

    dataset_dir("eegmmidb")
    data = load_eegmmidb([1], progress=False)
    return data.X, np.asarray(data.y)


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("order, lag", [(2, 1), (3, 4), (5, 10)])
def test_embedding_equals_moabb_augmented_dataset(subject1, order, lag):
    from moabb.pipelines.features import AugmentedDataset

    X = subject1[0][:6]
    moabb = AugmentedDataset(order=order, lag=lag).transform(X)
    # MOABB keeps lag fewer samples than exist for every copy; on the trimmed trial the two agree exactly.
    assert np.array_equal(delay_embed(X[..., :-lag], order, lag), moabb)
    ours = delay_embed(X, order, lag)
    assert ours.shape == (6, order * 64, 481 - (order - 1) * lag)
    assert np.array_equal(ours[..., :moabb.shape[-1]], moabb)
    assert np.array_equal(delay_embed(X, 1, lag), AugmentedDataset(order=1, lag=lag).transform(X))


def test_embedding_has_no_wrap_around_and_broadcasts():
    X = np.arange(2 * 3 * 2 * 10, dtype=float).reshape(2, 3, 2, 10)
    Z = delay_embed(X, 3, 2)
    assert Z.shape == (2, 3, 6, 6)
    for k in range(3):
        assert np.array_equal(Z[..., 2 * k:2 * k + 2, :], X[..., 2 * k:2 * k + 6])
    # Every sample of the last copy comes after every sample of the first: nothing rolled round.
    assert (Z[..., 4:, :] > Z[..., :2, :]).all()
    assert torch.equal(delay_embed(torch.from_numpy(X), 3, 2), torch.from_numpy(Z))


@pytest.mark.parametrize("estimator", ["scm", "oas", "lwf"])
def test_estimators_equal_sklearn_on_embedded_signal(subject1, estimator):
    X = subject1[0][:4]
    order, lag = 3, 5
    ours = AugmentedCovariance(order, lag, estimator).fit(X).transform(X)
    expected = np.stack([SKLEARN[estimator](z) for z in delay_embed(X, order, lag)])
    assert ours.shape == (4, 192, 192)
    assert _rel(ours, expected) < 1e-10


def test_order_one_is_the_plain_covariance(subject1):
    from pyriemann.estimation import Covariances

    X = subject1[0][:5]
    for estimator in ("scm", "oas", "lwf"):
        ours = AugmentedCovariance(1, 7, estimator).fit(X).transform(X)
        assert _rel(ours, Covariances(estimator).transform(X)) < 1e-10


def test_shrinkage_keeps_large_orders_spd(subject1):
    X = subject1[0][:3]
    # 10 x 64 = 640 rows from 472 samples: the sample covariance is singular.
    scm = AugmentedCovariance(10, 1, "scm").fit(X).transform(X)
    assert np.linalg.eigvalsh(scm)[:, 0].max() < 1e-8 * np.linalg.eigvalsh(scm)[:, -1].min()
    for estimator in ("oas", "lwf"):
        C = AugmentedCovariance(10, 1, estimator).fit(X).transform(X)
        eig = np.linalg.eigvalsh(C)
        assert C.shape == (3, 640, 640)
        # Shrinkage lifts every eigenvalue to a fixed share of the mean one: well-conditioned, not merely > 0.
        assert (eig[:, 0] > 1e-5 * eig[:, -1]).all()
        np.linalg.cholesky(C)


@pytest.mark.parametrize("estimator", ["scm", "oas", "lwf"])
def test_assembled_covariances_equal_direct_ones(subject1, estimator):
    X = subject1[0][:8]
    products = LaggedProducts(X, 27)
    for order, lag in [(1, 3), (2, 1), (2, 10), (3, 7), (4, 9), (10, 3)]:
        direct = AugmentedCovariance(order, lag, estimator).fit(X).transform(X)
        assert _rel(products.covariances(order, lag, estimator), direct) < 1e-10
    with pytest.raises(ValueError, match="max_delay"):
        products.covariances(4, 10, estimator)


def test_covariance_from_running_sums(subject1):
    X = subject1[0][:3]
    order, lag, window = 2, 5, 160
    Z = delay_embed(X, order, lag)
    # Slide a 1 s window by 40 samples, updating the sums with what enters and leaves.
    s1, s2 = Z[..., :window].sum(-1), Z[..., :window] @ Z[..., :window].transpose(0, 2, 1)
    for start in (40, 80):
        gone, new = Z[..., start - 40:start], Z[..., start + window - 40:start + window]
        s1 = s1 - gone.sum(-1) + new.sum(-1)
        s2 = s2 - gone @ gone.transpose(0, 2, 1) + new @ new.transpose(0, 2, 1)
    chunk = X[..., 80:80 + window + (order - 1) * lag]
    for estimator in ("scm", "oas"):
        direct = AugmentedCovariance(order, lag, estimator).fit(chunk).transform(chunk)
        assert _rel(covariance_from_sums(s1, s2, window, estimator), direct) < 1e-10
    # Ledoit-Wolf needs fourth moments: sum |z|^2 z and sum |z|^4 over the same window.
    Zw = Z[..., 80:80 + window]
    sq = (Zw ** 2).sum(-2)
    lwf = covariance_from_sums(s1, s2, window, "lwf", sum_sq_z=(Zw * sq[:, None, :]).sum(-1),
                               sum_sq_sq=(sq ** 2).sum(-1))
    assert _rel(lwf, AugmentedCovariance(order, lag, "lwf").fit(chunk).transform(chunk)) < 1e-8
    with pytest.raises(ValueError, match="'lwf' needs sum_sq_z and sum_sq_sq"):
        covariance_from_sums(s1, s2, window, "lwf")


def test_selection_on_real_data(subject1):
    X, y = subject1
    selector = AugmentedCovarianceSelector(orders=[1, 2, 3], lags=[1, 4, 8], cv=3, beam=None, rule="best")
    C = selector.fit(X, y).transform(X)
    res = selector.cv_results_
    pairs = list(zip(res["order"], res["lag"]))
    # Order 1 once, then every (order, lag) that keeps order * 64 <= half of the embedded samples.
    assert pairs == [(1, 1), (2, 1), (2, 4), (2, 8), (3, 1), (3, 4), (3, 8)]
    best = int(np.argmax(res["mean_test_score"]))
    assert (selector.order_, selector.lag_) == pairs[best]
    assert res["rank_test_score"][best] == 1
    assert res["mean_test_score"][best] >= res["mean_test_score"][0]
    # Subject 1's left/right trials separate well: the best inner AUC is far above chance.
    assert res["mean_test_score"][best] > 0.8
    assert C.shape == (45, 64 * selector.order_, 64 * selector.order_)
    direct = AugmentedCovariance(selector.order_, selector.lag_, "oas").fit(X).transform(X)
    assert _rel(C, direct) < 1e-12


def test_beam_search_follows_the_best_lags(subject1):
    X, y = subject1
    full = AugmentedCovarianceSelector(orders=[1, 2, 3], lags=[1, 4, 8], beam=None).fit(X, y).cv_results_
    beam = AugmentedCovarianceSelector(orders=[1, 2, 3], lags=[1, 4, 8], beam=1).fit(X, y).cv_results_
    score = {(o, lag): s for o, lag, s in zip(full["order"], full["lag"], full["mean_test_score"])}
    pairs = list(zip(beam["order"], beam["lag"]))
    assert pairs[:4] == [(1, 1), (2, 1), (2, 4), (2, 8)]
    assert np.allclose(beam["mean_test_score"], [score[p] for p in pairs], atol=1e-12)
    best_lag_2 = max([1, 4, 8], key=lambda lag: score[(2, lag)])
    if max(score[(2, lag)] for lag in [1, 4, 8]) < score[(1, 1)]:
        assert pairs == pairs[:4]  # order 2 lost to order 1: the search stops there
    else:
        assert pairs[4:] == [(3, best_lag_2)]


def test_one_se_rule_prefers_the_smallest_order_within_noise(subject1):
    X, y = subject1
    kwargs = dict(orders=[1, 2, 3], lags=[1, 4, 8], beam=None)
    res = AugmentedCovarianceSelector(**kwargs, rule="best").fit(X, y).cv_results_
    chosen = AugmentedCovarianceSelector(**kwargs, rule="one_se").fit(X, y)
    best = int(np.argmax(res["mean_test_score"]))
    threshold = res["mean_test_score"][best] - res["std_test_score"][best] / np.sqrt(3)
    order = res["order"][res["mean_test_score"] >= threshold].min()
    in_order = np.flatnonzero(res["order"] == order)
    expected = in_order[np.argmax(res["mean_test_score"][in_order])]
    assert (chosen.order_, chosen.lag_) == (res["order"][expected], res["lag"][expected])
    assert chosen.order_ <= res["order"][best]


def test_selection_skips_oversized_candidates_and_scores_like_a_manual_loop(subject1):
    from neurodecode.geometry import tangent_space
    from sklearn.metrics import roc_auc_score

    X, y = subject1
    cv = StratifiedKFold(3)
    selector = AugmentedCovarianceSelector(orders=[2, 5], lags=[2], cv=cv, beam=None).fit(X, y)
    # Order 5 (320 rows for 473 samples) exceeds max_dim_ratio=0.5; order 1 is always there.
    assert list(zip(selector.cv_results_["order"], selector.cv_results_["lag"])) == [(1, 2), (2, 2)]
    C = AugmentedCovariance(2, 2).fit(X).transform(X)
    features = tangent_space(C, C.mean(axis=0))
    scores = [roc_auc_score(y[te], SVC(kernel="linear").fit(features[tr], y[tr]).decision_function(features[te]))
              for tr, te in cv.split(features, y)]
    assert selector.cv_results_["mean_test_score"][1] == pytest.approx(np.mean(scores), abs=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"order": 0}, "order must be an integer >= 1"),
    ({"lag": 0}, "lag must be an integer >= 1"),
    ({"order": 2.5}, "order must be an integer"),
    ({"order": 3, "lag": 25}, "leave 0 sample"),
    ({"estimator": "mcd"}, "estimator must be one of"),
])
def test_bad_parameters_are_named(kwargs, message):
    X = np.random.default_rng(0).standard_normal((4, 3, 50))
    with pytest.raises(ValueError, match=message):
        AugmentedCovariance(**kwargs).fit(X)


def test_bad_input_is_named():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 3, 50))
    with pytest.raises(ValueError, match=r"n_times\); got 2-D shape \(3, 50\)"):
        AugmentedCovariance().fit(X[0])
    bad = X.copy()
    bad[2, 1, 7] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values in 1 trial"):
        AugmentedCovariance().fit(bad)
    fitted = AugmentedCovariance(2, 3).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        fitted.transform(bad)
    with pytest.raises(ValueError, match="4 channels; 3 were seen"):
        fitted.transform(rng.standard_normal((2, 4, 50)))
    with pytest.raises(NotFittedError):
        AugmentedCovariance().transform(X)
    with pytest.raises(NotFittedError):
        AugmentedCovarianceSelector().transform(X)
    with pytest.raises(ValueError, match="NaN"):
        AugmentedCovarianceSelector().fit(bad, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="y must have shape"):
        AugmentedCovarianceSelector().fit(X, [0, 1])
    with pytest.raises(ValueError, match="rule must be 'best' or 'one_se'; got 'min'"):
        AugmentedCovarianceSelector(rule="min").fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="beam must be None or an integer >= 1; got 0"):
        AugmentedCovarianceSelector(beam=0).fit(X, [0, 1, 0, 1])


def test_sklearn_plumbing():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((24, 3, 60))
    y = np.repeat([0, 1], 12)
    X[y == 1, 0] *= 3
    est = AugmentedCovariance(order=2, lag=3, estimator="lwf")
    assert clone(est).get_params() == est.get_params()
    fitted = est.fit(X)
    assert np.array_equal(pickle.loads(pickle.dumps(fitted)).transform(X), fitted.transform(X))
    from pyriemann.tangentspace import TangentSpace

    pipe = make_pipeline(AugmentedCovarianceSelector(orders=[1, 2], lags=[1, 2]), TangentSpace(),
                         SVC(kernel="linear"))
    search = GridSearchCV(pipe, {"svc__C": [0.5, 1.0]}, cv=2, scoring="roc_auc").fit(X, y)
    assert search.best_score_ > 0.9
    selector = pickle.loads(pickle.dumps(search.best_estimator_[0]))
    assert selector.transform(X).shape[1] == 3 * selector.order_


def test_pipeline_file_loads_in_moabb():
    from moabb.pipelines.utils import parse_pipelines_from_directory
    from pyriemann.tangentspace import TangentSpace

    (config,) = parse_pipelines_from_directory(str(PIPELINES / "ACM_TS_SVM.yml"))
    assert config["name"] == "ACM(selected)+TS+SVM"
    assert "LeftRightImagery" in config["paradigms"]
    steps = [step for _, step in config["pipeline"].steps]
    assert isinstance(steps[0], AugmentedCovarianceSelector)
    assert steps[0].get_params()["orders"] == list(range(1, 11))
    assert steps[0].estimator == "oas"
    assert steps[0].beam == 3 and steps[0].rule == "one_se"
    assert isinstance(steps[1], TangentSpace) and steps[1].metric == {"mean": "logeuclid", "map": "riemann"}
    assert isinstance(steps[2], SVC) and steps[2].kernel == "linear"


def _three_classes(n_per_class=12, n_channels=3, n_times=80, seed=0):
    """Noise trials whose class k has channel k amplified, so every class is separable."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n_per_class)
    X = rng.standard_normal((len(y), n_channels, n_times))
    X[np.arange(len(y)), y] *= 3.0
    return X, y


def test_selector_scores_any_number_of_classes():
    from neurodecode.geometry import tangent_space
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    X, y = _three_classes()
    cv = StratifiedKFold(3)
    selector = AugmentedCovarianceSelector(orders=[1, 2], lags=[2], cv=cv).fit(X, y)
    assert selector.scoring == "auto" and selector.scoring_ == "balanced_accuracy"
    # The score of order 2 is the balanced accuracy of the inner folds, computed by hand.
    C = AugmentedCovariance(2, 2).fit(X).transform(X)
    features = tangent_space(C, C.mean(axis=0))
    hand = [balanced_accuracy_score(y[te], SVC(kernel="linear").fit(features[tr], y[tr]).predict(features[te]))
            for tr, te in cv.split(features, y)]
    assert selector.cv_results_["mean_test_score"][1] == pytest.approx(np.mean(hand), abs=1e-12)
    # Two classes keep ROC AUC, as before.
    two = y < 2
    binary = AugmentedCovarianceSelector(orders=[1, 2], lags=[2], cv=cv).fit(X[two], y[two])
    assert binary.scoring_ == "roc_auc"
    C = AugmentedCovariance(1, 2).fit(X[two]).transform(X[two])
    features = tangent_space(C, C.mean(axis=0))
    y2 = y[two]
    hand = [roc_auc_score(y2[te], SVC(kernel="linear").fit(features[tr], y2[tr]).decision_function(features[te]))
            for tr, te in cv.split(features, y2)]
    assert binary.cv_results_["mean_test_score"][0] == pytest.approx(np.mean(hand), abs=1e-12)


def test_selector_refuses_when_no_candidate_scores():
    X, y = _three_classes()
    # Plain ROC AUC is undefined for three classes: every candidate fails, and the error says why.
    with pytest.raises(ValueError, match=r"no candidate \(order, lag\) could be scored with scoring='roc_auc' "
                                         r"\(first: \(order=1, lag=1\): ValueError: multi_class.*"
                                         r"y has 3 classes: scoring='auto' uses balanced accuracy"):
        AugmentedCovarianceSelector(orders=[1, 2], lags=[1], scoring="roc_auc").fit(X, y)


@pytest.mark.parametrize("rule", ["best", "one_se"])
def test_selector_leaves_out_candidates_that_score_nan(rule):
    from sklearn.metrics import balanced_accuracy_score

    X, y = _three_classes()
    n_channels = X.shape[1]

    def nan_beyond_order_1(estimator, features, y_true):
        # Order-2 tangent vectors are longer than order-1 ones: score those NaN.
        if features.shape[1] > n_channels * (n_channels + 1) // 2:
            return np.nan
        return balanced_accuracy_score(y_true, estimator.predict(features))

    with pytest.warns(UserWarning, match=r"2 of 3 candidates could not be scored.*\(order=2, lag=1\).*returned"):
        selector = AugmentedCovarianceSelector(orders=[1, 2], lags=[1, 2], beam=None, rule=rule,
                                               scoring=nan_beyond_order_1).fit(X, y)
    res = selector.cv_results_
    assert list(zip(res["order"], res["lag"])) == [(1, 1), (2, 1), (2, 2)]
    assert np.isfinite(res["mean_test_score"][0]) and np.isnan(res["mean_test_score"][1:]).all()
    assert (selector.order_, selector.lag_) == (1, 1)
    assert res["rank_test_score"][0] == 1


def test_selector_needs_y():
    X, _ = _three_classes()
    with pytest.raises(ValueError, match=r"y is required; with a DecodingData call fit\(data, data.y\)"):
        AugmentedCovarianceSelector(orders=[1], lags=[1]).fit(X, None)
