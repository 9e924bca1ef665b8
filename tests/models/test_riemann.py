"""MDM and FgMDM on the batched core give pyRiemann's predictions on real EEG."""

import warnings

import numpy as np
import pytest
import torch

from neurodecode.geometry import covariances
from neurodecode.models.riemann import MDM, FgMDM

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyriemann.classification import MDM as PyRiemannMDM
    from pyriemann.classification import FgMDM as PyRiemannFgMDM


@pytest.fixture(scope="module")
def split(eegmmidb_two_subjects):
    """OAS covariances of the 90 left/right trials of subjects 1-2 (64 channels), half to train, half to test."""
    data = eegmmidb_two_subjects
    C = covariances(data.X, "oas")
    y = np.asarray(data.y)
    train = np.arange(len(y)) % 2 == 0
    return C[train], y[train], C[~train], y[~train]


@pytest.mark.slow
@pytest.mark.parametrize("ours, theirs", [(MDM, PyRiemannMDM), (FgMDM, PyRiemannFgMDM)])
def test_same_predictions_as_pyriemann(split, ours, theirs):
    C_train, y_train, C_test, _ = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = theirs().fit(C_train, y_train)
        expected = reference.predict(C_test), reference.predict_proba(C_test), reference.transform(C_test)
    model = ours().fit(C_train, y_train)
    np.testing.assert_array_equal(model.predict(C_test), expected[0])
    np.testing.assert_allclose(model.predict_proba(C_test), expected[1], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(model.transform(C_test), expected[2], rtol=1e-8)
    np.testing.assert_array_equal(model.classes_, reference.classes_)


def test_fgmdm_weights_and_labels_are_checked(split):
    C_train, y_train, C_test, _ = split
    weights = np.linspace(1, 3, len(y_train))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = PyRiemannFgMDM().fit(C_train, y_train, sample_weight=weights)
    model = FgMDM().fit(C_train, y_train, sample_weight=weights)
    np.testing.assert_allclose(model.transform(C_test), reference.transform(C_test), rtol=1e-8)
    with pytest.raises(ValueError, match="single class"):
        MDM().fit(C_train, np.zeros(len(C_train)))
    with pytest.raises(ValueError, match="sample_weight"):
        MDM().fit(C_train, y_train, sample_weight=-weights)
    with pytest.raises(ValueError, match="one label per matrix"):
        MDM().fit(C_train, y_train[:-1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_gives_the_cpu_predictions(split):
    C_train, y_train, C_test, _ = split
    for cls in (MDM, FgMDM):
        cpu = cls().fit(C_train, y_train)
        gpu = cls(device="cuda", batch_size=16).fit(C_train, y_train)
        np.testing.assert_array_equal(gpu.predict(C_test), cpu.predict(C_test))
        np.testing.assert_allclose(gpu.transform(C_test), cpu.transform(C_test), rtol=1e-8)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_dual_shrinkage_lda_equals_scikit_learn(n_classes):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from neurodecode.models.riemann import shrinkage_lda_directions

    rng = np.random.default_rng(n_classes)
    X = rng.standard_normal((40, 300)) * rng.uniform(0.1, 3.0, 300)
    y = np.arange(40) % n_classes
    X[y == 1, :5] += 1.0
    X[:, 7] = 2.5  # a constant feature, which StandardScaler leaves unscaled
    expected = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y).coef_
    np.testing.assert_allclose(shrinkage_lda_directions(X, y, np.unique(y)), expected, rtol=1e-9,
                               atol=1e-12 * np.abs(expected).max())
