"""fMRI-to-image: the diffusion prior, the brain-side regressors, FMRIToImage, and the pretrained-pipeline path.

Everything runs on the CPU at toy sizes (8 x 8 images, UNets of a few thousand weights, a few
DDIM steps): the tests check the mechanics and the contracts, not the quality of the images.
"""

import json
import pickle

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from neurodecode.evaluation.image_metrics import pixel_correlation
from neurodecode.models.fmri_image import ContrastiveLoss, DiffusionPrior, FMRIToImage, PretrainedImagePrior

TINY_PRIOR = dict(n_components=4, unet_channels=(8, 16), max_epochs=2, batch_size=32, n_inference_steps=4,
                  device="cpu")


def _strokes(n=64, side=8, seed=0):
    """Images of one bright bar each, horizontal or vertical, at a random place: a toy digit set."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, side, side))
    for i in range(n):
        k = rng.integers(1, side - 1)
        if i % 2:
            images[i, k - 1:k + 1, 1:-1] = 1.0
        else:
            images[i, 1:-1, k - 1:k + 1] = 1.0
    return images


def _voxels(images, n_voxels=40, noise=0.1, seed=1):
    """Voxels as a fixed random linear code of the pixels, plus noise (a toy encoding model)."""
    rng = np.random.default_rng(seed)
    code = rng.standard_normal((images[0].size, n_voxels))
    X = images.reshape(len(images), -1) @ code
    return X + noise * X.std() * rng.standard_normal(X.shape)


@pytest.fixture(scope="module")
def prior():
    return DiffusionPrior(**TINY_PRIOR).fit(_strokes())


def test_prior_trains_through_the_trainer_and_embeds(prior):
    assert len(prior.history_) == TINY_PRIOR["max_epochs"]
    assert all(np.isfinite(r["train_loss"]) for r in prior.history_)
    assert prior.image_shape_ == (8, 8)
    emb = prior.transform(_strokes(10, seed=3))
    assert emb.shape == (10, 4)
    # Whitened components: unit variance on the training images.
    np.testing.assert_allclose(prior.transform(_strokes()).std(axis=0, ddof=1), 1.0, rtol=1e-6)


def test_sampling_is_seeded_bounded_and_guided(prior):
    emb = prior.transform(_strokes(6, seed=4))
    first = prior.sample(emb, seed=0)
    assert first.shape == (6, 8, 8) and first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(prior.sample(emb, seed=0), first)
    assert not np.array_equal(prior.sample(emb, seed=1), first)
    assert not np.array_equal(prior.sample(emb, seed=0, guidance_scale=0.0), first)
    assert not np.allclose(prior.sample(emb, seed=0, guidance_scale=4.0), first)


def test_image_to_image_keeps_the_start_at_low_strength(prior):
    start = _strokes(8, seed=5)
    emb = prior.transform(start)
    near = prior.sample(emb, init_images=start, strength=0.25, seed=0)
    far = prior.sample(emb, seed=0)
    assert pixel_correlation(start, near).mean() > pixel_correlation(start, far).mean()
    assert pixel_correlation(start, near).mean() > 0.5


def test_prior_refuses_bad_input(prior):
    with pytest.raises(ValueError, match=r"expected \[0, 1\]"):
        DiffusionPrior(**TINY_PRIOR).fit(_strokes() * 2)
    with pytest.raises(ValueError, match="multiples of 4"):
        DiffusionPrior(**dict(TINY_PRIOR, unet_channels=(8, 8, 8))).fit(np.zeros((4, 6, 6)))
    with pytest.raises(ValueError, match="n_components"):
        DiffusionPrior(**dict(TINY_PRIOR, n_components=99)).fit(_strokes(8))
    with pytest.raises(ValueError, match="do not match the fitted shape"):
        prior.transform(np.zeros((2, 6, 6)))
    with pytest.raises(ValueError, match="embedding dimensions"):
        prior.sample(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="strength"):
        prior.sample(np.zeros((2, 4)), init_images=np.zeros((2, 8, 8)), strength=0.0)


def test_contrastive_loss_prefers_matched_pairs():
    torch.manual_seed(0)
    target = torch.randn(16, 6)
    loss = ContrastiveLoss(weight=1.0, temperature=0.1)
    matched = loss(target + 0.05 * torch.randn_like(target), target)
    shuffled = loss(target[torch.randperm(16)], target)
    assert matched < shuffled
    # Without the contrastive term it is the MSE.
    assert ContrastiveLoss(weight=0.0)(target * 0, target) == pytest.approx(float((target ** 2).mean()))


@pytest.fixture(scope="module")
def toy_fit(prior):
    images = _strokes(40, seed=7)
    X = _voxels(images)
    est = FMRIToImage(FrozenEstimator(prior), lowres_factor=2, n_inference_steps=4, device="cpu").fit(X[:32],
                                                                                                    images[:32])
    return est, X, images


def test_fmri_to_image_reconstructs_from_voxels(toy_fit, prior):
    est, X, images = toy_fit
    assert est.prior_.estimator is prior, "a frozen prior is used as it is"
    pred = est.predict(X[32:])
    assert pred.shape == (8, 8, 8) and 0 <= pred.min() and pred.max() <= 1
    # The first level (ridge to an upsampled 4 x 4 image) carries the image-specific part.
    assert pixel_correlation(images[32:], est.predict_lowres(X[32:])).mean() > 0.5
    assert est.predict_embedding(X[32:]).shape == (8, 4)
    np.testing.assert_array_equal(est.predict(X[32:]), pred)
    est.set_params(sampling_seed=3)
    assert not np.array_equal(est.predict(X[32:]), pred)
    est.set_params(sampling_seed=0)
    assert np.isfinite(est.score(X[32:], images[32:]))
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.predict(X[32:]), pred)


def test_fmri_to_image_fits_its_prior_and_the_network(toy_fit):
    _, X, images = toy_fit
    est = FMRIToImage(DiffusionPrior(**dict(TINY_PRIOR, max_epochs=1)), prior_images=_strokes(32, seed=9),
                      regressor="mlp", mlp_epochs=3, mlp_hidden=16, n_inference_steps=2, device="cpu")
    est.fit(X[:32], images[:32])
    assert isinstance(est.prior_, DiffusionPrior) and len(est.prior_.history_) == 1
    assert est.embedding_alpha_ is None and isinstance(est.embedding_model_, torch.nn.Module)
    assert est.predict(X[32:]).shape == (8, 8, 8)


def test_fmri_to_image_refuses_mistakes(toy_fit):
    est, X, images = toy_fit
    with pytest.raises(ValueError, match="32 trials but 31 images"):
        FMRIToImage(FrozenEstimator(est.prior_.estimator), device="cpu").fit(X[:32], images[:31])
    with pytest.raises(ValueError, match="fitted on 40"):
        est.predict(X[:, :-1])
    with pytest.raises(ValueError, match="lowres_factor"):
        FMRIToImage(FrozenEstimator(est.prior_.estimator), lowres_factor=9, device="cpu").fit(X, images)
    with pytest.raises(ValueError, match="draws"):
        FMRIToImage(FrozenEstimator(est.prior_.estimator), device="cpu").fit(X, np.zeros((40, 12, 12)))


# -- the pretrained-pipeline path ---------------------------------------------------------------

class _Projection:
    """A fixed random linear embedder of 8 x 8 images (stands in for the CLIP encoder)."""

    def __init__(self, dim):
        self.weights = np.random.default_rng(0).standard_normal((64, dim)) / 8

    def transform(self, images):
        return images.reshape(len(images), -1) @ self.weights


def _save_tiny_pipeline(root, cross_attention_dim=12):
    """A randomly initialised image-variation pipeline in the diffusers folder layout."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), norm_num_groups=8, cross_attention_dim=cross_attention_dim,
                                attention_head_dim=2, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        norm_num_groups=8, layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"))
    unet.save_pretrained(root / "unet")
    vae.save_pretrained(root / "vae")
    DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionImageVariationPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"]}))
    return root


