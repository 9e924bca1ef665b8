"""EEGConnectivity vs mne-connectivity's spectral_connectivity_time, side by side, one process.

Same eegmmidb trials (left/right imagery, X in µV, 160 Hz), same frequencies and
wavelets; for each mode and method it prints the largest absolute difference between the
two band-averaged connectivity matrices (lower triangle, where mne-connectivity writes its
values) and the time ratio mne-connectivity / ours. One JSON line per (mode, method) is
appended to ``<out>/connectivity_eeg.jsonl`` as soon as it exists; a rerun skips the
lines already there.

mne-connectivity is called with ``faverage=False`` and its per-frequency values are
averaged over each band's frequencies (edges included) here: its own ``faverage=True``
(0.9.0) ends each band's slice at twice the index of the band's last frequency, so it
averages theta and alpha over too many frequencies; the script prints that difference too.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NEURODECODE_DATA=/work/shared/data \\
        .venv/bin/python benchmarks/connectivity_eeg.py --subjects 1 --modes cwt_morlet multitaper
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from mne_connectivity import spectral_connectivity_time

from neurodecode.data.datasets.eegmmidb import load_eegmmidb
from neurodecode.transforms.connectivity_eeg import METHODS, EEGConnectivity

SFREQ = 160.0


def mne_band_matrices(X, est: EEGConnectivity, *, faverage: bool = False) -> np.ndarray:
    """mne-connectivity's matrices (n_trials, n_bands, n_channels, n_channels), lower triangle filled."""
    n_trials, n_channels, _ = X.shape
    fmin = tuple(lo for lo, _ in est.bands_.values())
    fmax = tuple(hi for _, hi in est.bands_.values())
    con = spectral_connectivity_time(X, freqs=est.freqs_, method=est.method, sfreq=SFREQ, mode=est.mode,
                                     fmin=fmin, fmax=fmax, faverage=faverage, n_cycles=est.n_cycles,
                                     mt_bandwidth=est.mt_bandwidth, decim=est.decim, verbose="error")
    data = con.get_data().reshape(n_trials, n_channels, n_channels, -1)
    if faverage:
        return np.moveaxis(data, -1, 1)
    freqs = np.asarray(con.freqs)
    return np.stack([data[..., (freqs >= lo) & (freqs <= hi)].mean(axis=-1) for lo, hi in zip(fmin, fmax)], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, nargs="+", default=[1])
    parser.add_argument("--modes", nargs="+", default=["cwt_morlet"], choices=["cwt_morlet", "multitaper"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "connectivity_eeg.jsonl"
    done = set()
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            row = json.loads(line)
            done.add((tuple(row["subjects"]), row["mode"], row["method"]))

    data = load_eegmmidb(args.subjects, progress=False)
    X = data.X
    n_trials, n_channels, n_times = X.shape
    rows, cols = np.tril_indices(n_channels, k=-1)
    print(f"eegmmidb subjects {args.subjects}: {n_trials} trials x {n_channels} channels x {n_times} samples, "
          f"{SFREQ:g} Hz; BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}")
    print(f"{'mode':<11} {'method':<6} {'max|diff|':>10} {'max|value|':>10} {'ours s':>8} {'mne s':>8} {'mne/ours':>8}")
    for mode in args.modes:
        for method in args.methods:
            key = (tuple(args.subjects), mode, method)
            if key in done:
                print(f"{mode:<11} {method:<6} already in {results_file}, skipped")
                continue
            est = EEGConnectivity(method=method, sfreq=SFREQ, output="matrix", mode=mode).fit(X)
            start = time.perf_counter()
            ours = est.transform(X)
            t_ours = time.perf_counter() - start
            start = time.perf_counter()
            ref = mne_band_matrices(X, est)
            t_mne = time.perf_counter() - start
            diff = float(np.abs(ours[:, :, rows, cols] - ref[:, :, rows, cols]).max())
            scale = float(np.abs(ref[:, :, rows, cols]).max())
            print(f"{mode:<11} {method:<6} {diff:10.2e} {scale:10.3f} {t_ours:8.2f} {t_mne:8.2f} {t_mne / t_ours:8.1f}")
            row = {"subjects": list(args.subjects), "mode": mode, "method": method, "n_trials": n_trials,
                   "n_channels": n_channels, "n_times": n_times, "bands": est.bands_, "max_abs_diff": diff,
                   "max_abs_value": scale, "seconds_ours": t_ours, "seconds_mne": t_mne,
                   "ratio_mne_over_ours": t_mne / t_ours}
            with results_file.open("a") as handle:
                handle.write(json.dumps(row) + "\n")

    # mne-connectivity's own band averaging, on a few trials, against the per-frequency mean.
    est = EEGConnectivity(method="coh", sfreq=SFREQ, output="matrix").fit(X)
    few = X[:3]
    per_freq = mne_band_matrices(few, est)
    banded = mne_band_matrices(few, est, faverage=True)
    for b, band in enumerate(est.bands_):
        gap = np.abs(per_freq[:, b, rows, cols] - banded[:, b, rows, cols]).max()
        print(f"mne-connectivity faverage=True vs mean over {band} {est.bands_[band]} Hz: max|diff| {gap:.3g}")


if __name__ == "__main__":
    main()
