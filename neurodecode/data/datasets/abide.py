"""ABIDE I resting-state fMRI, AAL-116 ROI time series of 100 subjects (PITT, OLIN, OHSU).

Card ``abide_pcp_aal116_100subj``: ``Functional/<SUB_ID>.mat`` hold one variable
``ROISignals`` of shape (n_volumes, 116) (DPARSF naming; PCP ``rois_aal`` derivative), and
``Phenotypic_V1_0b_preprocessed1.csv`` is the official PCP phenotype table (``DX_GROUP``
1 = autism, 2 = control). Scan lengths differ by site (PITT 195, OLIN 205, OHSU 77 volumes).

Thirteen subjects have ROIs that never change over time (all in the cerebellum and vermis,
0-based columns 100-107 and 113-115, cut off by the field of view). They are reported in the
metadata, not dropped: correlations with them are undefined and covariances singular, so
connectivity pipelines must handle them (shrinkage, or dropping those columns for everyone).
"""

# Not a Dataset (no Dataset.load): one resting-state ROI time series per subject, labelled by diagnosis; no cues.

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.io

from ..cards import get_card
from ..container import DecodingData, SignalInfo
from ..errors import CorruptFileError, EmptySelectionError, InvalidDataError

CARD = "abide_pcp_aal116_100subj"
PHENOTYPE = "Phenotypic_V1_0b_preprocessed1.csv"
N_ROIS = 116
#: Label k of ``y`` is ``CLASS_NAMES[k]``: autism is the positive class (1), as in most ASD studies.
CLASS_NAMES = ("control", "autism")
_DX_TO_LABEL = {2: 0, 1: 1}
_SEX = {1: "M", 2: "F"}
#: The atlas folder holds no label names (``abide_pcp_atlases`` has integer codes only), so
#: ROI k (1-based, the k-th AAL label in ascending code order) is called ``AAL_<k>``.
ROI_NAMES = tuple(f"AAL_{k}" for k in range(1, N_ROIS + 1))


def read_roi_signals(path) -> np.ndarray:
    """ROI time series of one subject from a DPARSF ``.mat`` file.

    Returns
    -------
    signals : ndarray of shape (116, n_volumes)
        ROIs first, time second (the file stores time first).

    Raises
    ------
    CorruptFileError
        The file cannot be parsed, lacks ``ROISignals``, or it is not (n_volumes, 116).
    InvalidDataError
        It holds NaN or infinite values.
    """
    try:
        content = scipy.io.loadmat(path, variable_names=["ROISignals"])
    except (ValueError, OSError, EOFError, TypeError, scipy.io.matlab.MatReadError) as err:
        raise CorruptFileError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    if "ROISignals" not in content:
        raise CorruptFileError(f"{path} has no variable 'ROISignals'")
    signals = np.asarray(content["ROISignals"], dtype=np.float64)
    if signals.ndim != 2 or signals.shape[1] != N_ROIS or signals.shape[0] < 2:
        raise CorruptFileError(f"{path}: ROISignals has shape {signals.shape}; expected (n_volumes >= 2, {N_ROIS})")
    if not np.isfinite(signals).all():
        raise InvalidDataError(f"{path}: ROISignals holds {int((~np.isfinite(signals)).sum())} NaN or infinite values")
    return signals.T


def constant_rois(signals: np.ndarray) -> tuple:
    """0-based indices of the ROIs whose time series never changes (all-zero ones included).

    Parameters
    ----------
    signals : ndarray of shape (n_rois, n_volumes)
    """
    return tuple(int(i) for i in np.nonzero(np.ptp(signals, axis=1) == 0)[0])


def _subject_ids(card) -> list[int]:
    return sorted(int(f.path[len("Functional/"):-len(".mat")]) for f in card.files
                  if f.path.startswith("Functional/") and f.path.endswith(".mat"))