def test_pretrained_pipeline_from_a_local_folder(tmp_path):
    root = _save_tiny_pipeline(tmp_path / "pipeline")
    images = _strokes(24, seed=11)
    generator = PretrainedImagePrior(root, embedder=_Projection(12), n_inference_steps=3, device="cpu").fit(images)
    assert generator.generated_size_ == 16 and generator.embed_dim_ == 12
    emb = generator.transform(images[:3])
    drawn = generator.sample(emb, seed=0)
    assert drawn.shape == (3, 8, 8) and 0 <= drawn.min() and drawn.max() <= 1
    np.testing.assert_array_equal(generator.sample(emb, seed=0), drawn)
    assert not np.array_equal(generator.sample(emb, seed=1), drawn)
    started = generator.sample(emb, init_images=images[:3], strength=0.5, seed=0)
    assert not np.array_equal(started, drawn)
    # The whole estimator on top of it: voxels -> predicted embeddings -> the pipeline draws.
    X = _voxels(images)
    est = FMRIToImage(generator, n_inference_steps=3, lowres_factor=2, device="cpu").fit(X[:20], images[:20])
    assert est.predict(X[20:]).shape == (4, 8, 8)
    assert est.predict_embedding(X[20:]).shape == (4, 12)


def test_pretrained_pipeline_refuses_an_incomplete_folder(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(ValueError, match=r"lacks the folder\(s\) \['vae', 'scheduler'\]"):
        PretrainedImagePrior(tmp_path, embedder=_Projection(12)).fit(_strokes(4))
    with pytest.raises(ValueError, match="image_encoder"):
        PretrainedImagePrior(tmp_path).fit(_strokes(4))


@pytest.mark.usefixtures("data_root")
def test_real_voxels_as_decoding_data():
    """digit69 trials passed as a DecodingData give what their arrays give; the first level beats chance."""
    from neurodecode.data.datasets.digit69 import load_digit69, load_digit69_images
    from neurodecode.evaluation.image_metrics import two_way_identification

    train, test = load_digit69("train"), load_digit69("test")
    images, test_images = load_digit69_images("train"), load_digit69_images("test") / 255.0
    prior = DiffusionPrior(**dict(TINY_PRIOR, max_epochs=1)).fit(images[:32])
    est = FMRIToImage(FrozenEstimator(prior), n_inference_steps=2, device="cpu").fit(train, images)
    by_array = FMRIToImage(FrozenEstimator(prior), n_inference_steps=2, device="cpu").fit(train.X, images)
    np.testing.assert_array_equal(est.predict(test), by_array.predict(test.X))
    assert est.predict(test).shape == (10, 28, 28)
    # The 7 x 7 ridge start alone identifies most test images (the raw-pixel ridge: 0.92).
    assert two_way_identification(test_images, est.predict_lowres(test)) > 0.7


def test_diffusers_is_imported_only_when_a_prior_is_built():
    import subprocess
    import sys

    code = ("import sys, neurodecode.models.fmri_image, neurodecode.evaluation.image_metrics; "
            "print('diffusers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
