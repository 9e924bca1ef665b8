"""An image prior: a conditional UNet trained as a DDPM, sampled with DDIM and classifier-free guidance.

The UNet and the noise schedules are ``diffusers``' (``UNet2DModel``, ``DDPMScheduler``,
``DDIMScheduler``), imported only when a prior is built, so that the package imports without them.
The conditioning is an image embedding learned from the same images (principal components,
whitened): the denoiser adds a learned projection of it to the timestep embedding, and sees a
learned "null" embedding instead on a share ``p_uncond`` of training steps, which is what
classifier-free guidance needs at sampling time. Training goes through the one
:class:`~neurodecode.training.Trainer`: an ``augment`` callable noises each batch on the device
(random timestep, Gaussian noise, condition dropped or kept) and the loss is the MSE on the noise.
"""

from __future__ import annotations

import copy
import time
import math
import numbers
import random

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ...training import Trainer, TrainConfig, resolve_device
from ._images import check_features, check_images, check_seed

__all__ = ["DiffusionPrior"]


def _diffusers():
    try:
        import diffusers
    except ImportError as err:  # pragma: no cover - the pin installs it
        raise ImportError("the diffusion prior needs the 'diffusers' package (pip install diffusers)") from err
    return diffusers


def _groups(channels) -> int:
    return math.gcd(*[int(c) for c in channels], 32)


