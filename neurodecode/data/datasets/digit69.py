"""Handwritten 6s and 9s: fMRI of early visual cortex (van Gerven "69" set) and MNIST images.

``digit69_28x28.mat`` (card ``fmri_digit69_vangerven``) holds, for one participant, the
responses of 3092 V1-V3 voxels to 100 MNIST digits (90 train, 10 test) and the 28 x 28
stimuli. The images are stored MATLAB-style, column-major: a C-order reshape transposes them.

The MNIST test set (card ``mnist_t10k``, LeCun's idx files) serves as an image prior for
reconstruction; none of its 10 000 images is identical to a digit69 stimulus.
"""

# Not a Dataset (no Dataset.load): one fMRI voxel pattern (or image) per stimulus, no time series to epoch.

from __future__ import annotations

import gzip
import zlib

import numpy as np
import pandas as pd
import scipy.io

from ..cards import get_card
from ..container import DecodingData, SignalInfo
from ..errors import CorruptFileError, InvalidDataError

CARD = "fmri_digit69_vangerven"
MAT_FILE = "digit69_28x28.mat"
#: Label k of ``y`` is ``CLASS_NAMES[k]``; the file codes "6" as 1 and "9" as 2.
CLASS_NAMES = ("6", "9")
SPLITS = ("train", "test", "all")
_KEYS = {"train": ("fmriTrn", "stimTrn", "labelTrn"), "test": ("fmriTest", "stimTest", "labelTest")}
N_VOXELS = 3092
IMAGE_SHAPE = (28, 28)

MNIST_CARD = "mnist_t10k"
MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "t10k-labels-idx1-ubyte.gz"
_IDX_UBYTE = 0x08


def _splits(split: str) -> tuple:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return ("train", "test") if split == "all" else (split,)


def read_digit69_mat(path) -> dict:
    """Read and check ``digit69_28x28.mat``.

    Returns
    -------
    parts : dict
        ``{"train": (fmri, stim, label), "test": (...)}`` with ``fmri`` float64 (n, 3092),
        ``stim`` uint8 (n, 784) in the file's column-major pixel order, ``label`` int (n,)
        in {1, 2}.

    Raises
    ------
    CorruptFileError
        The file cannot be parsed, or a variable is missing or has the wrong shape.
    InvalidDataError
        Voxels hold NaN/inf, pixels fall outside 0-255, or a label is not 1 or 2.
    """
    try:
        content = scipy.io.loadmat(path)
    except (ValueError, OSError, EOFError, TypeError, scipy.io.matlab.MatReadError) as err:
        raise CorruptFileError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    parts = {}
    for split, keys in _KEYS.items():
        missing = [k for k in keys if k not in content]
        if missing:
            raise CorruptFileError(f"{path} lacks the variable(s) {missing}")
        fmri, stim, label = (np.asarray(content[k]) for k in keys)
        n = fmri.shape[0]
        expected = {keys[0]: (n, N_VOXELS), keys[1]: (n, IMAGE_SHAPE[0] * IMAGE_SHAPE[1]), keys[2]: (n, 1)}
        for key, array in zip(keys, (fmri, stim, label)):
            if array.shape != expected[key]:
                raise CorruptFileError(f"{path}: {key} has shape {array.shape}; expected {expected[key]}")
        if not np.isfinite(fmri).all():
            raise InvalidDataError(f"{path}: {keys[0]} holds {int((~np.isfinite(fmri)).sum())} NaN or infinite values")
        if stim.min() < 0 or stim.max() > 255:
            raise InvalidDataError(f"{path}: {keys[1]} pixels span [{stim.min()}, {stim.max()}]; expected 0-255")
        label = label.ravel().astype(np.int64)
        if not np.isin(label, (1, 2)).all():
            raise InvalidDataError(f"{path}: {keys[2]} holds {sorted(set(label.tolist()) - {1, 2})}; "
                                   "expected 1 (digit 6) or 2 (digit 9)")
        parts[split] = (fmri.astype(np.float64), stim.astype(np.uint8), label)
    return parts


