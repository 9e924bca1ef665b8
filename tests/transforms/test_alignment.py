"""Alignment across subjects on real eegmmidb data: equal to the benchmark script's recipe and to pyRiemann's."""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from neurodecode.geometry import covariances, distance_riemann, mean_riemann
from neurodecode.geometry.alignment import procrustes_loss, procrustes_rotation
from neurodecode.transforms.alignment import (EuclideanAlignment, RiemannianRecentering, RiemannianRotation,
                                              RiemannianStretching, RunningAlignment)
from neurodecode.transforms.covariance import Covariances, TangentSpace

#: 16 channels over the motor strip keep Procrustes and the Karcher means to a second or so.
N_CHANNELS = 16


@pytest.fixture(scope="module")
def eeg(dataset_dir):
    """eegmmidb subjects 1-3, left/right imagery, first 16 channels: (135, 16, 481) and their OAS covariances."""
    from neurodecode.data.datasets.eegmmidb import load_eegmmidb

    dataset_dir("eegmmidb")
    data = load_eegmmidb([1, 2, 3], progress=False)
    picked = type(data)(data.X[:, :N_CHANNELS].copy(), data.y, data.metadata,
                        type(data.info)(data.info.sfreq, data.info.ch_names[:N_CHANNELS],
                                        data.info.ch_types[:N_CHANNELS], "eeg", class_names=data.info.class_names))
    return picked, covariances(picked.X, "oas"), picked.metadata["subject"].to_numpy()


# -- Euclidean alignment ----------------------------------------------------------------------------

def _deep_gpu_ea_matrix(X):
    """benchmarks/deep_gpu.py's ``ea_matrix``, rewritten here (the test does not import the script)."""
    C = np.einsum("nct,ndt->cd", X.astype(np.float64), X.astype(np.float64)) / (X.shape[0] * X.shape[2])
    w, v = np.linalg.eigh(C)
    return ((v / np.sqrt(np.maximum(w, w.max() * 1e-10))) @ v.T).astype(np.float32)


def _deep_gpu_aligned_by_subject(X, subject):
    out = np.empty_like(X)
    for s in np.unique(subject):
        m = subject == s
        out[m] = np.einsum("cd,ndt->nct", _deep_gpu_ea_matrix(X[m]), X[m]).astype(np.float32)
    return out


def test_euclidean_alignment_is_the_benchmark_recipe(eeg):
    data, _, subject = eeg
    X32 = data.X.astype(np.float32)
    ours = EuclideanAlignment().fit_transform(X32, groups=subject)
    script = _deep_gpu_aligned_by_subject(X32, subject)
    assert ours.shape == X32.shape
    # The script rounds the whitener and the output to float32; ours stays float64 throughout.
    np.testing.assert_allclose(ours, script, rtol=0, atol=2e-5 * np.abs(script).max())
    # Each subject's mean covariance is now the identity.
    for s in np.unique(subject):
        Z = ours[subject == s]
        np.testing.assert_allclose(np.einsum("nct,ndt->cd", Z, Z) / (Z.shape[0] * Z.shape[2]), np.eye(N_CHANNELS),
                                   atol=1e-10)


def test_euclidean_alignment_groups_from_metadata_equal_routed_groups(eeg):
    data, _, subject = eeg
    from_metadata = EuclideanAlignment(by="subject").fit(data)
    routed = EuclideanAlignment().fit(data.X, groups=subject)
    assert list(from_metadata.references_) == [1, 2, 3]
    np.testing.assert_array_equal(from_metadata.transform(data), routed.transform(data.X, groups=subject))
    # By recording (subject/session/run) there are three runs per subject, each whitened alone.
    by_run = EuclideanAlignment(by="recording").fit(data)
    assert len(by_run.references_) == 9 and "1/0/2" in by_run.references_
    assert not np.allclose(by_run.transform(data), from_metadata.transform(data))


def test_a_group_never_seen_is_aligned_by_its_own_trials(eeg):
    data, C, subject = eeg
    sources, target = subject != 3, subject == 3
    ea = EuclideanAlignment().fit(data.X[sources], groups=subject[sources])
    np.testing.assert_allclose(ea.transform(data.X[target], groups=subject[target]),
                               EuclideanAlignment().fit_transform(data.X[target]), rtol=1e-12, atol=1e-12)
    # Without any group the trials form one new group (fitted with groups, no target_group).
    np.testing.assert_allclose(ea.transform(data.X[target]), ea.transform(data.X[target], groups=subject[target]),
                               rtol=1e-12, atol=1e-12)
    rc = RiemannianRecentering().fit(C[sources], groups=subject[sources])
    new = rc.transform(C[target], groups=subject[target])
    np.testing.assert_allclose(mean_riemann(new), np.eye(N_CHANNELS), atol=1e-8)
    # A seen group keeps its fitted reference: half of subject 1 transformed with subject 1's full mean.
    half = np.nonzero(subject == 1)[0][::2]
    np.testing.assert_allclose(rc.transform(C[half], groups=subject[half]),
                               RiemannianRecentering().fit(C[subject == 1]).transform(C[half]), rtol=1e-10)


