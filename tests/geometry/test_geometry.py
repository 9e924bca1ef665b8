"""Batched SPD geometry agrees with scikit-learn and pyRiemann to 1e-6 (float64) on real EEG."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.covariance import empirical_covariance, ledoit_wolf, oas

from neurodecode import geometry as g

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyriemann.tangentspace import TangentSpace as PyRiemannTangentSpace
    from pyriemann.utils.base import expm, invsqrtm, logm, sqrtm
    from pyriemann.utils.distance import distance_riemann
    from pyriemann.utils.mean import mean_riemann


@pytest.fixture(scope="module")
def trials(eegmmidb_two_subjects):
    return eegmmidb_two_subjects.X  # (90, 64, 481), µV


@pytest.fixture(scope="module")
def covs(trials):
    return g.covariances(trials, "oas")


def rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


@pytest.mark.parametrize("estimator, reference", [
    ("scm", lambda x: empirical_covariance(x.T)),
    ("oas", lambda x: oas(x.T)[0]),
    ("lwf", lambda x: ledoit_wolf(x.T)[0]),
])
def test_covariances_equal_sklearn(trials, estimator, reference):
    ours = g.covariances(trials, estimator)
    assert isinstance(ours, np.ndarray) and ours.shape == (90, 64, 64)
    assert rel(ours, np.stack([reference(x) for x in trials])) < 1e-12


def test_matrix_functions_equal_pyriemann(covs):
    C = covs[:10]
    for ours, theirs in [(g.sqrtm, sqrtm), (g.invsqrtm, invsqrtm), (g.logm, logm)]:
        assert rel(ours(C), theirs(C)) < 1e-10, ours.__name__
    S = g.logm(C) / 10
    assert rel(g.expm(S), expm(S)) < 1e-10
    assert rel(g.powm(C, 0.5), g.sqrtm(C)) < 1e-12


def test_mean_tangent_space_and_distance_equal_pyriemann(covs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = mean_riemann(covs)
        reference = PyRiemannTangentSpace(metric="riemann").fit(covs)
    ours = g.mean_riemann(covs)
    assert rel(ours, theirs) < 1e-6
    vectors = g.tangent_space(covs, ours)
    assert vectors.shape == (90, 64 * 65 // 2)
    assert np.abs(vectors - reference.transform(covs)).max() < 1e-6
    assert np.abs(g.distance_riemann(covs[:20], ours) - distance_riemann(covs[:20], theirs)).max() < 1e-6
    np.testing.assert_allclose(g.untangent_space(vectors, ours), covs, rtol=1e-9, atol=1e-9 * np.abs(covs).max())


@pytest.fixture(scope="module")
def converged_pyriemann(covs):
    """pyRiemann's mean, plain and weighted, run to a gradient norm of 1e-11.

    Its default tolerance (1e-8) leaves its own answer ~1e-10 from the converged mean on real EEG
    (1.2e-10 relative on 2,000 windows), so the comparison at 1e-10 needs it run further.
    """
    weights = np.linspace(1.0, 2.0, len(covs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (weights, mean_riemann(covs, tol=1e-11, maxiter=300),
                mean_riemann(covs, tol=1e-11, maxiter=300, sample_weight=weights))


@pytest.mark.parametrize("options", [{}, {"init": "logeuclid"}, {"hessian_sample": 16}])
def test_newton_mean_equals_pyriemann_to_1e10(covs, converged_pyriemann, options):
    """Any start and any Hessian subsample reach the same zero of the exact gradient as pyRiemann."""
    weights, theirs, theirs_weighted = converged_pyriemann
    assert rel(g.mean_riemann(covs, **options), theirs) < 1e-10
    assert rel(g.mean_riemann(covs, weights=weights, **options), theirs_weighted) < 1e-10


def test_gpu_code_path_gives_the_same_mean_and_distances(covs, monkeypatch):
    """The matrix-product logarithms and CPU-side Hessian eigenpairs the GPU uses, run here on the CPU."""
    from neurodecode.geometry import riemann, spd

    expected_mean = g.mean_riemann(covs)
    expected_dist = g.distance_riemann(covs[:10], expected_mean)
    for module in (spd, riemann):
        monkeypatch.setattr(module, "_use_matmul_log", lambda T: T.ndim >= 3)
    assert rel(g.mean_riemann(covs), expected_mean) < 1e-10
    np.testing.assert_allclose(g.distance_riemann(covs[:10], expected_mean), expected_dist, rtol=1e-10)
    vectors = g.tangent_space(covs[:10], expected_mean)
    np.testing.assert_allclose(g.untangent_space(vectors, expected_mean), covs[:10], rtol=1e-9,
                               atol=1e-9 * np.abs(covs).max())


def test_log_euclidean_mean_equals_pyriemann(covs):
    from pyriemann.geometry.mean import mean_logeuclid

    assert rel(g.mean_logeuclid(covs), mean_logeuclid(covs)) < 1e-10


def test_batches_over_leading_axes_and_keeps_torch(trials):
    stacked = trials[:40].reshape(2, 20, 64, 481)
    C = g.covariances(stacked, "oas")
    assert C.shape == (2, 20, 64, 64)
    means = g.mean_riemann(C)
    assert means.shape == (2, 64, 64)
    np.testing.assert_allclose(means[1], g.mean_riemann(C[1]), rtol=1e-12)
    tensor = g.covariances(torch.from_numpy(trials[:5]), "scm")
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float64
    np.testing.assert_allclose(tensor.numpy(), g.covariances(trials[:5], "scm"), rtol=1e-12)


def test_float32_is_close_to_float64(trials):
    c64 = g.covariances(trials[:10], "oas")
    c32 = g.covariances(torch.from_numpy(trials[:10]).float(), "oas").double().numpy()
    assert rel(c32, c64) < 1e-5


def test_bad_input_is_named():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 8, 50))
    X[2, 3, 10] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values"):
        g.covariances(X)
    with pytest.raises(ValueError, match="unknown covariance estimator 'foo'"):
        g.covariances(rng.standard_normal((4, 8, 50)), "foo")
    singular = g.covariances(rng.standard_normal((3, 8, 5)), "scm")  # 5 samples, 8 channels: rank 4
    with pytest.raises(ValueError, match="not positive definite.*shrinkage"):
        g.logm(singular)
    with pytest.raises(ValueError, match="not symmetric"):
        g.mean_riemann(rng.standard_normal((3, 4, 4)))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, n\)"):
        g.check_spd(torch.zeros(3, 4, 5))