def load_digit69(split: str = "train") -> DecodingData:
    """fMRI voxel patterns evoked by handwritten 6s and 9s.

    Parameters
    ----------
    split : {"train", "test", "all"}
        The file's 90-trial training set, 10-trial test set, or both (train first).

    Returns
    -------
    data : DecodingData
        ``X`` of shape (n, 3092): 90 / 10 / 100 trials x V1-V3 voxels (values already
        standardised by the authors). ``y``: 0 = "6", 1 = "9" (45/45 train, 5/5 test).
        Metadata: ``subject`` 1, ``session`` "0", ``run`` "0", ``onset`` 0.0 (the file keeps
        no timing), ``dataset``, ``split``, ``index`` (row within the split). Row ``i``
        matches image ``i`` of :func:`load_digit69_images` with the same ``split``.
        ``info.sfreq`` is None (one pattern per trial, no time axis).
    """
    parts = read_digit69_mat(get_card(CARD).path(MAT_FILE))
    names = _splits(split)
    X = np.concatenate([parts[s][0] for s in names])
    y = np.concatenate([parts[s][2] for s in names]) - 1
    metadata = pd.DataFrame({"subject": 1, "session": "0", "run": "0", "onset": 0.0, "dataset": CARD,
                             "split": np.concatenate([[s] * len(parts[s][0]) for s in names]),
                             "index": np.concatenate([np.arange(len(parts[s][0])) for s in names])})
    ch_names = [f"voxel_{i}" for i in range(N_VOXELS)]
    info = SignalInfo(sfreq=None, ch_names=ch_names, ch_types=["misc"] * N_VOXELS, modality="fmri", unit="a.u.",
                      class_names=CLASS_NAMES)
    return DecodingData(X, y, metadata, info)


def load_digit69_images(split: str = "train") -> np.ndarray:
    """The stimuli of :func:`load_digit69`, upright.

    Parameters
    ----------
    split : {"train", "test", "all"}

    Returns
    -------
    images : ndarray of shape (n, 28, 28), uint8
        ``images[i, row, col]``, row 0 at the top, in the order of :func:`load_digit69`.
    """
    parts = read_digit69_mat(get_card(CARD).path(MAT_FILE))
    stim = np.concatenate([parts[s][1] for s in _splits(split)])
    # Each row is a column-major (MATLAB) 28 x 28 image: reshape C-order, then transpose.
    return np.ascontiguousarray(stim.reshape(-1, *IMAGE_SHAPE).transpose(0, 2, 1))


def read_idx(path) -> np.ndarray:
    """Read a gzip-compressed idx file of unsigned bytes (the MNIST format).

    The header is two zero bytes, a type byte (0x08 = unsigned byte), the number of
    dimensions, then each dimension as a big-endian uint32; the data follow.

    Returns
    -------
    array : ndarray of uint8, of the shape the header gives

    Raises
    ------
    CorruptFileError
        The gzip stream is damaged or truncated, the magic number is wrong, or the data are
        shorter or longer than the header announces.
    """
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptFileError(f"cannot decompress {path}: {type(err).__name__}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] == 0:
        raise CorruptFileError(f"{path} does not start with an idx magic number for unsigned bytes "
                               f"(00 00 08 <ndim>); found {raw[:4].hex(' ') or 'nothing'}")
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise CorruptFileError(f"{path}: header announces {ndim} dimensions but the file ends after {len(raw)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - offset != expected:
        raise CorruptFileError(f"{path}: header announces shape {shape} = {expected} bytes of data, "
                               f"but {len(raw) - offset} follow (truncated or padded file)")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 10 000 MNIST test digits.

    Returns
    -------
    images : ndarray of shape (10000, 28, 28), uint8
        Upright, row 0 at the top.
    labels : ndarray of shape (10000,), int64
        Digits 0-9; counts [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009].

    Raises
    ------
    CorruptFileError
        A file is damaged (see :func:`read_idx`), or the two files disagree.
    """
    card = get_card(MNIST_CARD)
    images_path, labels_path = card.path(MNIST_IMAGES), card.path(MNIST_LABELS)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise CorruptFileError(f"{images_path} holds an array of shape {images.shape}; expected (n, 28, 28)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise CorruptFileError(f"{labels_path} holds shape {labels.shape}; expected ({len(images)},) "
                               f"to match {images_path}")
    if labels.max() > 9:
        raise CorruptFileError(f"{labels_path} holds label {labels.max()}; expected digits 0-9")
    return images, labels.astype(np.int64)


def summarize(card) -> list:
    if card.name == "mnist_t10k":
        from collections import Counter
        images, labels = load_mnist()
        return [("images", images.shape, dict(sorted(Counter(labels.tolist()).items())))]
    return [(f"{split} voxels", load_digit69(split).shape, load_digit69(split).class_counts())
            for split in ("train", "test")]
