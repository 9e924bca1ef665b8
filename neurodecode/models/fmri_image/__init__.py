"""fMRI-to-image reconstruction: voxels to an image embedding and a low-resolution image, then a
diffusion prior draws the image (see ``docs/fmri_to_image.md``).

``diffusers`` is imported only when a prior is built or loaded, so ``import neurodecode`` does not
need it.
"""

from .brain import ContrastiveLoss
from .estimator import FMRIToImage
from .pretrained import PretrainedImagePrior
from .prior import DiffusionPrior

__all__ = ["ContrastiveLoss", "DiffusionPrior", "FMRIToImage", "PretrainedImagePrior"]
