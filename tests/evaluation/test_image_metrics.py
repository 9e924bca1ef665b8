"""Image-reconstruction metrics: definitions checked by hand, and the issue's class-average figures on digit69."""

import numpy as np
import pytest

from neurodecode.evaluation.image_metrics import (correlation_matrix, image_scores, mse, pixel_correlation,
                                                  retrieval_accuracy, ssim, two_way_identification)


def _images(n=6, side=10, seed=0):
    return np.random.default_rng(seed).random((n, side, side))


def test_pixel_correlation_is_pearson_per_image():
    true = _images()
    pred = 0.5 * true + 0.1 * _images(seed=1)
    expected = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(true, pred)]
    np.testing.assert_allclose(pixel_correlation(true, pred), expected, rtol=1e-12)
    np.testing.assert_allclose(pixel_correlation(true, 3 * true + 2), 1.0)
    np.testing.assert_allclose(pixel_correlation(true, -true), -1.0)
    constant = np.full_like(true, 0.3)
    np.testing.assert_array_equal(pixel_correlation(true, constant), 0.0)


def test_mse_per_image():
    true, pred = _images(), _images(seed=2)
    np.testing.assert_allclose(mse(true, pred), ((true - pred) ** 2).reshape(len(true), -1).mean(1))


def _ssim_by_loops(a, b, win=7, data_range=1.0):
    """SSIM written from its definition: every 7 x 7 window wholly inside the image, sample covariances."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for r in range(a.shape[0] - win + 1):
        for c in range(a.shape[1] - win + 1):
            x, y = a[r:r + win, c:c + win].ravel(), b[r:r + win, c:c + win].ravel()
            mx, my = x.mean(), y.mean()
            vx, vy = x.var(ddof=1), y.var(ddof=1)
            cxy = ((x - mx) * (y - my)).sum() / (x.size - 1)
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return np.mean(values)


def test_ssim_matches_its_definition_and_bounds():
    true = _images(3, 12)
    pred = np.clip(true + 0.2 * np.random.default_rng(5).standard_normal(true.shape), 0, 1)
    expected = [_ssim_by_loops(a, b) for a, b in zip(true, pred)]
    np.testing.assert_allclose(ssim(true, pred), expected, rtol=1e-10)
    np.testing.assert_allclose(ssim(true, true), 1.0)
    assert (ssim(true, pred) < 1).all()
    with pytest.raises(ValueError, match="each side >= 7"):
        ssim(true[:, :5, :5], pred[:, :5, :5])


def test_two_way_identification_counts_pairs():
    true = _images(4, 8)
    assert two_way_identification(true, true) == 1.0
    # Reconstruction i is stimulus (i + 1) mod 4: it always loses against that stimulus.
    shifted = np.roll(true, -1, axis=0)
    assert two_way_identification(true, shifted) <= 2 / 3
    r = correlation_matrix(shifted, true)
    wins = [r[i, i] > r[i, j] for i in range(4) for j in range(4) if j != i]
    assert two_way_identification(true, shifted) == pytest.approx(np.mean(wins))
    labels = np.array([0, 0, 1, 1])
    same = [r[i, i] > r[i, j] for i in range(4) for j in range(4) if j != i and labels[i] == labels[j]]
    assert two_way_identification(true, shifted, labels) == pytest.approx(np.mean(same))
    assert np.isnan(two_way_identification(true, true, np.arange(4)))
    # A constant reconstruction ties every pair: one half each.
    assert two_way_identification(true, np.zeros_like(true)) == 0.5


def test_retrieval_accuracy():
    rng = np.random.default_rng(3)
    true = rng.standard_normal((5, 4))
    assert retrieval_accuracy(true, true + 0.01 * rng.standard_normal(true.shape)) == 1.0
    derangement = true[[1, 2, 3, 4, 0]]
    assert retrieval_accuracy(true, derangement) == 0.0
    assert retrieval_accuracy(true, derangement, top_k=5) == 1.0
    with pytest.raises(ValueError, match="top_k"):
        retrieval_accuracy(true, true, top_k=6)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_correlation(_images(3), _images(4))
    bad = _images(3)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mse(bad, _images(3))


@pytest.mark.usefixtures("data_root")
def test_class_average_figures_of_the_issue():
    """The training average of the true class, scored on the 10 test trials: 0.736 / 0.411 / 0.0446."""
    from neurodecode.data.datasets.digit69 import load_digit69, load_digit69_images

    train, test = load_digit69("train"), load_digit69("test")
    train_images, test_images = load_digit69_images("train") / 255.0, load_digit69_images("test") / 255.0
    average = np.stack([train_images[train.y == k].mean(axis=0) for k in (0, 1)])[test.y]
    scores = image_scores(test_images, average, test.y)
    assert scores["pixel_correlation"] == pytest.approx(0.736, abs=5e-4)
    assert scores["ssim"] == pytest.approx(0.411, abs=5e-4)
    assert scores["mse"] == pytest.approx(0.0446, abs=5e-5)
    # Every test image of a class gets the same picture: within a class, every pair ties.
    assert scores["identification_same_class"] == 0.5