class _Denoiser(nn.Module):
    """``diffusers.UNet2DModel`` predicting the noise, conditioned on an embedding (or a learned null one).

    The Trainer hands a model one tensor, so its input is packed: per row, the noisy image's pixels,
    the timestep, the embedding, and a flag (1 keep the embedding, 0 use the null one).
    """

    def __init__(self, image_shape, embed_dim: int, channels=(32, 64, 64), layers_per_block: int = 1,
                 attention: bool = False):
        super().__init__()
        diffusers = _diffusers()
        channels = tuple(int(c) for c in channels)
        time_dim = 4 * channels[0]
        down = ["DownBlock2D"] * len(channels)
        up = ["UpBlock2D"] * len(channels)
        if attention:  # self-attention at the coarsest scale only, where it is cheap
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        self.image_shape = tuple(image_shape)
        self.embed_dim = int(embed_dim)
        self.unet = diffusers.UNet2DModel(sample_size=self.image_shape, in_channels=1, out_channels=1,
                                          block_out_channels=channels, layers_per_block=int(layers_per_block),
                                          down_block_types=tuple(down), up_block_types=tuple(up),
                                          norm_num_groups=_groups(channels), attention_head_dim=8,
                                          class_embed_type="identity")
        self.condition = nn.Sequential(nn.Linear(self.embed_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.null = nn.Parameter(torch.zeros(self.embed_dim))

    def denoise(self, x, t, embedding, keep):
        chosen = torch.where(keep[:, None] > 0.5, embedding, self.null.to(embedding.dtype).expand_as(embedding))
        return self.unet(x, t, class_labels=self.condition(chosen)).sample

    def forward(self, packed):
        n_pixels = self.image_shape[0] * self.image_shape[1]
        x = packed[:, :n_pixels].reshape(-1, 1, *self.image_shape)
        t = packed[:, n_pixels].round().long()
        embedding = packed[:, n_pixels + 1:n_pixels + 1 + self.embed_dim]
        keep = packed[:, -1]
        return self.denoise(x, t, embedding, keep).flatten(1)


class _Noising:
    """The DDPM forward process on each training batch: ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps``.

    Input rows hold the clean image (scaled to [-1, 1]) then its embedding; output rows are packed
    for :class:`_Denoiser`, and the target is the noise ``eps``. Draws come from torch's generator,
    which the Trainer seeds.
    """

    def __init__(self, alphas_cumprod: torch.Tensor, n_pixels: int, p_uncond: float):
        self.alphas_cumprod = alphas_cumprod.float()
        self.n_pixels = int(n_pixels)
        self.p_uncond = float(p_uncond)

    def __call__(self, x, y):
        x0, embedding = x[:, :self.n_pixels], x[:, self.n_pixels:]
        n = len(x)
        alphas = self.alphas_cumprod.to(x.device)
        t = torch.randint(0, len(alphas), (n,), device=x.device)
        noise = torch.randn_like(x0)
        a = alphas[t][:, None]
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        keep = (torch.rand(n, device=x.device) >= self.p_uncond).to(x.dtype)
        return torch.cat([noisy, t[:, None].to(x.dtype), embedding, keep[:, None]], dim=1), noise


def _mse(outputs, targets):
    return nn.functional.mse_loss(outputs, targets)


class DiffusionPrior(TransformerMixin, BaseEstimator):
    """A generator of images conditioned on an embedding of images, learned from unlabelled images.

    ``fit(images)`` learns the embedding (whitened principal components of the pixels) and trains a
    conditional UNet as a denoising diffusion model (DDPM, epsilon prediction) on the images and
    their embeddings. ``transform(images)`` gives embeddings; ``sample(embeddings)`` draws images
    with DDIM, classifier-free guidance, and optionally from a starting image (image-to-image).

    Parameters
    ----------
    n_components : int
        Size of the embedding (principal components kept).
    unet_channels : tuple of int
        Channels of the UNet's resolution levels; each level but the last halves the image side,
        so a 28 x 28 image takes at most 3 levels (28, 14, 7).
    layers_per_block : int
        Residual blocks per level.
    attention : bool
        Self-attention at the coarsest level.
    n_train_timesteps : int
        Steps of the DDPM noise schedule.
    beta_schedule : {"squaredcos_cap_v2", "linear", "scaled_linear"}
        The schedule (``"squaredcos_cap_v2"``: the cosine schedule of Nichol & Dhariwal 2021).
    p_uncond : float
        Share of training steps that see the null embedding (for classifier-free guidance).
    max_epochs, batch_size, lr, weight_decay :
        The training run (:class:`~neurodecode.training.TrainConfig`); no validation split, the
        whole run is used (the noise loss is too noisy to stop on).
    guidance_scale : float
        Default guidance of :meth:`sample`: 0 ignores the embedding, 1 is the plain conditional
        model, larger values follow the embedding more closely.
    n_inference_steps : int
        Default DDIM steps of :meth:`sample`.
    device : str
        ``"auto"``: CUDA when torch sees it, else the CPU (training and sampling).
    precision : {"auto", "bf16", "fp32"}
        Training precision (sampling runs in float32).
    compile : bool or "auto"
        ``torch.compile`` of the training (see :class:`~neurodecode.training.TrainConfig`). Off by
        default: compiling the UNet costs about as long as training a small prior.
    random_state : int
        Seeds the weights and the training draws.
    verbose : bool

    Attributes
    ----------
    image_shape_ : tuple of int
    pca_ : sklearn.decomposition.PCA
        The embedding, fitted on the images' pixels (whitened: unit variance per component).
    denoiser_ : torch.nn.Module
        The trained denoiser, on the CPU, in eval mode.
    alphas_cumprod_ : ndarray, shape (n_train_timesteps,)
    history_ : list of dict
        The trainer's per-epoch records.
    train_seconds_ : float
        Wall-clock seconds of the UNet's training.
    device_ : str
    """

    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "unet_channels": [tuple, list],
        "layers_per_block": [Interval(numbers.Integral, 1, None, closed="left")],
        "attention": ["boolean"],
        "n_train_timesteps": [Interval(numbers.Integral, 2, None, closed="left")],
        "beta_schedule": [StrOptions({"squaredcos_cap_v2", "linear", "scaled_linear"})],
        "p_uncond": [Interval(numbers.Real, 0, 1, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "guidance_scale": [Interval(numbers.Real, 0, None, closed="left")],
        "n_inference_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "precision": [StrOptions({"auto", "bf16", "fp32"})],
        "compile": ["boolean", StrOptions({"auto"})],
        "random_state": [Interval(numbers.Integral, 0, None, closed="left")],
        "verbose": ["boolean"],
    }

    def __init__(self, n_components=16, *, unet_channels=(32, 64, 64), layers_per_block=1, attention=False,
                 n_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", p_uncond=0.1, max_epochs=20,
                 batch_size=128, lr=1e-3, weight_decay=0.0, guidance_scale=2.0, n_inference_steps=50, device="auto",
                 precision="auto", compile=False, random_state=0, verbose=False):
        self.n_components = n_components
        self.unet_channels = unet_channels
        self.layers_per_block = layers_per_block
        self.attention = attention
        self.n_train_timesteps = n_train_timesteps
        self.beta_schedule = beta_schedule
        self.p_uncond = p_uncond
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.guidance_scale = guidance_scale
        self.n_inference_steps = n_inference_steps
        self.device = device
        self.precision = precision
        self.compile = compile
        self.random_state = random_state
        self.verbose = verbose

    def _check_architecture(self, image_shape):
        channels = tuple(self.unet_channels)
        if not channels or not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) and c > 0
                                   for c in channels):
            raise ValueError(f"{type(self).__name__}: unet_channels must be positive integers; got {channels!r}")
        factor = 2 ** (len(channels) - 1)
        if image_shape[0] % factor or image_shape[1] % factor:
            raise ValueError(f"{type(self).__name__}: {len(channels)} UNet levels halve the image side "
                             f"{len(channels) - 1} times, so its sides must be multiples of {factor}; images are "
                             f"{image_shape}: use fewer unet_channels")
        return channels

    def _scheduler(self, kind: str):
        diffusers = _diffusers()
        cls = diffusers.DDPMScheduler if kind == "ddpm" else diffusers.DDIMScheduler
        # clip_sample keeps each step's predicted clean image within the pixel range [-1, 1].
        return cls(num_train_timesteps=int(self.n_train_timesteps), beta_schedule=self.beta_schedule,
                   clip_sample=True, prediction_type="epsilon")

    def fit(self, X, y=None):
        """Learn the embedding and train the denoiser.

        Parameters
        ----------
        X : array-like, shape (n_images, height, width)
            Images, uint8 (0-255) or floats in [0, 1].
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        name = type(self).__name__
        images = check_images(X, name)
        image_shape = images.shape[1:]
        channels = self._check_architecture(image_shape)
        n_pixels = image_shape[0] * image_shape[1]
        if self.n_components > min(len(images), n_pixels):
            raise ValueError(f"{name}: n_components={self.n_components} exceeds min(n_images, n_pixels) = "
                             f"{min(len(images), n_pixels)}")
        flat = images.reshape(len(images), -1)
        pca = PCA(self.n_components, whiten=True, random_state=int(self.random_state)).fit(flat)
        embeddings = pca.transform(flat)
        scheduler = self._scheduler("ddpm")
        config = TrainConfig(max_epochs=int(self.max_epochs), batch_size=int(self.batch_size), lr=float(self.lr),
                             weight_decay=float(self.weight_decay), val_fraction=0.0, patience=None,
                             device=self.device, precision=self.precision, compile=self.compile,
                             seed=int(self.random_state),
                             verbose=bool(self.verbose)).validate()
        packed = np.concatenate([flat * 2 - 1, embeddings], axis=1).astype(np.float32)
        device = resolve_device(config.device)
        numpy_state, python_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                torch.manual_seed(int(self.random_state))
                denoiser = _Denoiser(image_shape, self.n_components, channels, self.layers_per_block, self.attention)
                trainer = Trainer(config, loss_fn=_mse,
                                  augment=_Noising(scheduler.alphas_cumprod, n_pixels, self.p_uncond))
                started = time.perf_counter()
                result = trainer.fit(denoiser, packed, np.zeros(len(packed), dtype=np.float32))
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                self.train_seconds_ = time.perf_counter() - started
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)
        self.image_shape_ = tuple(image_shape)
        self.pca_ = pca
        self.denoiser_ = result.model.cpu().eval()
        self.alphas_cumprod_ = scheduler.alphas_cumprod.numpy().astype(np.float64)
        self.history_ = result.history
        self.device_ = str(result.device)
        return self

    def transform(self, X):
        """Embeddings of images.

        Parameters
        ----------
        X : array-like, shape (n_images, height, width)

        Returns
        -------
        embeddings : ndarray, shape (n_images, n_components)
        """
        check_is_fitted(self, "denoiser_")
        images = check_images(X, type(self).__name__, shape=self.image_shape_)
        return self.pca_.transform(images.reshape(len(images), -1))

    def inverse_transform(self, X):
        """Images drawn from embeddings (:meth:`sample` with its defaults)."""
        return self.sample(X)

    def sample(self, embeddings, *, init_images=None, strength=1.0, guidance_scale=None, n_inference_steps=None,
               seed=0, batch_size=256):
        """Draw one image per embedding with DDIM (deterministic given ``seed``).

        Parameters
        ----------
        embeddings : array-like, shape (n_images, n_components)
        init_images : array-like, shape (n_images, height, width), or None
            Starting images in [0, 1] (image-to-image): noised to the DDIM step ``strength`` of the
            way up the schedule, then denoised. None starts from pure noise.
        strength : float in (0, 1]
            How much of the schedule is run from ``init_images`` (1: all of it, the start image is
            then almost wholly noise).
        guidance_scale : float or None
            Classifier-free guidance ``w``: ``eps = eps_null + w (eps_cond - eps_null)``. None: the
            estimator's.
        n_inference_steps : int or None
            DDIM steps over the whole schedule. None: the estimator's.
        seed : int
            Seeds the starting noise (images differ between seeds, not between calls).
        batch_size : int

        Returns
        -------
        images : ndarray, shape (n_images, height, width), float64 in [0, 1]
        """
        check_is_fitted(self, "denoiser_")
        name = type(self).__name__
        embeddings = check_features(embeddings, name, n_features=self.n_components, what="embedding dimensions")
        guidance = float(self.guidance_scale if guidance_scale is None else guidance_scale)
        steps = int(self.n_inference_steps if n_inference_steps is None else n_inference_steps)
        if not guidance >= 0 or steps < 1:
            raise ValueError(f"{name}: guidance_scale must be >= 0 and n_inference_steps >= 1; got {guidance}, "
                             f"{steps}")
        if not 0 < float(strength) <= 1:
            raise ValueError(f"{name}: strength must be in (0, 1]; got {strength!r}")
        seed = check_seed(seed, "seed", name)
        init = None
        if init_images is not None:
            init = check_images(init_images, name, shape=self.image_shape_)
            if len(init) != len(embeddings):
                raise ValueError(f"{name}: {len(init)} init_images for {len(embeddings)} embeddings")
        device = resolve_device(self.device)
        denoiser = self.denoiser_ if device.type == "cpu" else copy.deepcopy(self.denoiser_).to(device)
        scheduler = self._scheduler("ddim")
        scheduler.set_timesteps(steps, device=device)
        timesteps = scheduler.timesteps
        start = min(int(round(steps * (1 - float(strength)))), steps - 1) if init is not None else 0
        generator = torch.Generator(device="cpu").manual_seed(seed)
        out = []
        for first in range(0, len(embeddings), int(batch_size)):
            emb = torch.as_tensor(embeddings[first:first + batch_size], dtype=torch.float32, device=device)
            n = len(emb)
            noise = torch.randn((n, 1, *self.image_shape_), generator=generator).to(device)
            if init is None:
                x = noise
            else:
                x0 = torch.as_tensor(init[first:first + batch_size, None] * 2 - 1, dtype=torch.float32, device=device)
                x = scheduler.add_noise(x0, noise, timesteps[start:start + 1].expand(n))
            both = torch.cat([emb, emb])
            keep = torch.cat([torch.ones(n, device=device), torch.zeros(n, device=device)])
            with torch.no_grad():
                for t in timesteps[start:]:
                    eps = denoiser.denoise(torch.cat([x, x]), t.expand(2 * n), both, keep)
                    cond, null = eps[:n], eps[n:]
                    eps = null + guidance * (cond - null)
                    x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            out.append(((x[:, 0].float().cpu().numpy() + 1) / 2).clip(0, 1))
        return np.concatenate(out).astype(np.float64)
