"""Haxby et al. (2001), subject 1: ventral temporal fMRI while viewing 8 object categories.

The PyMVPA release (card ``haxby2001_subj1_pymvpa``) holds the data twice. The loader uses the
top-level files: ``bold.nii.gz`` (the 12 runs concatenated, 40 x 20 x 1 voxels x 1452 volumes:
the posterior half of one axial slice at native 3.1 x 3.75 x 3.75 mm resolution),
``mask.nii.gz`` (530 in-brain voxels of that slice) and ``attributes_literal.txt`` (one
``<category> <chunk>`` line per volume). The ``haxby2001/`` subfolder holds the same runs split
per run, plus whole-brain copies downsampled to 25 mm (129 voxels), too coarse to decode from.
All are in the subject's scanner space, not MNI.
"""

# Not a Dataset (no Dataset.load): fMRI volumes labelled by the block they fall in, no cue-locked EEG/MEG epochs.

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cards import get_card
from ..container import DecodingData, SignalInfo
from ..errors import CorruptFileError, InvalidDataError
from ..io.fmri import mask_runs, nifti_tr, read_nifti

CARD = "haxby2001_subj1_pymvpa"
DATASET = "haxby2001"
CATEGORIES = ("bottle", "cat", "chair", "face", "house", "scissors", "scrambledpix", "shoe")
REST = "rest"


def read_attributes(path) -> pd.DataFrame:
    """Parse a PyMVPA ``attributes_literal.txt``: one ``<label> <chunk>`` line per volume.

    Returns
    -------
    attributes : DataFrame with columns ``label`` (str) and ``chunk`` (int), one row per volume.

    Raises
    ------
    CorruptFileError
        A line does not hold a label and an integer chunk.
    InvalidDataError
        A label is neither rest nor one of :data:`CATEGORIES`.
    """
    rows = []
    with open(path) as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.split()
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise CorruptFileError(f"{path}, line {number}: expected '<label> <chunk>', got {line.strip()!r}")
            rows.append((fields[0], int(fields[1])))
    table = pd.DataFrame(rows, columns=["label", "chunk"])
    unknown = sorted(set(table["label"]) - set(CATEGORIES) - {REST})
    if unknown:
        raise InvalidDataError(f"{path}: unknown label(s) {unknown}; expected {REST!r} or one of {list(CATEGORIES)}")
    return table


def load_haxby(*, mask="own", hrf_shift: int = 0, drop_rest: bool = False, standardize: bool = False,
               detrend: bool = False) -> DecodingData:
    """One sample per fMRI volume of Haxby 2001 subject 1, labelled with the category on screen.

    Parameters
    ----------
    mask : "own" or path-like or nibabel image
        ``"own"``: the release's ``mask.nii.gz`` (530 voxels). Otherwise a 3-D mask in the
        subject's space (an MNI mask is refused with :class:`SpaceMismatchError`).
    hrf_shift : int >= 0
        Delay, in volumes (TR = 2.5 s), between a stimulus and the BOLD response it evokes
        (2 volumes = 5 s is typical). Volume ``t`` of a run gets the label shown at volume
        ``t - hrf_shift`` of the same run; the first ``hrf_shift`` volumes of each run, whose
        label would come from before the run started, are dropped. Labels never cross runs.
    drop_rest : bool
        Drop the volumes labelled ``"rest"`` (after shifting), leaving the 8 categories.
    standardize : bool
        z-score each voxel within each run, over all 121 volumes of the run (before any
        volume is dropped).
    detrend : bool
        Remove a linear trend from each voxel within each run.

    Returns
    -------
    data : DecodingData
        ``X`` of shape (n_volumes, n_voxels): (1452, 530) with defaults; each shifted volume
        removes 12 (one per run). ``info.class_names`` are the 8 categories in alphabetical
        order, then ``"rest"`` unless dropped, so a category's label does not depend on
        ``drop_rest``. Metadata: ``subject`` 1, ``run`` "1".."12" (the ``task001_runNNN``
        number, = chunk + 1), ``session`` = ``run`` (the release does not say which runs
        shared a scanning session), ``onset`` (s from the run's start), ``volume`` (index in
        the run), ``chunk`` (as in the attributes file), ``dataset`` "haxby2001".
        ``info.sfreq`` is 1 / TR = 0.4 Hz, read from the NIfTI header.

    Raises
    ------
    ValueError
        ``hrf_shift`` is not a non-negative integer.
    InvalidDataError
        The header TR disagrees with ``scan_key.txt``, or the attributes do not match the volumes.
    """
    if isinstance(hrf_shift, bool) or not isinstance(hrf_shift, (int, np.integer)) or hrf_shift < 0:
        raise ValueError(f"hrf_shift must be an integer number of volumes >= 0, got {hrf_shift!r}")
    card = get_card(CARD)
    bold_path = card.path("bold.nii.gz")
    bold = read_nifti(bold_path)
    tr = nifti_tr(bold)
    scan_key = card.path("haxby2001/scan_key.txt")
    declared = scan_key.read_text().split()
    if len(declared) != 2 or declared[0] != "TR" or not np.isclose(float(declared[1]), tr):
        raise InvalidDataError(f"{bold_path} has TR {tr} s in its header but {scan_key} says {' '.join(declared)!r}")
    attributes_path = card.path("attributes_literal.txt")
    attributes = read_attributes(attributes_path)
    if len(attributes) != bold.shape[3]:
        raise InvalidDataError(f"{attributes_path} has {len(attributes)} rows but {bold_path} has "
                               f"{bold.shape[3]} volumes; expected one row per volume")
    chunks = attributes["chunk"].to_numpy()
    if np.any(np.diff(chunks) < 0):
        raise InvalidDataError(f"{attributes_path}: chunks are not in ascending blocks; cannot tell runs apart")
    mask_img = card.path("mask.nii.gz") if isinstance(mask, str) and mask == "own" else mask
    X = mask_runs(bold, mask_img, runs=chunks, standardize=standardize, detrend=detrend)

    volume = attributes.groupby("chunk").cumcount().to_numpy()
    labels = attributes["label"].to_numpy()
    # Within a run, volume t takes the label of volume t - hrf_shift; runs are contiguous blocks,
    # so the source row is simply hrf_shift rows earlier once the run's first volumes are gone.
    keep = volume >= hrf_shift
    shifted = np.empty_like(labels)
    shifted[keep] = labels[np.nonzero(keep)[0] - hrf_shift]
    if drop_rest:
        keep &= shifted != REST
    class_names = CATEGORIES if drop_rest else CATEGORIES + (REST,)
    y = np.array([class_names.index(c) for c in shifted[keep]], dtype=np.int64)

    run = (chunks[keep] + 1).astype(str)
    metadata = pd.DataFrame({"subject": 1, "session": run, "run": run, "onset": volume[keep] * tr,
                             "dataset": DATASET, "volume": volume[keep], "chunk": chunks[keep]})
    mask_data = np.asanyarray(read_nifti(mask_img).dataobj)
    ch_names = [f"voxel_{i}_{j}_{k}" for i, j, k in np.argwhere(mask_data != 0)]
    info = SignalInfo(sfreq=1.0 / tr, ch_names=ch_names, ch_types=["misc"] * len(ch_names), modality="fmri",
                      unit="a.u.",
                      class_names=class_names)
    return DecodingData(X[keep], y, metadata, info)


def summarize(card=None) -> list:
    data = load_haxby()
    return [("volumes x voxels (own mask)", data.shape, data.class_counts())]
