"""The Elekta TRIUX MEG test recording (MNE's testing data): read by the generic MNE reader."""

# Not a Dataset (no Dataset.load): an I/O test file whose card declares no paradigm or classes (PROVENANCE.md).

from __future__ import annotations

from ..io.recordings import load_recording


def summarize(card) -> list:
    data = load_recording(card.path("test_elekta_3ch_raw.fif"), tmin=-0.1, tmax=0.4)
    return [("epochs -0.1..0.4 s on STI101 triggers", data.shape, data.class_counts())]
