"""NIfTI reading, voxel masking and atlas signal extraction, with a guard against mixing spaces.

nilearn's maskers resample an atlas onto any image they are given, whatever space each is in:
asked to apply the ABIDE AAL atlas (MNI, 3 mm) to the Haxby run (one axial slice in the
subject's scanner space), :class:`~nilearn.maskers.NiftiLabelsMasker` silently returns 24
"AAL" signals that average whatever scanner voxels happen to fall under MNI labels.
:func:`extract_atlas_signals` and :func:`mask_runs` first decide which space each image is in
(:func:`describe_space`) and refuse, with :class:`SpaceMismatchError`, to resample across
spaces; resampling between two grids of the same space is allowed.

How the space is decided
------------------------
NIfTI headers carry a space code in ``sform_code`` / ``qform_code`` (1 scanner, 2 aligned to
another image, 3 Talairach, 4 MNI-152, 5 other template), but real files use them loosely:
of the files shipped with this project, the ABIDE AAL, CC200 and CC400 atlases (MNI) say 1,
the ABIDE grey-matter mask and Dosenbach ROIs (MNI) say 3, only the Smith-2009 maps say 4,
and the Haxby runs (scanner space) say 1. So:

* codes 3, 4 and 5 are trusted: the file is in a template space (MNI and Talairach are not
  told apart, since files labelled Talairach are often MNI, as the ABIDE mask is);
* codes 0, 1 and 2 decide nothing by themselves; the grid decides. A template grid has
  isotropic, axis-aligned voxels of at most 4 mm and a field of view that holds a whole MNI brain
  (:data:`MNI_CORE_BOX`). Scanner-space acquisitions are usually oblique, anisotropic or
  partial (the Haxby slice is 3.1 x 3.75 x 3.75 mm and 3.75 mm thick).

Two files are in the same space when both are template or both are native (and then they
must be the same subject's, which no header can tell); in every case the image's non-zero
extent and the atlas's labelled extent must also intersect in world (mm) coordinates.
When the guess is wrong (e.g. a partial-coverage image normalised to MNI but saved on a
cropped grid with code 1), pass ``assume_same_space=True``.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from ..errors import CorruptFileError, DataNotFoundError, InvalidDataError, SpaceMismatchError

#: World box (mm, x/y/z min-max) that a grid must contain to hold a whole MNI-152 brain. It is
#: the labelled extent of the ABIDE atlases (AAL, CC200, Dosenbach) shrunk by about 10 mm, so
#: that grids cropped tightly around the brain still qualify.
MNI_CORE_BOX = np.array([[-60.0, 60.0], [-95.0, 60.0], [-40.0, 70.0]])
#: Templates and atlases come at 0.5 to 4 mm; a coarser grid (e.g. Haxby's 25 mm copies) is a
#: subject's image downsampled, not a template.
MAX_TEMPLATE_VOXEL_MM = 4.0

XFORM_NAMES = {0: "unknown", 1: "scanner", 2: "aligned", 3: "Talairach", 4: "MNI-152", 5: "template"}
_TEMPLATE_CODES = (3, 4, 5)


def _label(img) -> str:
    """A file name for messages; in-memory images carry theirs in ``get_filename()``."""
    if isinstance(img, (str, os.PathLike)):
        return str(img)
    name = img.get_filename() if hasattr(img, "get_filename") else None
    return name or "<in-memory image>"


def read_nifti(path) -> nib.Nifti1Image:
    """Read a NIfTI file with its voxels in memory, checked to be complete and finite.

    Parameters
    ----------
    path : path-like or nibabel image
        A ``.nii`` / ``.nii.gz`` file. An image already in memory is checked and returned.

    Returns
    -------
    img : nibabel.Nifti1Image
        3-D (x, y, z) or 4-D (x, y, z, n_volumes), data loaded.

    Raises
    ------
    CorruptFileError
        The header or the voxel data cannot be read (truncated file, bad gzip stream).
    InvalidDataError
        The image holds NaN or infinite values.
    """
    name = _label(path)
    try:
        img = path if isinstance(path, nib.spatialimages.SpatialImage) else nib.load(str(path))
        # nibabel reads voxels lazily; force it so that a truncated file fails here, named.
        data = np.asanyarray(img.dataobj)
    except FileNotFoundError as err:
        raise DataNotFoundError(f"NIfTI file not found: {name}") from err
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as err:
        raise CorruptFileError(f"cannot read NIfTI {name}: {type(err).__name__}: {err}") from err
    if data.ndim not in (3, 4):
        raise CorruptFileError(f"NIfTI {name} has shape {data.shape}; expected 3-D or 4-D")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise InvalidDataError(f"NIfTI {name} holds {int((~np.isfinite(data)).sum())} NaN or infinite voxel values")
    out = nib.Nifti1Image(data, img.affine, img.header)
    if img.get_filename():
        out.set_filename(img.get_filename())
    return out


@dataclass(frozen=True)
class SpaceDescription:
    """Where an image lies: its grid, its content and the space they suggest.

    Attributes
    ----------
    name : str
    shape : tuple
    voxel_mm : ndarray of shape (3,)
    affine : ndarray of shape (4, 4)
    sform_code, qform_code : int
    grid_box : ndarray of shape (3, 2)
        World (mm) min/max of the voxel centres of the whole grid.
    content_box : ndarray of shape (3, 2) or None
        World (mm) min/max of the non-zero voxels (labelled voxels for an atlas); None if empty.
    template : bool
        True when the image is judged to be in a template (MNI-like) space.
    reason : str
        Why ``template`` was decided so.
    """

    name: str
    shape: tuple
    voxel_mm: np.ndarray
    affine: np.ndarray
    sform_code: int
    qform_code: int
    grid_box: np.ndarray
    content_box: np.ndarray | None
    template: bool
    reason: str

    @property
    def space(self) -> str:
        return "template (MNI-like)" if self.template else "native (subject scanner)"

    def summary(self) -> str:
        def box(b):
            return "empty" if b is None else " ".join(f"{ax}[{lo:.1f}, {hi:.1f}]" for ax, (lo, hi) in zip("xyz", b))
        return (f"{self.name}: shape {self.shape}, voxel {'x'.join(f'{v:.3g}' for v in self.voxel_mm)} mm, "
                f"sform_code {self.sform_code} ({XFORM_NAMES.get(self.sform_code, '?')}), qform_code "
                f"{self.qform_code} ({XFORM_NAMES.get(self.qform_code, '?')}), affine "
                f"{np.round(self.affine[:3], 2).tolist()}, grid {box(self.grid_box)} mm, "
                f"content {box(self.content_box)} mm -> {self.space}: {self.reason}")


def _world_box(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    xyz = nib.affines.apply_affine(affine, ijk)
    return np.column_stack([xyz.min(axis=0), xyz.max(axis=0)])


def describe_space(img) -> SpaceDescription:
    """Decide whether an image lies in a template (MNI-like) space or a subject's native space.

    Parameters
    ----------
    img : path-like or nibabel image
        3-D or 4-D image, or an atlas (labels or 4-D maps).

    Returns
    -------
    description : SpaceDescription
        See the module docstring for the rule.
    """
    img = read_nifti(img)
    header = img.header
    affine = img.affine
    shape3 = img.shape[:3]
    data = np.asanyarray(img.dataobj)
    occupied = (data != 0).any(axis=3) if data.ndim == 4 else data != 0
    corners = np.array([[0, 0, 0], np.array(shape3) - 1])
    grid_box = _world_box(affine, np.array(np.meshgrid(*corners.T)).reshape(3, -1).T)
    content_box = _world_box(affine, np.argwhere(occupied)) if occupied.any() else None
    sform, qform = int(header["sform_code"]), int(header["qform_code"])
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    declared = sform if sform > 0 else qform
    if declared in _TEMPLATE_CODES:
        template, reason = True, f"the header declares code {declared} ({XFORM_NAMES[declared]})"
    else:
        direction = affine[:3, :3] / zooms
        axis_aligned = np.allclose(np.abs(direction), np.round(np.abs(direction)), atol=1e-3)
        isotropic = zooms.max() / zooms.min() < 1.01
        fine = zooms.max() <= MAX_TEMPLATE_VOXEL_MM
        covers = bool(np.all(grid_box[:, 0] <= MNI_CORE_BOX[:, 0]) and np.all(grid_box[:, 1] >= MNI_CORE_BOX[:, 1]))
        template = axis_aligned and isotropic and fine and covers
        header_says = (f"header code {declared} ({XFORM_NAMES.get(declared, '?')}) does not fix the space, "
                       "so the grid does")
        if template:
            reason = (f"{header_says}: isotropic axis-aligned voxels on a field of view that holds a whole "
                      "MNI brain, as template grids do")
        else:
            why = [w for w, bad in (("oblique axes", not axis_aligned), ("anisotropic voxels", not isotropic),
                                    (f"voxels coarser than {MAX_TEMPLATE_VOXEL_MM:g} mm", not fine),
                                    ("a field of view that does not hold a whole MNI brain "
                                     f"(needs {MNI_CORE_BOX.tolist()} mm)", not covers)) if bad]
            reason = f"{header_says}: {', '.join(why)}, as a subject's acquisition grid has"
    return SpaceDescription(_label(img), tuple(img.shape), zooms, affine, sform, qform, grid_box, content_box,
                            template, reason)


def check_same_space(img, other, *, what: str = "atlas") -> None:
    """Refuse to resample between two images that are not in the same space.

    Parameters
    ----------
    img : path-like or nibabel image
        The data (3-D or 4-D).
    other : path-like or nibabel image
        The atlas or mask to apply to it.
    what : str
        What ``other`` is, for the message ("atlas", "mask").

    Raises
    ------
    SpaceMismatchError
        One is in a template space and the other in a native space, or their non-zero
        extents do not intersect in world coordinates. The message describes both files.
    """
    img, other = read_nifti(img), read_nifti(other)
    if img.shape[:3] == other.shape[:3] and np.allclose(img.affine, other.affine, atol=1e-4):
        return  # one grid: voxel i of one is voxel i of the other, whatever the headers say
    a, b = describe_space(img), describe_space(other)
    details = f"\n  image: {a.summary()}\n  {what}: {b.summary()}"
    if a.template != b.template:
        raise SpaceMismatchError(
            f"the image is in {a.space} space but the {what} is in {b.space} space; resampling one onto the "
            f"other would average unrelated voxels into meaningless signals. Register the image to the "
            f"{what}'s template first (or use one drawn in the image's space), or pass "
            f"assume_same_space=True if you know both share a space.{details}")
    if a.content_box is None or b.content_box is None:
        raise SpaceMismatchError(f"the image or the {what} has no non-zero voxel.{details}")
    lo = np.maximum(a.content_box[:, 0], b.content_box[:, 0])
    hi = np.minimum(a.content_box[:, 1], b.content_box[:, 1])
    # Voxel centres of two touching grids may miss by up to half a voxel of each.
    slack = (a.voxel_mm + b.voxel_mm) / 2
    if np.any(lo > hi + slack):
        raise SpaceMismatchError(
            f"the image's non-zero extent and the {what}'s extent do not overlap in world coordinates, "
            f"so they are not in the same space (or not the same subject).{details}")


def mask_runs(imgs, mask_img, *, runs: Sequence | None = None, detrend: bool = False,
              standardize: bool = False, assume_same_space: bool = False) -> np.ndarray:
    """Voxel time series inside a mask, from one or several 4-D runs.

    Parameters
    ----------
    imgs : path-like, nibabel image, or list of them
        4-D images (x, y, z, n_volumes_r). A list is taken as consecutive runs.
    mask_img : path-like or nibabel image
        3-D mask; non-zero voxels are kept. If its grid differs from the images', nilearn
        resamples the images onto it, after the spaces are checked to agree.
    runs : array-like of shape (n_volumes,), optional
        Run label of each volume of a single concatenated image; detrending and
        standardisation then happen within each run. Ignored for a list (one run per item).
    detrend : bool
        Remove a linear trend from each voxel within each run.
    standardize : bool
        z-score each voxel within each run (sample standard deviation).
    assume_same_space : bool
        Skip the space check (see the module docstring).

    Returns
    -------
    X : ndarray of shape (n_volumes, n_voxels)
        Volumes of all runs in order; voxels in C order of the mask's grid (``np.argwhere``).

    Raises
    ------
    CorruptFileError, InvalidDataError
        An image cannot be read, holds NaN, is not 4-D, or the mask is empty.
    SpaceMismatchError
        The mask is not in the images' space.
    """
    from nilearn.image import concat_imgs
    from nilearn.maskers import NiftiMasker

    items = list(imgs) if isinstance(imgs, (list, tuple)) else [imgs]
    loaded = [read_nifti(i) for i in items]
    for img in loaded:
        if img.ndim != 4:
            raise InvalidDataError(f"{_label(img)} has shape {img.shape}; mask_runs expects 4-D runs")
    mask = read_nifti(mask_img)
    if mask.ndim != 3 or not np.asanyarray(mask.dataobj).any():
        raise InvalidDataError(f"mask {_label(mask)} has shape {mask.shape} and "
                               f"{int(np.count_nonzero(np.asanyarray(mask.dataobj)))} non-zero voxels; "
                               "expected a 3-D image with at least one")
    if not assume_same_space:
        for img in loaded:
            check_same_space(img, mask, what="mask")
    if len(loaded) > 1:
        runs = np.repeat(np.arange(len(loaded)), [i.shape[3] for i in loaded])
        img = concat_imgs(loaded)
    else:
        img = loaded[0]
    if runs is not None and len(runs) != img.shape[3]:
        raise InvalidDataError(f"runs has {len(runs)} entries but {_label(img)} has {img.shape[3]} volumes")
    masker = NiftiMasker(mask_img=mask, runs=None if runs is None else np.asarray(runs), detrend=detrend,
                         standardize="zscore_sample" if standardize else None, reports=False)
    return masker.fit_transform(img)


def extract_atlas_signals(img, atlas, *, kind: str = "labels", detrend: bool = False, standardize: bool = False,
                          t_r: float | None = None, assume_same_space: bool = False) -> np.ndarray:
    """Mean signal of each atlas region, refusing an atlas in another space than the image.

    Parameters
    ----------
    img : path-like or nibabel image
        3-D or 4-D image (x, y, z[, n_volumes]).
    atlas : path-like or nibabel image
        ``kind="labels"``: 3-D integer image, 0 = background, one value per region.
        ``kind="maps"``: 4-D image, one (probabilistic or continuous) map per region.
        When its grid differs from the image's but the space is the same, it is resampled
        onto the image (nearest neighbour for labels), as nilearn does.
    kind : {"labels", "maps"}
        Use :class:`~nilearn.maskers.NiftiLabelsMasker` or :class:`~nilearn.maskers.NiftiMapsMasker`.
    detrend, standardize : bool
        Clean each region's time series (linear detrend; z-score with the sample sd).
    t_r : float, optional
        Repetition time in seconds, for nilearn's signal cleaning.
    assume_same_space : bool
        Skip the space check (see the module docstring).

    Returns
    -------
    signals : ndarray of shape (n_volumes, n_regions)
        Regions in ascending label value (labels) or map order (maps); a region left with no
        voxel in the image's grid is dropped, as nilearn does.

    Raises
    ------
    SpaceMismatchError
        The image and the atlas are not in the same space (see :func:`check_same_space`).
    ValueError
        ``kind`` is neither ``"labels"`` nor ``"maps"``.
    """
    from nilearn.maskers import NiftiLabelsMasker, NiftiMapsMasker

    if kind not in ("labels", "maps"):
        raise ValueError(f"kind must be 'labels' or 'maps', got {kind!r}")
    img, atlas = read_nifti(img), read_nifti(atlas)
    if kind == "labels" and atlas.ndim != 3:
        raise InvalidDataError(f"labels atlas {_label(atlas)} has shape {atlas.shape}; expected 3-D")
    if kind == "maps" and atlas.ndim != 4:
        raise InvalidDataError(f"maps atlas {_label(atlas)} has shape {atlas.shape}; expected 4-D (one map a volume)")
    if not assume_same_space:
        check_same_space(img, atlas, what="atlas")
    options = dict(detrend=detrend, standardize="zscore_sample" if standardize else None, t_r=t_r,
                   resampling_target="data", reports=False)
    masker = (NiftiLabelsMasker(labels_img=atlas, **options) if kind == "labels"
              else NiftiMapsMasker(maps_img=atlas, **options))
    return masker.fit_transform(img)


def nifti_tr(img) -> float:
    """Repetition time in seconds from a 4-D header (``pixdim[4]`` in its time unit).

    Raises
    ------
    InvalidDataError
        The image is not 4-D or its TR is not a positive number.
    """
    img = img if isinstance(img, nib.spatialimages.SpatialImage) else nib.load(str(Path(img)))
    if len(img.shape) != 4:
        raise InvalidDataError(f"{_label(img)} has shape {img.shape}; a TR needs a 4-D image")
    tr = float(img.header.get_zooms()[3])
    unit = img.header.get_xyzt_units()[1]
    tr *= {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)
    if not (np.isfinite(tr) and tr > 0):
        raise InvalidDataError(f"{_label(img)} has a repetition time of {tr!r} ({unit}); expected a positive number")
    return tr