# -- Riemannian recentring: pyRiemann's TLCenter -----------------------------------------------------

def test_recentering_equals_pyriemann_tlcenter(eeg):
    from pyriemann.transfer import TLCenter, encode_domains

    _, C, subject = eeg
    y = eeg[0].y
    _, y_enc = encode_domains(C, y, subject)
    reference = TLCenter(target_domain="3")
    expected = reference.fit_transform(C, y_enc)
    scale = np.abs(expected).max()
    # Domains routed as groups, and the same domains encoded in y the pyRiemann way.
    by_groups = RiemannianRecentering().fit_transform(C, y, groups=subject)
    by_encoded = RiemannianRecentering().fit_transform(C, y_enc)
    np.testing.assert_allclose(by_groups, expected, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(by_encoded, expected, rtol=0, atol=1e-8 * scale)
    # Test time: the target domain's trials recentred by its fitted mean, with groups or target_group.
    target = C[subject == 3]
    fitted = RiemannianRecentering(target_group="3").fit(C, y_enc)
    np.testing.assert_allclose(fitted.transform(target), reference.transform(target), rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(fitted.transform(target, groups=np.full(len(target), "3")),
                               reference.transform(target), rtol=0, atol=1e-8 * scale)
    for s in (1, 2, 3):
        np.testing.assert_allclose(mean_riemann(by_groups[subject == s]), np.eye(N_CHANNELS), atol=1e-8)


def test_recentering_in_a_pipeline_through_metadata_routing(eeg):
    data, C, subject = eeg
    with sklearn.config_context(enable_metadata_routing=True):
        step = RiemannianRecentering().set_fit_request(groups=True).set_transform_request(groups=True)
        pipe = make_pipeline(Covariances("oas"), step, TangentSpace(), LogisticRegression(max_iter=500))
        pipe.fit(data.X, data.y, groups=subject)
        proba = pipe.predict_proba(data.X, groups=subject)
    features = TangentSpace().fit_transform(RiemannianRecentering().fit_transform(C, groups=subject))
    by_hand = LogisticRegression(max_iter=500).fit(features, data.y).predict_proba(features)
    np.testing.assert_allclose(proba, by_hand, rtol=1e-8, atol=1e-10)
    # The routed groups mattered: recentring everything as one group gives other features.
    assert not np.allclose(features, TangentSpace().fit_transform(RiemannianRecentering().fit_transform(C)))


# -- stretching and rotation: pyRiemann's TLScale and TLRotate -----------------------------------------

@pytest.mark.parametrize("centered", [False, True])
def test_stretching_equals_pyriemann_tlscale(eeg, centered):
    from pyriemann.transfer import TLScale, encode_domains

    _, C, subject = eeg
    inputs = RiemannianRecentering().fit_transform(C, groups=subject) if centered else C
    _, y_enc = encode_domains(inputs, eeg[0].y, subject)
    reference = TLScale(target_domain="3", centered_data=centered)
    expected = reference.fit_transform(inputs.copy(), y_enc)  # TLScale writes into its input
    ours = RiemannianStretching(centered=centered).fit_transform(inputs, groups=subject)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-8 * scale)
    target = inputs[subject == 3]
    fitted = RiemannianStretching(centered=centered, target_group=3).fit(inputs, groups=subject)
    np.testing.assert_allclose(fitted.transform(target), reference.transform(target.copy()), rtol=0,
                               atol=1e-8 * scale)
    # Each group ends at the requested dispersion around its mean.
    for s in (1, 2, 3):
        group = ours[subject == s]
        centre = np.eye(N_CHANNELS) if centered else fitted.references_[s][0]
        assert np.mean(distance_riemann(centre, group) ** 2) == pytest.approx(1.0, rel=1e-8)


@pytest.mark.parametrize("metric", ["euclid", "riemann"])
def test_rotation_matches_pyriemann_tlrotate_cost(eeg, metric):
    from pyriemann.transfer import TLRotate, encode_domains

    _, C, subject = eeg
    y = eeg[0].y
    centred = RiemannianRecentering().fit_transform(C, groups=subject)
    keep = np.isin(subject, [1, 3])
    _, y_enc = encode_domains(centred[keep], y[keep], subject[keep])
    reference = TLRotate(target_domain="3", metric=metric, maxiter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyRiemann's descent stops at maxiter ("Convergence not reached")
        expected = reference.fit_transform(centred[keep].copy(), y_enc)
    ours = RiemannianRotation(target_group="3", metric=metric).fit(centred[keep], y_enc)
    Q = ours.references_["1"]
    np.testing.assert_allclose(Q @ Q.T, np.eye(N_CHANNELS), atol=1e-12)
    source = np.stack([mean_riemann(centred[(subject == 1) & (y == k)]) for k in (0, 1)])
    target = np.stack([mean_riemann(centred[(subject == 3) & (y == k)]) for k in (0, 1)])
    ours_cost = procrustes_loss(Q, source, target, metric=metric)
    theirs_cost = procrustes_loss(reference.rotations_["1"], source, target, metric=metric)
    # The cost is flat (two class means leave most of a rotation free), so the two descents end at
    # different rotations of equal cost; both improve on the identity by far.
    assert ours_cost == pytest.approx(theirs_cost, rel=1e-4)
    assert ours_cost < 0.5 * procrustes_loss(np.eye(N_CHANNELS), source, target, metric=metric)
    groups = subject[keep].astype(str)
    rotated = ours.transform(centred[keep], groups=groups)
    np.testing.assert_array_equal(rotated[groups == "3"], expected[groups == "3"])  # the target is left as it is
    np.testing.assert_allclose(rotated[groups == "1"], Q @ centred[keep][groups == "1"] @ Q.T, atol=1e-12)


def test_rotation_needs_labels_a_target_and_every_class(eeg):
    _, C, subject = eeg
    y = eeg[0].y
    with pytest.raises(ValueError, match="set target_group"):
        RiemannianRotation().fit(C, y, groups=subject)
    with pytest.raises(ValueError, match="needs class labels"):
        RiemannianRotation().fit(C, None)
    one_class = (subject != 1) | (y == 0)
    with pytest.raises(ValueError, match="group 1 has no trial of class"):
        RiemannianRotation(target_group=3).fit(C[one_class], y[one_class], groups=subject[one_class])
    with pytest.raises(ValueError, match="target_group 7 is not among"):
        RiemannianRecentering(target_group=7).fit(C, groups=subject)


def test_procrustes_undoes_most_of_a_known_rotation_and_beats_pyriemann(eeg):
    from pyriemann.optimization.grassmann import _get_rotation_manifold

    _, C, subject = eeg
    y = eeg[0].y
    centred = RiemannianRecentering().fit_transform(C[subject == 2])
    means = np.stack([mean_riemann(centred[y[subject == 2] == k]) for k in (0, 1)])
    R, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((N_CHANNELS, N_CHANNELS)))
    moved = R @ means @ R.T
    for metric in ("euclid", "riemann"):
        Q = procrustes_rotation(moved, means, metric=metric)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = _get_rotation_manifold(moved, means, metric=metric, maxiter=3000)
        cost = procrustes_loss(Q, moved, means, metric=metric)
        # The cost is not convex: both descents stop in a local minimum near R's inverse (cost 0), ours the lower.
        assert cost < 1e-3 * procrustes_loss(np.eye(N_CHANNELS), moved, means, metric=metric)
        assert cost <= procrustes_loss(theirs, moved, means, metric=metric)
        assert procrustes_loss(R.T, moved, means, metric=metric) < 1e-20


# -- running form --------------------------------------------------------------------------------------

def test_running_euclidean_reference_fed_window_by_window_is_the_batch_reference(eeg):
    data, _, subject = eeg
    X = data.X[subject == 2]
    running = RunningAlignment()
    for window in X:
        running.update(window)
    batch = EuclideanAlignment().fit(X)
    np.testing.assert_allclose(running.reference_, batch.references_[None], rtol=1e-12)
    np.testing.assert_allclose(running.transform(X), batch.transform(X), rtol=1e-10, atol=1e-12)
    assert running.n_windows_ == len(X)
    # The first N windows only: the same as the batch reference of those windows.
    first = RunningAlignment(max_windows=10).fit(X)
    np.testing.assert_allclose(first.reference_, EuclideanAlignment().fit(X[:10]).references_[None], rtol=1e-12)


def test_running_riemannian_mean_converges_to_the_karcher_mean(eeg):
    _, C, subject = eeg
    matrices = C[subject == 1]
    batch = mean_riemann(matrices)
    running = RunningAlignment(method="riemannian")
    errors = []
    for k, window in enumerate(matrices, 1):
        running.update(window)
        if k in (5, 15, len(matrices)):
            errors.append(float(distance_riemann(running.reference_, mean_riemann(matrices[:k]))))
    spread = float(np.sqrt(np.mean(distance_riemann(batch, matrices) ** 2)))
    # The recursive geodesic mean is not the Karcher mean, but stays a small fraction of the spread from it.
    assert max(errors) < 0.05 * spread, (errors, spread)
    assert float(distance_riemann(running.reference_, batch)) == pytest.approx(errors[-1])
    recentred = running.transform(matrices)
    assert float(distance_riemann(mean_riemann(recentred), np.eye(N_CHANNELS))) < 0.05 * spread
    # Exponential weighting follows a change of person: after subject 3's windows it sits nearer their mean.
    follow = RunningAlignment(method="riemannian", weighting="exponential", halflife=5).fit(matrices)
    follow.partial_fit(C[subject == 3])
    assert (distance_riemann(follow.reference_, mean_riemann(C[subject == 3]))
            < distance_riemann(follow.reference_, batch))


def test_running_alignment_refuses_bad_windows(eeg):
    data, _, _ = eeg
    running = RunningAlignment().fit(data.X[:4])
    with pytest.raises(ValueError, match="one window of shape"):
        running.update(data.X[:2])
    with pytest.raises(ValueError, match="channels"):
        running.update(data.X[0, :-1])
    with pytest.raises(ValueError, match="method"):
        RunningAlignment(method="other").fit(data.X[:4])
