"""The one container that carries decoding-ready data from every loader to every estimator."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import EmptySelectionError, InvalidDataError

def _as_trials(X) -> np.ndarray:
    """A regular array, or an object array of (n_channels, n_times_i) trials when lengths differ."""
    if isinstance(X, (list, tuple)) and X and len({np.shape(t) for t in X}) > 1:
        trials = [np.asarray(t) for t in X]
        if any(t.ndim != 2 for t in trials) or len({t.shape[0] for t in trials}) > 1:
            raise InvalidDataError("ragged trials must all have shape (n_channels, n_times_i) with one n_channels; "
                                   f"got shapes {sorted({t.shape for t in trials})[:5]}")
        out = np.empty(len(trials), dtype=object)
        out[:] = trials
        return out
    X = np.asarray(X)
    if X.dtype == object:
        if X.ndim != 1 or any(np.ndim(t) != 2 for t in X):
            raise InvalidDataError("an object array X must hold one (n_channels, n_times_i) array per trial")
        return X
    if X.ndim not in (2, 3):
        raise InvalidDataError(
            f"X must have shape (n_trials, n_channels, n_times) or (n_trials, n_features); got {X.shape}")
    return X


METADATA_COLUMNS = ("subject", "session", "run", "onset", "dataset")
MODALITIES = ("eeg", "meg", "fmri", "image", "other")
UNITS = {"SI": 1.0, "uV": 1e-6, "a.u.": 1.0}  # factor to MNE's SI units


@dataclass(frozen=True)
class SignalInfo:
    """What the numbers in ``X`` are.

    Parameters
    ----------
    sfreq : float or None
        Sampling rate in Hz (for fMRI, 1 / TR). None for data with no time axis.
    ch_names : tuple of str
        One name per channel, ROI, voxel block or feature along axis 1 of ``X``.
    ch_types : tuple of str
        One MNE channel type per channel (``"eeg"``, ``"mag"``, ``"grad"``, ``"misc"``...).
    modality : str
        One of ``"eeg"``, ``"meg"``, ``"fmri"``, ``"image"``, ``"other"``.
    positions : ndarray of shape (n_channels, 3) or None
        Sensor positions in metres, when known: in the head frame when the recording has a
        device-to-head transform, else as the file stores them (e.g. MEG device frame).
    class_names : tuple of str
        ``class_names[k]`` is the name of label ``k`` in ``y``.
    tmin : float
        Time in seconds of the first sample of each trial, relative to its event.
    unit : {"SI", "uV", "a.u."}
        What one unit of ``X`` is: ``"SI"`` (volts for EEG, tesla and tesla/metre for MEG, as
        MNE stores them), ``"uV"`` (microvolts, as MOABB returns EEG) or ``"a.u."`` (fMRI BOLD,
        image intensities).
    """

    sfreq: float | None
    ch_names: tuple
    ch_types: tuple
    modality: str
    positions: np.ndarray | None = field(default=None, compare=False)
    class_names: tuple = ()
    tmin: float = 0.0
    unit: str = "SI"

    def __post_init__(self):
        object.__setattr__(self, "ch_names", tuple(self.ch_names))
        object.__setattr__(self, "ch_types", tuple(self.ch_types))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if len(self.ch_names) != len(self.ch_types):
            raise InvalidDataError(
                f"SignalInfo: {len(self.ch_names)} channel names but {len(self.ch_types)} channel types")
        if self.modality not in MODALITIES:
            raise InvalidDataError(f"SignalInfo: modality {self.modality!r} is not one of {MODALITIES}")
        if self.unit not in UNITS:
            raise InvalidDataError(f"SignalInfo: unit {self.unit!r} is not one of {tuple(UNITS)}")
        if self.sfreq is not None and not (np.isfinite(self.sfreq) and self.sfreq > 0):
            raise InvalidDataError(f"SignalInfo: sampling rate must be a positive number, got {self.sfreq!r}")

    @classmethod
    def from_mne(cls, mne_info, *, class_names=(), tmin: float = 0.0, unit: str = "SI",
                 modality: str | None = None) -> "SignalInfo":
        """The signal contract of an MNE ``Info``: the one place for the modality and position rules.

        Modality is ``"meg"`` when any channel is a magnetometer or gradiometer, else ``"eeg"``.
        Positions are kept only when every channel has a finite, non-zero one (all or none:
        a montage that places some channels at the origin would mislead spatial models).
        """
        ch_types = tuple(mne_info.get_channel_types())
        if modality is None:
            modality = "meg" if any(t in ("mag", "grad") for t in ch_types) else "eeg"
        pos = np.array([ch["loc"][:3] for ch in mne_info["chs"]]).reshape(-1, 3)
        positions = pos if len(pos) and np.isfinite(pos).all() and np.abs(pos).sum(axis=1).all() else None
        return cls(sfreq=float(mne_info["sfreq"]), ch_names=tuple(mne_info["ch_names"]), ch_types=ch_types,
                   modality=modality, positions=positions, class_names=tuple(class_names), tmin=float(tmin), unit=unit)

    @property
    def n_chans(self) -> int:
        return len(self.ch_names)


class DecodingData:
    """Trials, labels, per-trial metadata and signal info, in one object.

    scikit-learn code sees plain arrays through :attr:`X`, :attr:`y` and :meth:`groups`;
    these are views of the stored arrays, never copies.

    Parameters
    ----------
    X : ndarray of shape (n_trials, n_channels, n_times) or (n_trials, n_features)
        The data. Must be finite. When trials differ in length (e.g. resting-state fMRI
        from sites with different scan lengths), pass a list of arrays of shape
        (n_channels, n_times_i): it is stored as an object array of shape (n_trials,),
        which indexes, concatenates and iterates like any other.
    y : ndarray of shape (n_trials,)
        Integer labels indexing ``info.class_names`` (or any label array when
        ``class_names`` is empty, e.g. for regression targets).
    metadata : DataFrame of n_trials rows
        Must hold the columns ``subject``, ``session``, ``run``, ``onset`` (seconds from
        the start of the run) and ``dataset``; extra columns are kept.
    info : SignalInfo
        Sampling rate, channel names and types, modality, class names.
    """

    def __init__(self, X, y, metadata, info: SignalInfo):
        X = _as_trials(X)
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise InvalidDataError(f"y must have shape ({X.shape[0]},) to match X {X.shape}; got {y.shape}")
        finite = ([np.isfinite(t).all() for t in X] if X.dtype == object
                  else np.isfinite(X.reshape(len(X), -1)).all(axis=1) if np.issubdtype(X.dtype, np.floating)
                  else [True] * len(X))
        if not all(finite):
            bad = np.nonzero(~np.asarray(finite, dtype=bool))[0]
            raise InvalidDataError(
                f"X holds NaN or infinite values in {bad.size} trial(s) (first: {bad[:5].tolist()})")
        n_chans = X[0].shape[0] if X.dtype == object and len(X) else (X.shape[1] if X.ndim == 3 else None)
        if n_chans is not None and n_chans != info.n_chans:
            raise InvalidDataError(f"X has {n_chans} channels but info names {info.n_chans}")
        metadata = pd.DataFrame(metadata).reset_index(drop=True)
        missing = [c for c in METADATA_COLUMNS if c not in metadata.columns]
        if missing:
            raise InvalidDataError(f"metadata lacks the column(s) {missing}; required: {list(METADATA_COLUMNS)}")
        if len(metadata) != X.shape[0]:
            raise InvalidDataError(f"metadata has {len(metadata)} rows but X has {X.shape[0]} trials")
        if info.class_names and y.size and np.issubdtype(y.dtype, np.integer):
            if y.min() < 0 or y.max() >= len(info.class_names):
                raise InvalidDataError(
                    f"labels must lie in 0..{len(info.class_names) - 1} (class_names={info.class_names}); "
                    f"found {sorted(np.unique(y).tolist())}")
        self._X, self._y, self.metadata, self.info = X, y, metadata, info

    # -- what scikit-learn sees ---------------------------------------------------------
    @property
    def X(self) -> np.ndarray:
        return self._X

    @property
    def y(self) -> np.ndarray:
        return self._y

    def groups(self, by: str | Sequence[str] = "subject") -> np.ndarray:
        """Group labels for grouped cross-validation.

        Parameters
        ----------
        by : str or list of str
            One metadata column, or several joined with ``"/"`` (e.g. ``["subject", "session"]``).

        Returns
        -------
        groups : ndarray of shape (n_trials,)
        """
        cols = [by] if isinstance(by, str) else list(by)
        unknown = [c for c in cols if c not in self.metadata.columns]
        if unknown:
            raise InvalidDataError(f"no metadata column {unknown}; columns are {list(self.metadata.columns)}")
        if len(cols) == 1:
            return self.metadata[cols[0]].to_numpy()
        return self.metadata[cols].astype(str).agg("/".join, axis=1).to_numpy()

    @property
    def labels(self) -> np.ndarray:
        """Class names per trial, shape (n_trials,)."""
        if not self.info.class_names:
            return self._y
        return np.asarray(self.info.class_names, dtype=object)[self._y]

    def class_counts(self) -> dict:
        """Number of trials per class name, in class order."""
        if not self.info.class_names:
            values, counts = np.unique(self._y, return_counts=True)
            return dict(zip(values.tolist(), counts.tolist()))
        counts = np.bincount(self._y, minlength=len(self.info.class_names))
        return dict(zip(self.info.class_names, counts.tolist()))

    # -- selection and joining ----------------------------------------------------------
    def __len__(self) -> int:
        return self._X.shape[0]

    @property
    def shape(self) -> tuple:
        """``X.shape``; for ragged trials ``(n_trials, n_channels, None)``."""
        if self._X.dtype == object:
            return (len(self._X), self._X[0].shape[0] if len(self._X) else 0, None)
        return self._X.shape

    def __getitem__(self, index) -> "DecodingData":
        """Select trials by integer index, slice or boolean mask."""
        index = np.arange(len(self))[index] if not isinstance(index, slice) else index
        X = self._X[index]
        if X.shape[0] == 0:
            raise EmptySelectionError("the selection matched no trial")
        meta = self.metadata.iloc[index] if isinstance(index, slice) else self.metadata.iloc[np.asarray(index)]
        return DecodingData(X, self._y[index], meta, self.info)

    def select(self, **criteria) -> "DecodingData":
        """Keep the trials whose metadata match every criterion.

        ``data.select(subject=[1, 4], run=4)``: a scalar means equality, a list membership.
        ``classes=[...]`` selects class names (labels are kept, not renumbered).
        """
        mask = np.ones(len(self), dtype=bool)
        for key, wanted in criteria.items():
            wanted_list = list(wanted) if isinstance(wanted, (list, tuple, set, np.ndarray)) else [wanted]
            if key == "classes":
                unknown = set(wanted_list) - set(self.info.class_names)
                if unknown:
                    raise EmptySelectionError(
                        f"unknown class name(s) {sorted(unknown)}; available: {list(self.info.class_names)}")
                column = self.labels
            elif key in self.metadata.columns:
                column = self.metadata[key].to_numpy()
            else:
                raise InvalidDataError(f"no metadata column {key!r}; columns are {list(self.metadata.columns)}")
            mask &= np.isin(column, wanted_list)
        if not mask.any():
            raise EmptySelectionError(f"no trial matches {criteria}")
        return self[mask]

    @classmethod
    def concatenate(cls, parts: Sequence["DecodingData"]) -> "DecodingData":
        """Stack several containers along the trial axis.

        Their signal info must agree (sampling rate, channels, modality); class names are
        merged and labels re-indexed when they differ.
        """
        parts = list(parts)
        if not parts:
            raise EmptySelectionError("nothing to concatenate")
        first = parts[0].info
        for p in parts[1:]:
            if p.info.sfreq != first.sfreq:
                raise InvalidDataError(
                    f"cannot concatenate data sampled at {first.sfreq} Hz and {p.info.sfreq} Hz "
                    f"(dataset {p.metadata['dataset'].iloc[0]!r}, subject {p.metadata['subject'].iloc[0]!r}); "
                    "resample them to one rate first")
            if p.info.ch_names != first.ch_names or p.info.ch_types != first.ch_types:
                raise InvalidDataError(
                    f"cannot concatenate data with different channels: {first.ch_names[:5]}... vs "
                    f"{p.info.ch_names[:5]}... ({len(first.ch_names)} vs {len(p.info.ch_names)})")
            if p.shape[1:] != parts[0].shape[1:] and None not in p.shape + parts[0].shape:
                raise InvalidDataError(f"cannot concatenate trials of shape {parts[0].shape[1:]} and {p.shape[1:]}")
        names = list(first.class_names)
        for p in parts[1:]:
            names += [c for c in p.info.class_names if c not in names]
        ys = []
        for p in parts:
            if p.info.class_names:
                remap = np.array([names.index(c) for c in p.info.class_names], dtype=np.int64)
                ys.append(remap[p.y] if len(p) else p.y)
            else:
                ys.append(p.y)
        info = replace(first, class_names=tuple(names))
        if any(p.X.dtype == object for p in parts) or len({p.shape[1:] for p in parts}) > 1:
            X = [t for p in parts for t in p.X]
        else:
            X = np.concatenate([p.X for p in parts])
        return cls(X, np.concatenate(ys),
                   pd.concat([p.metadata for p in parts], ignore_index=True), info)

    # -- MNE ----------------------------------------------------------------------------
    def to_epochs(self):
        """Convert to :class:`mne.EpochsArray` (3-D EEG/MEG data only).

        Labels become event codes ``label + 1`` with ``event_id`` from the class names; the
        metadata table travels as ``epochs.metadata``; data in microvolts are converted to volts.
        """
        import mne

        if self._X.ndim != 3 or self._X.dtype == object or self.info.sfreq is None:
            raise InvalidDataError("only (n_trials, n_channels, n_times) data with a sampling rate converts to Epochs")
        mne_info = mne.create_info(list(self.info.ch_names), self.info.sfreq, list(self.info.ch_types))
        if self.info.positions is not None:
            with mne_info._unlock():
                for ch, pos in zip(mne_info["chs"], self.info.positions):
                    ch["loc"][:3] = pos
        names = self.info.class_names or tuple(str(v) for v in np.unique(self._y))
        codes = (self._y + 1) if self.info.class_names else np.searchsorted(np.unique(self._y), self._y) + 1
        sample = np.round(self.metadata["onset"].to_numpy(dtype=float) * self.info.sfreq).astype(np.int64)
        events = np.column_stack([sample, np.zeros_like(sample), codes.astype(np.int64)])
        used = sorted(set(codes.tolist()))
        event_id = {names[c - 1]: int(c) for c in used}
        scale = UNITS[self.info.unit]
        return mne.EpochsArray(self._X * scale if scale != 1.0 else self._X, mne_info, events=events,
                               event_id=event_id, tmin=self.info.tmin,
                               metadata=self.metadata.copy(), verbose="error")

    @classmethod
    def from_epochs(cls, epochs, *, dataset: str = "unknown", subject=None, session=None, run=None,
                    modality: str | None = None) -> "DecodingData":
        """Build a container from :class:`mne.Epochs`.

        Labels come from the event codes through ``epochs.event_id`` (class names sorted by
        code). Metadata columns present in ``epochs.metadata`` are kept; missing required ones
        are filled from the keyword arguments.
        """
        if len(epochs) == 0:
            raise EmptySelectionError("the Epochs object holds no epoch")
        code_to_name = {code: name for name, code in epochs.event_id.items()}
        codes = epochs.events[:, 2]
        present = sorted(set(codes.tolist()))
        unknown = set(present) - set(code_to_name)
        if unknown:
            raise InvalidDataError(f"event codes {sorted(unknown)} have no name in event_id {epochs.event_id}")
        class_names = tuple(code_to_name[c] for c in sorted(code_to_name))
        y = np.searchsorted(sorted(code_to_name), codes)
        meta = epochs.metadata.reset_index(drop=True).copy() if epochs.metadata is not None else pd.DataFrame(
            index=range(len(epochs)))
        # Without the Raw at hand, the event sample (which counts from the acquisition start) is
        # the best onset available; loaders that know the run start pass it in the metadata.
        defaults = {"subject": subject, "session": session, "run": run, "dataset": dataset,
                    "onset": epochs.events[:, 0] / epochs.info["sfreq"]}
        for col in METADATA_COLUMNS:
            if col not in meta.columns:
                meta[col] = defaults[col]
        info = SignalInfo.from_mne(epochs.info, class_names=class_names, tmin=epochs.tmin, modality=modality)
        return cls(epochs.get_data(copy=False), y, meta, info)

    def __repr__(self) -> str:
        subjects = self.metadata["subject"].unique()
        datasets = ", ".join(map(str, self.metadata["dataset"].unique()))
        sf = f"{self.info.sfreq:g} Hz" if self.info.sfreq else "no time axis"
        return (f"<DecodingData {datasets}: X {self.shape}, {self.info.modality}, {sf}, "
                f"{len(subjects)} subject(s), classes {self.class_counts()}>")
