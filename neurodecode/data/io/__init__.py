"""Generic readers: anything MNE reads (EEG, MEG), NIfTI through nilearn maskers. No dataset names."""
