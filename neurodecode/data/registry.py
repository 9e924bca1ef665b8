"""What each dataset card's default loader reports: shapes and class counts.

One entry per card; each returns a list of ``(what, shape, class_counts)`` rows. Loaders are
imported lazily so that listing cards stays fast and works without every optional reader.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np


def _summary(label: str, data) -> tuple:
    return (label, data.shape, data.class_counts())


def _eegmmidb():
    from .datasets.eegmmidb import EEGMMIDB_ALL_IMAGERY_SUBJECTS, load_eegmmidb
    return [_summary("left/right fist imagery, 20 subjects", load_eegmmidb()),
            _summary("hands/feet imagery, 4 subjects", load_eegmmidb(EEGMMIDB_ALL_IMAGERY_SUBJECTS,
                                                                      task="hands_feet"))]


def _kalunga():
    from .datasets.kalunga2016 import load_kalunga2016
    return [_summary("SSVEP trials", load_kalunga2016())]


def _muse():
    from .datasets.muse_p300 import load_muse_p300
    return [_summary("P300 epochs", load_muse_p300())]


def _meg():
    from .cards import get_card
    from .io.recordings import load_recording
    path = get_card("meg_elekta_triux_3ch_mne_testing").path("test_elekta_3ch_raw.fif")
    return [_summary("epochs -0.1..0.4 s on STI101 triggers", load_recording(path, tmin=-0.1, tmax=0.4))]


def _abide():
    from .datasets.abide import load_abide
    data = load_abide()
    n_times = sorted({x.shape[1] for x in data.X})
    return [(f"ROI time series (volumes per subject: {n_times})", data.shape, data.class_counts())]


def _atlases():
    from .cards import get_card
    from .io.fmri import extract_atlas_signals
    card = get_card("abide_pcp_atlases")
    signals = extract_atlas_signals(card.path("abide_spatial_maps/PNAS_Smith09_rsn10.nii.gz"),
                                    card.path("abide_rois/aal_mask_pad.nii.gz"))
    return [("AAL signals of the 10 Smith-2009 RSN maps", np.shape(signals), {})]


def _haxby():
    from .datasets.haxby import load_haxby
    return [_summary("volumes x voxels (own mask)", load_haxby())]


def _digit69():
    from .datasets.digit69 import load_digit69
    return [_summary(f"{split} voxels", load_digit69(split)) for split in ("train", "test")]


def _mnist():
    from .datasets.digit69 import load_mnist
    images, labels = load_mnist()
    return [("images", images.shape, dict(sorted(Counter(labels.tolist()).items())))]


SUMMARIES: dict[str, Callable[[], list]] = {
    "eegmmidb": _eegmmidb,
    "ssvep_exo_kalunga2016": _kalunga,
    "eegnotebooks_muse_visual_p300": _muse,
    "meg_elekta_triux_3ch_mne_testing": _meg,
    "abide_pcp_aal116_100subj": _abide,
    "abide_pcp_atlases": _atlases,
    "haxby2001_subj1_pymvpa": _haxby,
    "fmri_digit69_vangerven": _digit69,
    "mnist_t10k": _mnist,
}