def load_abide(*, subjects=None, sites=None) -> DecodingData:
    """Resting-state ROI time series with autism / control labels, one trial per subject.

    Parameters
    ----------
    subjects : list of int, optional
        ABIDE ``SUB_ID`` values (e.g. 50003). Default: all 100.
    sites : list of str, optional
        ``SITE_ID`` values among "PITT", "OLIN", "OHSU" (case-insensitive). Combined with
        ``subjects`` by intersection.

    Returns
    -------
    data : DecodingData
        ``X`` is always an object array of shape (n_subjects,) holding one (116, n_volumes_i)
        array per subject (195 PITT, 205 OLIN, 77 OHSU volumes), even when the selection
        shares one length, so its type does not depend on the selection. ``y``: 0 = control,
        1 = autism (``info.class_names``). Rows are in ascending ``SUB_ID``. Metadata:
        ``subject`` (SUB_ID, int), ``session`` "0", ``run`` "0", ``onset`` 0.0, ``dataset``,
        ``site``, ``age`` (years), ``sex`` ("M"/"F"), ``func_mean_fd`` (mm), ``n_volumes``,
        ``constant_rois`` (tuple of 0-based ROI indices constant over time; usually empty),
        ``n_constant_rois``. ``info.sfreq`` is None: the TR is stored in neither the time
        series nor the phenotype table, and it differs between sites.

    Raises
    ------
    EmptySelectionError
        An unknown subject or site was asked for (the message lists the valid ones), or the
        two selections do not intersect.
    InvalidDataError
        A subject is missing from, or duplicated in, the phenotype table.
    """
    card = get_card(CARD)
    ids = _subject_ids(card)
    phenotype_path = card.path(PHENOTYPE)
    try:
        phenotype = pd.read_csv(phenotype_path, usecols=["SUB_ID", "SITE_ID", "DX_GROUP", "AGE_AT_SCAN", "SEX",
                                                         "func_mean_fd"])
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"cannot read the phenotype table {phenotype_path}: {err}") from err
    phenotype = phenotype[phenotype["SUB_ID"].isin(ids)].set_index("SUB_ID")
    missing = sorted(set(ids) - set(phenotype.index))
    duplicated = sorted(set(phenotype.index[phenotype.index.duplicated()]))
    if missing or duplicated:
        raise InvalidDataError(f"{phenotype_path}: SUB_ID(s) {missing} missing and {duplicated} duplicated; "
                               f"expected one row per subject of {CARD}")

    selected = set(ids)
    if subjects is not None:
        wanted = {int(s) for s in ([subjects] if np.isscalar(subjects) else subjects)}
        unknown = sorted(wanted - set(ids))
        if unknown:
            raise EmptySelectionError(f"unknown ABIDE subject(s) {unknown}; valid SUB_IDs: {ids}")
        selected &= wanted
    if sites is not None:
        valid_sites = sorted(phenotype["SITE_ID"].unique())
        wanted = {str(s).upper() for s in ([sites] if isinstance(sites, str) else sites)}
        unknown = sorted(wanted - set(valid_sites))
        if unknown:
            raise EmptySelectionError(f"unknown ABIDE site(s) {unknown}; valid sites: {valid_sites}")
        selected &= set(phenotype.index[phenotype["SITE_ID"].isin(wanted)])
    if not selected:
        raise EmptySelectionError(f"no subject matches subjects={subjects} and sites={sites}")

    trials, rows = [], []
    for sub in sorted(selected):
        signals = read_roi_signals(card.path(f"Functional/{sub}.mat"))
        pheno = phenotype.loc[sub]
        dx = int(pheno["DX_GROUP"])
        if dx not in _DX_TO_LABEL:
            raise InvalidDataError(
                f"{phenotype_path}: SUB_ID {sub} has DX_GROUP {dx}; expected 1 (autism) or 2 (control)")
        flat = constant_rois(signals)
        trials.append(signals)
        rows.append({"subject": sub, "session": "0", "run": "0", "onset": 0.0, "dataset": CARD,
                     "site": pheno["SITE_ID"], "age": float(pheno["AGE_AT_SCAN"]),
                     "sex": _SEX.get(int(pheno["SEX"]), "unknown"), "func_mean_fd": float(pheno["func_mean_fd"]),
                     "n_volumes": signals.shape[1], "constant_rois": flat, "n_constant_rois": len(flat),
                     "label": _DX_TO_LABEL[dx]})
    metadata = pd.DataFrame(rows)
    X = np.empty(len(trials), dtype=object)
    for i, signals in enumerate(trials):  # X[:] = trials would stack equal-length trials into 3-D
        X[i] = signals
    info = SignalInfo(sfreq=None, ch_names=ROI_NAMES, ch_types=["misc"] * N_ROIS, modality="fmri", unit="a.u.",
                      class_names=CLASS_NAMES)
    return DecodingData(X, metadata.pop("label").to_numpy(dtype=np.int64), metadata, info)


def summarize(card) -> list:
    if card.name == "abide_pcp_atlases":
        from ..io.fmri import extract_atlas_signals
        signals = extract_atlas_signals(card.path("abide_spatial_maps/PNAS_Smith09_rsn10.nii.gz"),
                                        card.path("abide_rois/aal_mask_pad.nii.gz"))
        return [("AAL signals of the 10 Smith-2009 RSN maps", np.shape(signals), {})]
    data = load_abide()
    n_times = sorted({x.shape[1] for x in data.X})
    return [(f"ROI time series (volumes per subject: {n_times})", data.shape, data.class_counts())]
