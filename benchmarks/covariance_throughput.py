"""Throughput of covariance + tangent space: neurodecode (CPU, GPU) vs pyRiemann (CPU).

Windows of 1 s (64 channels x 160 samples) are cut from real eegmmidb runs (left/right fist
imagery of the first subjects), Cov(oas) + TangentSpace is fitted and applied to all of them,
and windows per second are printed with the ratios to pyRiemann, in one process on the same data.

    OPENBLAS_NUM_THREADS=1 python benchmarks/covariance_throughput.py --n-windows 10000 --devices cpu
    python benchmarks/covariance_throughput.py --export-npz data.npz      # compact float16 copy
    python benchmarks/covariance_throughput.py --npz data.npz --devices cpu cuda   # e.g. on a GPU machine

Fit (the Riemannian mean) and transform are timed together, as a pipeline's fit_transform would be;
``--threads`` sets the torch threads of ours (pyRiemann's BLAS threads come from the environment).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings

import numpy as np

SUBJECTS = (1, 2)
RUNS = (4, 8, 12)


def continuous_runs() -> list[np.ndarray]:
    """The real EEG of a few runs, (64, n_times) each, in microvolts."""
    from neurodecode.data import read_eegmmidb_run

    return [read_eegmmidb_run(s, r).get_data(picks="eeg") * 1e6 for s in SUBJECTS for r in RUNS]


def windows(runs, n_windows: int, length: int = 160) -> np.ndarray:
    """``n_windows`` windows spread evenly over the runs (overlapping when needed)."""
    per_run = -(-n_windows // len(runs))
    out = []
    for run in runs:
        starts = np.linspace(0, run.shape[1] - length, per_run).astype(int)
        out.append(np.stack([run[:, s:s + length] for s in starts]))
    return np.concatenate(out)[:n_windows].astype(np.float64)


def time_it(fn, repeat: int):
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-windows", type=int, default=10000)
    parser.add_argument("--devices", nargs="+", default=["cpu"], help="cpu and/or cuda")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for ours")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (GPU: after a warm-up)")
    parser.add_argument("--npz", help="read the runs from this compact copy instead of NEURODECODE_DATA")
    parser.add_argument("--export-npz", help="write the runs as float16 to this file and stop")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--skip-pyriemann", action="store_true")
    args = parser.parse_args(argv)

    import torch

    if args.export_npz:
        np.savez_compressed(args.export_npz, *[r.astype(np.float16) for r in continuous_runs()])
        print(f"wrote {args.export_npz}")
        return 0
    runs = ([v.astype(np.float64) for v in np.load(args.npz).values()] if args.npz else continuous_runs())
    X = windows(runs, args.n_windows)
    print(f"{len(X)} windows of {X.shape[1]} channels x {X.shape[2]} samples from {len(runs)} real runs; "
          f"torch {torch.__version__}, threads {args.threads}", flush=True)
    torch.set_num_threads(args.threads)

    from neurodecode.transforms.covariance import Covariances, TangentSpace

    rows = []
    reference = None
    if not args.skip_pyriemann:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pyriemann.estimation import Covariances as PyRiemannCovariances
            from pyriemann.tangentspace import TangentSpace as PyRiemannTangentSpace

            def pyriemann_run():
                C = PyRiemannCovariances(estimator="oas").fit_transform(X)
                return PyRiemannTangentSpace(metric="riemann").fit_transform(C)

            seconds, reference = time_it(pyriemann_run, 1)
        rows.append({"library": "pyRiemann 0.12", "device": "cpu", "dtype": "float64", "seconds": seconds})
        print(f"pyRiemann: {len(X) / seconds:,.0f} windows/s", flush=True)

    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"skip {device}: no CUDA device", flush=True)
            continue
        for dtype in args.dtypes:
            def ours_run(device=device, dtype=dtype):
                C = Covariances(estimator="oas", device=device, dtype=dtype).fit_transform(X)
                out = TangentSpace(device=device, dtype=dtype).fit_transform(C)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                return out

            if device.startswith("cuda"):
                ours_run()  # warm-up: CUDA context, kernels, allocator
                torch.cuda.reset_peak_memory_stats()
            seconds, V = time_it(ours_run, args.repeat)
            row = {"library": "neurodecode", "device": device, "dtype": dtype, "seconds": seconds}
            if reference is not None:
                row["max_abs_diff_vs_pyriemann"] = float(np.abs(V - reference).max())
            if device.startswith("cuda"):
                row["gpu"] = torch.cuda.get_device_name()
                row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            rows.append(row)
            print(f"neurodecode {device} {dtype}: {len(X) / seconds:,.0f} windows/s", flush=True)

    base = rows[0]["seconds"] if not args.skip_pyriemann else None
    print(f"\n{'library':<16}{'device':<8}{'dtype':<9}{'windows/s':>12}{'x pyRiemann':>13}{'max |diff|':>12}")
    for row in rows:
        row["windows_per_s"] = len(X) / row["seconds"]
        ratio = f"{base / row['seconds']:.1f}" if base else "-"
        diff = f"{row['max_abs_diff_vs_pyriemann']:.1e}" if "max_abs_diff_vs_pyriemann" in row else "-"
        print(f"{row['library']:<16}{row['device']:<8}{row['dtype']:<9}{row['windows_per_s']:>12,.0f}{ratio:>13}{diff:>12}")
    print(f"peak resident memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n_windows": len(X), "threads": args.threads, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
