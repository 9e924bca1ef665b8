"""A pretrained image-variation generator, read from a local folder, as the prior of :class:`FMRIToImage`.

An image-variation pipeline (Stable Diffusion image variations and its kin) draws an image from
the embedding of another image: a UNet with cross-attention on that embedding, denoising VAE
latents. Here the embedding comes from voxels instead. The folder has the diffusers layout
(``unet/``, ``vae/``, ``scheduler/``, and ``image_encoder/`` when embeddings are computed by the
pipeline's own CLIP encoder); nothing is downloaded. The denoising loop is written out (DDIM,
classifier-free guidance against a zero embedding, as those pipelines do, optional
image-to-image start), so only the components are loaded, not a pipeline class.
"""

from __future__ import annotations

import copy
import numbers
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ...training import resolve_device
from ._images import check_features, check_images, check_seed, resize
from .prior import _diffusers

__all__ = ["PretrainedImagePrior"]

#: CLIP's pixel normalisation (what the image processors of image-variation pipelines apply).
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PretrainedImagePrior(TransformerMixin, BaseEstimator):
    """An image-variation diffusion model from a local folder, with the interface of :class:`DiffusionPrior`.

    ``fit(images)`` trains nothing: it loads the components and records the images' shape (the
    drawn images are converted to grey and resized to it). ``transform(images)`` gives the
    embeddings the UNet is conditioned on; ``sample(embeddings)`` draws images from them.

    Parameters
    ----------
    path : str or path-like
        Folder holding ``unet/``, ``vae/``, ``scheduler/`` (and ``image_encoder/`` when
        ``embedder`` is None).
    embedder : object or None
        What maps images (n, height, width) in [0, 1] to embeddings of the UNet's
        ``cross_attention_dim``: an object with ``transform`` or a callable. None: the folder's
        CLIP image encoder (needs the ``transformers`` package).
    guidance_scale : float
        Default guidance of :meth:`sample`.
    n_inference_steps : int
        Default DDIM steps of :meth:`sample`.
    device : str
        ``"auto"``: CUDA when torch sees it.

    Attributes
    ----------
    unet_, vae_ : torch.nn.Module
        On the CPU, in eval mode.
    scheduler_config_ : dict
    image_encoder_ : torch.nn.Module or None
    image_shape_ : tuple of int
    generated_size_ : int
        Side of the images the pipeline draws (UNet sample size x VAE scale factor).
    embed_dim_ : int
    """

    _parameter_constraints = {
        "path": [str, Path],
        "embedder": "no_validation",
        "guidance_scale": [numbers.Real],
        "n_inference_steps": [numbers.Integral],
        "device": [str],
    }

    def __init__(self, path, embedder=None, *, guidance_scale=3.0, n_inference_steps=50, device="auto"):
        self.path = path
        self.embedder = embedder
        self.guidance_scale = guidance_scale
        self.n_inference_steps = n_inference_steps
        self.device = device

    def fit(self, X, y=None):
        """Load the components and record the images' shape.

        Parameters
        ----------
        X : array-like, shape (n_images, height, width)
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        name = type(self).__name__
        images = check_images(X, name)
        root = Path(self.path)
        needed = ["unet", "vae", "scheduler"] + (["image_encoder"] if self.embedder is None else [])
        missing = [part for part in needed if not (root / part).is_dir()]
        if missing:
            raise ValueError(f"{name}: {root} lacks the folder(s) {missing} of an image-variation pipeline")
        diffusers = _diffusers()
        self.unet_ = diffusers.UNet2DConditionModel.from_pretrained(root / "unet").eval()
        self.vae_ = diffusers.AutoencoderKL.from_pretrained(root / "vae").eval()
        self.scheduler_config_ = dict(diffusers.DDIMScheduler.load_config(root / "scheduler"))
        self.image_encoder_ = None
        if self.embedder is None:
            try:
                from transformers import CLIPVisionModelWithProjection
            except ImportError as err:
                raise ImportError(f"{name}: the folder's CLIP image encoder needs the 'transformers' package; "
                                  "install it, or pass embedder=...") from err
            self.image_encoder_ = CLIPVisionModelWithProjection.from_pretrained(root / "image_encoder").eval()
            self.embed_dim_ = int(self.image_encoder_.config.projection_dim)
        else:
            if not (hasattr(self.embedder, "transform") or callable(self.embedder)):
                raise ValueError(f"{name}: embedder must have transform() or be callable; got {self.embedder!r}")
            self.embed_dim_ = int(self.unet_.config.cross_attention_dim)
        scale = 2 ** (len(self.vae_.config.block_out_channels) - 1)
        self.generated_size_ = int(self.unet_.config.sample_size) * scale
        self.image_shape_ = tuple(images.shape[1:])
        return self

    def transform(self, X):
        """Embeddings of images, as the UNet is conditioned on.

        Returns
        -------
        embeddings : ndarray, shape (n_images, embed_dim_)
        """
        check_is_fitted(self, "unet_")
        name = type(self).__name__
        images = check_images(X, name, shape=self.image_shape_)
        if self.image_encoder_ is None:
            out = self.embedder.transform(images) if hasattr(self.embedder, "transform") else self.embedder(images)
            out = check_features(out, f"{name} embedder", what="embedding dimensions")
            if out.shape != (len(images), self.embed_dim_):
                raise ValueError(f"{name}: the embedder gave shape {out.shape}; the UNet needs "
                                 f"({len(images)}, {self.embed_dim_})")
            return out
        side = int(self.image_encoder_.config.image_size)
        rgb = np.repeat(resize(images, (side, side))[:, None], 3, axis=1)
        pixels = (torch.as_tensor(rgb, dtype=torch.float32) - torch.tensor(_CLIP_MEAN)[:, None, None]) / torch.tensor(
            _CLIP_STD)[:, None, None]
        with torch.no_grad():
            return self.image_encoder_(pixel_values=pixels).image_embeds.double().numpy()

    def sample(self, embeddings, *, init_images=None, strength=1.0, guidance_scale=None, n_inference_steps=None,
               seed=0, batch_size=16):
        """Draw one image per embedding (as :meth:`DiffusionPrior.sample`).

        Returns
        -------
        images : ndarray, shape (n_images, height, width), grey, float64 in [0, 1]
        """
        check_is_fitted(self, "unet_")
        name = type(self).__name__
        embeddings = check_features(embeddings, name, n_features=self.embed_dim_, what="embedding dimensions")
        guidance = float(self.guidance_scale if guidance_scale is None else guidance_scale)
        steps = int(self.n_inference_steps if n_inference_steps is None else n_inference_steps)
        if not 0 < float(strength) <= 1 or steps < 1 or guidance < 0:
            raise ValueError(f"{name}: strength must be in (0, 1], n_inference_steps >= 1 and guidance_scale >= 0")
        seed = check_seed(seed, "seed", name)
        init = None if init_images is None else check_images(init_images, name, shape=self.image_shape_)
        diffusers = _diffusers()
        device = resolve_device(self.device)
        unet = self.unet_ if device.type == "cpu" else copy.deepcopy(self.unet_).to(device)
        vae = self.vae_ if device.type == "cpu" else copy.deepcopy(self.vae_).to(device)
        scheduler = diffusers.DDIMScheduler.from_config(self.scheduler_config_)
        scheduler.set_timesteps(steps, device=device)
        timesteps = scheduler.timesteps
        start = min(int(round(steps * (1 - float(strength)))), steps - 1) if init is not None else 0
        factor = float(getattr(vae.config, "scaling_factor", 1.0))
        side = self.generated_size_
        latent_side = int(unet.config.sample_size)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        out = []
        for first in range(0, len(embeddings), int(batch_size)):
            emb = torch.as_tensor(embeddings[first:first + batch_size], dtype=torch.float32, device=device)[:, None]
            n = len(emb)
            noise = torch.randn((n, unet.config.in_channels, latent_side, latent_side), generator=generator).to(device)
            with torch.no_grad():
                if init is None:
                    latents = noise * scheduler.init_noise_sigma
                else:
                    rgb = np.repeat(resize(init[first:first + batch_size], (side, side))[:, None],
                                    vae.config.in_channels, axis=1)
                    x0 = torch.as_tensor(rgb * 2 - 1, dtype=torch.float32, device=device)
                    clean = vae.encode(x0).latent_dist.mean * factor
                    latents = scheduler.add_noise(clean, noise, timesteps[start:start + 1].expand(n))
                context = torch.cat([emb, torch.zeros_like(emb)])
                for t in timesteps[start:]:
                    model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)
                    eps = unet(model_input, t, encoder_hidden_states=context).sample
                    cond, null = eps[:n], eps[n:]
                    latents = scheduler.step(null + guidance * (cond - null), t, latents, eta=0.0).prev_sample
                decoded = vae.decode(latents / factor).sample
            grey = ((decoded.float().mean(dim=1).cpu().numpy() + 1) / 2).clip(0, 1)
            out.append(np.clip(resize(grey.astype(np.float64), self.image_shape_), 0, 1))
        return np.concatenate(out)
