"""``FMRIToImage``: voxels in, images out, through an image prior conditioned on predicted embeddings."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..._utils.checks import unpack_data
from ._images import check_features, check_images, check_seed, pool, resize
from .brain import fit_mlp, fit_ridge, predict_mlp
from .prior import DiffusionPrior

__all__ = ["FMRIToImage"]

#: Ridge penalties searched by leave-one-out on the training trials (standardised voxels).
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-1, 6, 15))


class FMRIToImage(RegressorMixin, BaseEstimator):
    """Reconstruct seen images from voxel patterns (Brain-Diffuser / MindEye in two levels, small).

    ``fit(X, images)``:

    1. the image prior (a :class:`DiffusionPrior`, or any object with its ``fit``/``transform``/
       ``sample`` interface such as :class:`PretrainedImagePrior`) is fitted on ``prior_images``
       (or, without them, on the training images); a prior wrapped in
       ``sklearn.frozen.FrozenEstimator`` is used as it is, which lets a prior trained once serve
       many fits (cross-validation, seeds);
    2. the training images' embeddings (``prior.transform``) are regressed on the standardised
       voxels: ridge (penalty by leave-one-out on the training trials) or a small network with
       regression + contrastive losses;
    3. a low-resolution version of the images (``lowres_factor``-pixel block means) is regressed on
       the voxels by ridge, the first level: its prediction, upsampled, is where sampling starts.

    ``predict(X)`` predicts both, then runs DDIM from the noised low-resolution image
    (image-to-image with ``strength``), guided towards the predicted embedding
    (``guidance_scale``), and averages ``n_samples`` draws.

    Parameters
    ----------
    prior : DiffusionPrior, PretrainedImagePrior, FrozenEstimator or None
        None: ``DiffusionPrior(random_state=random_state)``.
    prior_images : array-like of shape (n_images, height, width) or None
        Unlabelled images to fit the prior on (ignored for a frozen or pretrained prior). None:
        the training images.
    regressor : {"ridge", "mlp"}
        Voxels to embedding.
    alphas : tuple of float
        Ridge penalties searched (both ridge regressions).
    lowres_factor : int
        Side of the blocks averaged for the low-resolution image (4 on 28 x 28: a 7 x 7 image).
    strength : float in (0, 1]
        Share of the DDIM schedule run from the low-resolution start; 1 starts from noise only.
    guidance_scale : float
        Classifier-free guidance towards the predicted embedding.
    n_inference_steps : int
        DDIM steps over the whole schedule.
    n_samples : int
        Draws averaged per trial (seeds ``sampling_seed``, ``sampling_seed + 1``...).
    sampling_seed : int
    mlp_hidden, mlp_dropout, contrastive_weight, temperature, mlp_epochs, mlp_lr, mlp_weight_decay :
        The network of ``regressor="mlp"`` (see :func:`~neurodecode.models.fmri_image.brain.fit_mlp`).
    device : str
        ``"auto"``: CUDA when torch sees it (the network; the prior has its own ``device``).
    random_state : int
        Seeds the network and a default prior.

    Attributes
    ----------
    prior_ : object
        The fitted prior.
    image_shape_ : tuple of int
    n_features_in_ : int
    voxel_mean_, voxel_scale_ : ndarray, shape (n_features,)
        Standardisation of the voxels, from the training trials.
    embedding_model_ : RidgeCV or torch.nn.Module
    embedding_alpha_ : float or None
        The penalty ridge chose (None for the network).
    lowres_model_ : RidgeCV
    lowres_alpha_ : float
    """

    _parameter_constraints = {
        "prior": "no_validation",
        "prior_images": [None, "array-like"],
        "regressor": [StrOptions({"ridge", "mlp"})],
        "alphas": ["array-like"],
        "lowres_factor": [Interval(numbers.Integral, 1, None, closed="left")],
        "strength": [Interval(numbers.Real, 0, 1, closed="right")],
        "guidance_scale": [Interval(numbers.Real, 0, None, closed="left")],
        "n_inference_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_samples": [Interval(numbers.Integral, 1, None, closed="left")],
        "sampling_seed": [Interval(numbers.Integral, 0, None, closed="left")],
        "mlp_hidden": [Interval(numbers.Integral, 1, None, closed="left")],
        "mlp_dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "contrastive_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "mlp_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "mlp_lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "mlp_weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "device": [str],
        "random_state": [Interval(numbers.Integral, 0, None, closed="left")],
    }

    def __init__(self, prior=None, prior_images=None, *, regressor="ridge", alphas=DEFAULT_ALPHAS, lowres_factor=4,
                 strength=0.7, guidance_scale=2.0, n_inference_steps=50, n_samples=1, sampling_seed=0,
                 mlp_hidden=256, mlp_dropout=0.3, contrastive_weight=1.0, temperature=0.1, mlp_epochs=300,
                 mlp_lr=1e-3, mlp_weight_decay=1e-2, device="auto", random_state=0):
        self.prior = prior
        self.prior_images = prior_images
        self.regressor = regressor
        self.alphas = alphas
        self.lowres_factor = lowres_factor
        self.strength = strength
        self.guidance_scale = guidance_scale
        self.n_inference_steps = n_inference_steps
        self.n_samples = n_samples
        self.sampling_seed = sampling_seed
        self.mlp_hidden = mlp_hidden
        self.mlp_dropout = mlp_dropout
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        self.mlp_epochs = mlp_epochs
        self.mlp_lr = mlp_lr
        self.mlp_weight_decay = mlp_weight_decay
        self.device = device
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _voxels(self, X, *, reset: bool) -> np.ndarray:
        name = type(self).__name__
        X = check_features(unpack_data(X)[0], name, n_features=None if reset else self.n_features_in_,
                           what="voxels")
        return X

    def fit(self, X, y):
        """Fit the prior (unless frozen), the embedding regressor and the low-resolution regressor.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_voxels)
        y : array-like, shape (n_trials, height, width)
            The images seen, uint8 or floats in [0, 1].

        Returns
        -------
        self
        """
        self._validate_params()
        name = type(self).__name__
        X = self._voxels(X, reset=True)
        images = check_images(y, name)
        if len(images) != len(X):
            raise ValueError(f"{name}: {len(X)} trials but {len(images)} images")
        if len(X) < 3:
            raise ValueError(f"{name}: needs at least 3 trials to choose the ridge penalty; got {len(X)}")
        alphas = tuple(self.alphas)
        if not alphas or not all(isinstance(a, numbers.Real) and a > 0 for a in alphas):
            raise ValueError(f"{name}: alphas must be positive numbers; got {self.alphas!r}")
        factor = int(self.lowres_factor)
        if factor > min(images.shape[1:]):
            raise ValueError(f"{name}: lowres_factor={factor} exceeds the image side {min(images.shape[1:])}")
        prior = clone(self.prior) if self.prior is not None else DiffusionPrior(random_state=int(self.random_state))
        prior_images = images if self.prior_images is None else check_images(self.prior_images, name)
        prior.fit(prior_images, None)
        shape = tuple(prior.image_shape_)
        if shape != images.shape[1:]:
            raise ValueError(f"{name}: the prior draws {shape} images but the training images are "
                             f"{images.shape[1:]}")
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        Z = (X - mean) / scale
        embeddings = np.asarray(prior.transform(images), dtype=np.float64)
        if self.regressor == "ridge":
            model = fit_ridge(Z, embeddings, alphas)
            alpha = float(model.alpha_)
        else:
            model = fit_mlp(Z, embeddings, hidden=self.mlp_hidden, dropout=self.mlp_dropout,
                            contrastive_weight=self.contrastive_weight, temperature=self.temperature,
                            max_epochs=self.mlp_epochs, lr=self.mlp_lr, weight_decay=self.mlp_weight_decay,
                            batch_size=min(32, len(Z)), device=self.device, seed=int(self.random_state))
            alpha = None
        low = pool(images, factor)
        lowres = fit_ridge(Z, low.reshape(len(low), -1), alphas)
        self.prior_ = prior
        self.image_shape_ = shape
        self.n_features_in_ = X.shape[1]
        self.voxel_mean_, self.voxel_scale_ = mean, scale
        self.embedding_model_, self.embedding_alpha_ = model, alpha
        self.lowres_model_, self.lowres_alpha_ = lowres, float(lowres.alpha_)
        self._lowres_shape = low.shape[1:]
        return self

    def _standardised(self, X) -> np.ndarray:
        check_is_fitted(self, "embedding_model_")
        return (self._voxels(X, reset=False) - self.voxel_mean_) / self.voxel_scale_

    def predict_embedding(self, X) -> np.ndarray:
        """The image embeddings predicted from voxels.

        Returns
        -------
        embeddings : ndarray, shape (n_trials, n_dims)
        """
        Z = self._standardised(X)
        if isinstance(self.embedding_model_, torch.nn.Module):
            return predict_mlp(self.embedding_model_, Z)
        return self.embedding_model_.predict(Z)

    def predict_lowres(self, X) -> np.ndarray:
        """The first level: the low-resolution image predicted by ridge, upsampled to the image size.

        Returns
        -------
        images : ndarray, shape (n_trials, height, width), in [0, 1]
        """
        Z = self._standardised(X)
        low = self.lowres_model_.predict(Z).reshape(len(Z), *self._lowres_shape)
        return np.clip(resize(np.clip(low, 0, 1), self.image_shape_), 0, 1)

    def predict(self, X) -> np.ndarray:
        """Reconstructed images.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_voxels)

        Returns
        -------
        images : ndarray, shape (n_trials, height, width), float64 in [0, 1]
        """
        embeddings = self.predict_embedding(X)
        start = self.predict_lowres(X)
        seed = check_seed(self.sampling_seed, "sampling_seed", type(self).__name__)
        draws = [self.prior_.sample(embeddings, init_images=start, strength=float(self.strength),
                                    guidance_scale=float(self.guidance_scale),
                                    n_inference_steps=int(self.n_inference_steps), seed=seed + k)
                 for k in range(int(self.n_samples))]
        return np.mean(draws, axis=0)

    def score(self, X, y, sample_weight=None) -> float:
        """R^2 of the reconstructed pixels, weighted by each pixel's variance (higher is better).

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_voxels)
        y : array-like, shape (n_trials, height, width)
        sample_weight : array-like of shape (n_trials,) or None

        Returns
        -------
        score : float
        """
        check_is_fitted(self, "embedding_model_")
        images = check_images(y, type(self).__name__, shape=self.image_shape_)
        pred = self.predict(X)
        return float(r2_score(images.reshape(len(images), -1), pred.reshape(len(pred), -1),
                              sample_weight=sample_weight, multioutput="variance_weighted"))
