"""Time-ordered cross-validators for windows cut from continuous recordings.

Overlapping windows share samples with their neighbours: a shuffled k-fold puts near-copies of
a test window in the training set and inflates every score. These splitters keep time whole:

* :class:`LeaveOneRunOut`: each run (recording) is a test fold in turn; windows never cross
  runs, so no window straddles train and test.
* :class:`ContiguousBlockSplit`: each recording is cut into ``n_blocks`` contiguous spans of
  time; test fold ``k`` holds the windows *starting* in span ``k`` of every recording.
  **Split rule**: the test windows of a recording cover the interval from the earliest test
  window's start to the latest test window's end; any other window of that recording that
  overlaps this interval (shares even one sample with it) is dropped from training. Test
  folds are never trimmed, so every window is tested exactly once.

Both are scikit-learn cross-validators (``BaseCrossValidator``): they work in
``cross_val_score``, ``cross_validate`` and ``GridSearchCV`` like any other.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils.validation import check_consistent_length


class LeaveOneRunOut(BaseCrossValidator):
    """Each run in turn is the test set; the other runs train.

    ``groups`` names the run of each sample (e.g. ``data.groups(["subject", "session",
    "run"])``). Folds come in order of first appearance in ``groups`` (time order for
    windows from :func:`~neurodecode.data.stream.sliding_windows`).
    """

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return len(self._runs(groups))

    @staticmethod
    def _runs(groups) -> np.ndarray:
        if groups is None:
            raise ValueError("LeaveOneRunOut needs groups: the run of each sample, e.g. data.groups('run')")
        groups = np.asarray(groups)
        _, first = np.unique(groups, return_index=True)
        return groups[np.sort(first)]

    def _iter_test_masks(self, X=None, y=None, groups=None):
        runs = self._runs(groups)
        if X is not None:
            check_consistent_length(X, groups)
        if runs.size < 2:
            raise ValueError(f"LeaveOneRunOut needs at least 2 runs, got {runs.size} ({runs.tolist()})")
        groups = np.asarray(groups)
        for run in runs:
            yield groups == run


class ContiguousBlockSplit(BaseCrossValidator):
    """Contiguous blocks of time as test folds, with overlapping windows purged from training.

    Parameters
    ----------
    n_blocks : int
        Number of folds (>= 2). Each recording's time axis, from its first window's start to
        its last window's end, is cut into ``n_blocks`` equal spans.
    times : array-like of shape (n_windows, 2) or None
        Start and end (first sample after the window) of each window in seconds, e.g.
        ``data.metadata[["onset", "end"]]``. Required by :meth:`split`;
        :meth:`for_data` fills it from a :class:`~neurodecode.data.DecodingData`.

    Notes
    -----
    ``groups`` names the recording of each window (windows of different recordings never
    overlap in time); None means one recording.
    """

    def __init__(self, n_blocks: int = 5, *, times=None):
        self.n_blocks = n_blocks
        self.times = times

    def for_data(self, data) -> "ContiguousBlockSplit":
        """This splitter with ``times`` taken from a window container's metadata."""
        return ContiguousBlockSplit(self.n_blocks, times=data.metadata[["onset", "end"]].to_numpy(dtype=float))

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return int(self.n_blocks)

    def _check(self, X, groups):
        if int(self.n_blocks) != self.n_blocks or self.n_blocks < 2:
            raise ValueError(f"n_blocks must be an integer >= 2, got {self.n_blocks!r}")
        if self.times is None:
            raise ValueError("ContiguousBlockSplit needs the window times: pass times=data.metadata[['onset', 'end']] "
                             "or use ContiguousBlockSplit(...).for_data(data)")
        times = np.asarray(self.times, dtype=float)
        n = times.shape[0] if X is None else len(X)
        if times.shape != (n, 2):
            raise ValueError(f"times must have shape ({n}, 2) (start, end per window), got {times.shape}")
        if not np.all(times[:, 1] > times[:, 0]):
            raise ValueError("every window must end after it starts (times[:, 1] > times[:, 0])")
        groups = np.zeros(n, dtype=int) if groups is None else np.asarray(groups)
        check_consistent_length(times, groups)
        return times, groups

    def _blocks(self, times, groups):
        """Block index of each window: which span of its recording its start falls in."""
        block = np.empty(len(times), dtype=int)
        for g in np.unique(groups):
            sel = groups == g
            t0, t1 = times[sel, 0].min(), times[sel, 1].max()
            edges = np.linspace(t0, t1, int(self.n_blocks) + 1)
            block[sel] = np.clip(np.searchsorted(edges, times[sel, 0], side="right") - 1, 0, int(self.n_blocks) - 1)
        return block

    def split(self, X, y=None, groups=None):
        """Train and test indices of each fold, in time order of the test blocks.

        Yields
        ------
        train : ndarray of int
            Windows outside the test block that share no sample with it.
        test : ndarray of int
            Windows starting in the test block.
        """
        times, groups = self._check(X, groups)
        block = self._blocks(times, groups)
        for k in range(int(self.n_blocks)):
            test = block == k
            train = ~test
            for g in np.unique(groups[test]):
                sel = groups == g
                lo, hi = times[test & sel, 0].min(), times[test & sel, 1].max()
                # A window [s, e) overlaps [lo, hi) when s < hi and e > lo.
                train &= ~(sel & (times[:, 0] < hi) & (times[:, 1] > lo))
            yield np.nonzero(train)[0], np.nonzero(test)[0]

    def _iter_test_masks(self, X=None, y=None, groups=None):
        times, groups = self._check(X, groups)
        block = self._blocks(times, groups)
        for k in range(int(self.n_blocks)):
            yield block == k

    def __repr__(self) -> str:
        return f"ContiguousBlockSplit(n_blocks={self.n_blocks})"


__all__ = ["LeaveOneRunOut", "ContiguousBlockSplit"]
