"""Throughput of Cov(oas) + TangentSpace fit_transform: neurodecode vs pyRiemann, with a roofline.

Windows of 1 s (64 channels x 160 samples) are cut from real eegmmidb runs (left/right fist
imagery, subjects 1-2, runs 4/8/12), Cov(oas) + TangentSpace(riemann) is fitted and applied to all
of them, in one process on the same data, and the script prints:

* windows per second of pyRiemann on numpy (CPU; the anchor), pyRiemann fed torch tensors on the
  GPU (its array-API path; second anchor, GPU runs only), and neurodecode on the CPU (``--threads``
  torch threads, 1 by default) and on the GPU, with ratios and the largest feature difference to
  pyRiemann (float64 must be within 1e-10);
* a roofline: FLOPs and bytes per window of each step (covariance, Riemannian mean, tangent map)
  counted on the ops neurodecode runs (matrix products by torch's FLOP counter; each symmetric
  eigendecomposition counted as 9 n^3, Golub & Van Loan's figure for QR with vectors; bytes are the
  inputs and outputs of every op, an upper bound on memory traffic), achieved FLOP/s and bytes/s,
  and their fractions of the H200's FP64 peak (67 TFLOP/s, FP64 Tensor Core) and memory bandwidth
  (4.8 TB/s), both from NVIDIA's H200 datasheet;
* a torch.profiler table of the top kernels of one fit_transform (GPU kernels on a GPU);
* windows per second, batch size and peak memory of neurodecode at 1k, 10k and 100k windows
  (``--sizes``); beyond what the runs hold, windows overlap (the same runs cut at more offsets).

The real windows come from the data folder, or from a compact float16 copy of the runs written
once where the data are (so the GPU machine needs neither MNE nor the data folder)::

    NEURODECODE_DATA=../shared/data python benchmarks/covariance_throughput.py --export-npz .gpu_data/eeg_runs.npz
    python benchmarks/covariance_throughput.py --npz .gpu_data/eeg_runs.npz --out docs/measured/riemann_h200
    OPENBLAS_NUM_THREADS=1 python benchmarks/covariance_throughput.py --npz .gpu_data/eeg_runs.npz --smoke --out /tmp/x

Both libraries read the same float64 windows (the float16 copy is converted once).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

SUBJECTS = (1, 2)
RUNS = (4, 8, 12)
H200_FP64_FLOPS = 67e12  # FP64 Tensor Core, NVIDIA H200 (SXM) datasheet
H200_BANDWIDTH = 4.8e12  # bytes/s, HBM3e, same datasheet
EIGH_FLOPS_PER_N3 = 9  # symmetric QR with eigenvectors, Golub & Van Loan


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


class Report:
    """Prints and keeps every line, for the text copy under ``--out``."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_time(fn, repeat: int, device: str):
    best, result = np.inf, None
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def pyriemann_fit_transform(X, keep=None):
    """pyRiemann's Cov(oas) + TangentSpace features; ``keep`` (a dict) receives its covariances and mean."""
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        C = Covariances(estimator="oas").fit_transform(X)
        ts = TangentSpace(metric="riemann")
        V = ts.fit_transform(C)
    if keep is not None:
        keep.update(C=C, M=ts.reference_)
    return V


def converged_pyriemann(C, M):
    """pyRiemann's features with its mean run on from ``M`` to a gradient norm of 1e-12 (not timed)."""
    from pyriemann.geometry.mean import mean_riemann
    from pyriemann.geometry.tangentspace import tangent_space

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tangent_space(C, mean_riemann(C, tol=1e-12, maxiter=200, init=M), metric="riemann")


def ours_fit_transform(X, device: str, dtype: str, batch_size=None):
    from neurodecode.transforms.covariance import Covariances, TangentSpace

    C = Covariances(estimator="oas", device=device, dtype=dtype, batch_size=batch_size).fit_transform(X)
    return TangentSpace(device=device, dtype=dtype, batch_size=batch_size).fit_transform(C)


def count_ops(fn):
    """FLOPs and bytes of the torch ops ``fn`` runs (see the module docstring for the rules)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    totals = {"bytes": 0, "eigh_flops": 0}

    def nbytes(obj):
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, (list, tuple)):
            return sum(nbytes(o) for o in obj)
        return 0

    class Bytes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            totals["bytes"] += nbytes(args) + nbytes(out)
            if "linalg_eigh" in str(func) or "linalg_eigvalsh" in str(func):
                A = args[0]
                totals["eigh_flops"] += EIGH_FLOPS_PER_N3 * A.shape[-1] ** 3 * (A.numel() // A.shape[-1] ** 2)
            return out

    flop_counter = FlopCounterMode(display=False)
    with flop_counter, Bytes():
        result = fn()
    return flop_counter.get_total_flops() + totals["eigh_flops"], totals["bytes"], result


def roofline(X, device: str, repeat: int, say: Report) -> list[dict]:
    """Per-step FLOPs, bytes and times of neurodecode in float64 on ``device``."""
    import torch

    from neurodecode import geometry as g

    T = torch.from_numpy(X).to(device)
    n = len(X)
    steps = {}
    steps["covariance"] = lambda: g.covariances(T, "oas")
    C = steps["covariance"]()
    steps["mean"] = lambda: g.mean_riemann(C)
    M = steps["mean"]()
    steps["tangent map"] = lambda: g.tangent_space(C, M)
    rows = []
    for name, fn in steps.items():
        fn()  # warm-up
        seconds, _ = best_time(fn, repeat, device)
        flops, nbytes, _ = count_ops(fn)
        row = {"step": name, "device": device, "seconds": seconds, "flops_per_window": flops / n,
               "bytes_per_window": nbytes / n, "flop_per_s": flops / seconds, "bytes_per_s": nbytes / seconds}
        row["fraction_fp64_peak"] = row["flop_per_s"] / H200_FP64_FLOPS
        row["fraction_bandwidth"] = row["bytes_per_s"] / H200_BANDWIDTH
        rows.append(row)
    say(f"\nroofline, neurodecode float64 on {device}, {n} windows (fractions of the H200's 67 TFLOP/s FP64 and "
        "4.8 TB/s" + (")" if device.startswith("cuda") else "; a CPU run, for reference only)"))
    say(f"{'step':<13}{'MFLOP/win':>11}{'kB/win':>9}{'FLOP/B':>8}{'ms':>9}{'GFLOP/s':>10}{'GB/s':>9}"
        f"{'% FP64 peak':>13}{'% bandwidth':>13}")
    for r in rows:
        say(f"{r['step']:<13}{r['flops_per_window'] / 1e6:>11.2f}{r['bytes_per_window'] / 1e3:>9.1f}"
            f"{r['flops_per_window'] / r['bytes_per_window']:>8.2f}{r['seconds'] * 1e3:>9.1f}"
            f"{r['flop_per_s'] / 1e9:>10.1f}{r['bytes_per_s'] / 1e9:>9.1f}{100 * r['fraction_fp64_peak']:>13.3f}"
            f"{100 * r['fraction_bandwidth']:>13.3f}")
    return rows


def profile(X, device: str, say: Report) -> str:
    import torch
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    ours_fit_transform(X, device, "float64")
    with torch.profiler.profile(activities=activities) as prof:
        ours_fit_transform(X, device, "float64")
        sync(device)
    key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=15)
    say(f"\ntorch.profiler, one neurodecode fit_transform on {device} (float64), top 15 by {key}:")
    say(table)
    return table


def scaling(runs, sizes, device: str, batch_size, say: Report) -> list[dict]:
    import torch

    rows = []
    say(f"\nscaling, neurodecode float64 on {device} (batch size {batch_size or 'all at once'})")
    say(f"{'windows':>9}{'windows/s':>12}{'peak MB':>10}")
    for size in sizes:
        X = windows(runs, size)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        seconds, _ = best_time(lambda X=X: ours_fit_transform(X, device, "float64", batch_size), 1, device)
        peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
                else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_rss) / 1024)
        rows.append({"n_windows": size, "device": device, "batch_size": batch_size, "seconds": seconds,
                     "windows_per_s": size / seconds, "peak_mb": peak,
                     "peak_kind": "torch.cuda.max_memory_allocated" if device.startswith("cuda")
                     else "growth of the process's peak RSS"})
        say(f"{size:>9}{size / seconds:>12,.0f}{peak:>10,.0f}")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-windows", type=int, default=10000)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for ours on the CPU")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs of ours (after a warm-up)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000],
                        help="window counts of the scaling table (on the GPU, else the CPU; none to skip)")
    parser.add_argument("--batch-size", type=int, default=None, help="matrices per batch in the scaling runs")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script on a CPU")
    parser.add_argument("--npz", help="read the runs from this compact copy instead of NEURODECODE_DATA")
    parser.add_argument("--export-npz", help="write the runs as float16 to this file and stop")
    parser.add_argument("--out", type=Path, help="write results.json and report.txt to this folder")
    parser.add_argument("--skip-pyriemann", action="store_true")
    args = parser.parse_args(argv)

    import torch

    if args.export_npz:
        Path(args.export_npz).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.export_npz, *[r.astype(np.float16) for r in continuous_runs()])
        print(f"wrote {args.export_npz} ({Path(args.export_npz).stat().st_size / 2**20:.1f} MiB)")
        return 0
    if args.smoke:
        args.n_windows, args.sizes, args.repeat = 200, [100, 200, 400], 1
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    runs = ([v.astype(np.float64) for v in np.load(args.npz).values()] if args.npz else continuous_runs())
    X = windows(runs, args.n_windows)
    torch.set_num_threads(args.threads)
    say = Report()
    say(f"{len(X)} windows of {X.shape[1]} channels x {X.shape[2]} samples from {len(runs)} real runs; "
        f"torch {torch.__version__}, {args.threads} torch thread(s) on the CPU"
        + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))

    rows, reference = [], None
    if not args.skip_pyriemann:
        import pyriemann

        kept: dict = {}
        seconds, reference = best_time(lambda: pyriemann_fit_transform(X, kept), 1, "cpu")
        rows.append({"library": f"pyRiemann {pyriemann.__version__}", "device": "cpu", "dtype": "float64",
                     "input": "numpy", "seconds": seconds})
        say(f"pyRiemann (numpy, CPU): {len(X) / seconds:,.0f} windows/s")
        converged = converged_pyriemann(kept["C"], kept["M"])
        del kept
        say("pyRiemann's default tolerance (gradient norm 1e-8) leaves its mean short of convergence: its features "
            f"differ by {np.abs(reference - converged).max():.1e} from its own run to 1e-12; both are compared")
        for device in devices:
            if not device.startswith("cuda"):
                continue
            Xt = torch.from_numpy(X).to(device)
            pyriemann_fit_transform(Xt[:50])  # warm-up: CUDA context and kernels
            seconds, V = best_time(lambda Xt=Xt: pyriemann_fit_transform(Xt), 1, device)
            V = V.cpu().numpy() if isinstance(V, torch.Tensor) else np.asarray(V)
            rows.append({"library": f"pyRiemann {pyriemann.__version__}", "device": device, "dtype": "float64",
                         "input": "torch tensors", "seconds": seconds,
                         "max_abs_diff_vs_pyriemann": float(np.abs(V - reference).max()),
                         "max_abs_diff_vs_pyriemann_converged": float(np.abs(V - converged).max())})
            say(f"pyRiemann (torch tensors, {device}): {len(X) / seconds:,.0f} windows/s")

    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            say(f"skip {device}: no CUDA device")
            continue
        for dtype in args.dtypes:
            ours_fit_transform(X[:50], device, dtype)  # warm-up: CUDA context, kernels, allocator
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            seconds, V = best_time(lambda d=device, t=dtype: ours_fit_transform(X, d, t), args.repeat, device)
            row = {"library": "neurodecode", "device": device, "dtype": dtype, "input": "numpy", "seconds": seconds}
            if reference is not None:
                row["max_abs_diff_vs_pyriemann"] = float(np.abs(V - reference).max())
                row["max_abs_diff_vs_pyriemann_converged"] = float(np.abs(V - converged).max())
                row["max_rel_diff_vs_pyriemann"] = row["max_abs_diff_vs_pyriemann"] / float(np.abs(reference).max())
            if device.startswith("cuda"):
                row["gpu"] = torch.cuda.get_device_name()
                row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            rows.append(row)
            say(f"neurodecode {device} {dtype}: {len(X) / seconds:,.0f} windows/s")

    base = rows[0]["seconds"] if reference is not None else None
    gpu_anchor = next((r["seconds"] for r in rows if r["library"].startswith("pyRiemann")
                       and r["device"] != "cpu"), None)
    say(f"\n{'library':<16}{'input':<15}{'device':<8}{'dtype':<9}{'windows/s':>12}{'x pyRiemann':>13}"
        f"{'x pyR GPU':>11}{'|diff| pyR':>12}{'|diff| conv.':>13}{'<= 1e-10':>10}")
    for row in rows:
        row["windows_per_s"] = len(X) / row["seconds"]
        if base:
            row["ratio_vs_pyriemann_cpu"] = base / row["seconds"]
        if gpu_anchor:
            row["ratio_vs_pyriemann_gpu"] = gpu_anchor / row["seconds"]
        diff = row.get("max_abs_diff_vs_pyriemann")
        conv = row.get("max_abs_diff_vs_pyriemann_converged")
        within = "-" if conv is None or row["dtype"] != "float64" else ("yes" if conv <= 1e-10 else "NO")
        say(f"{row['library']:<16}{row['input']:<15}{row['device']:<8}{row['dtype']:<9}{row['windows_per_s']:>12,.0f}"
            f"{row.get('ratio_vs_pyriemann_cpu', float('nan')):>13.1f}"
            f"{row.get('ratio_vs_pyriemann_gpu', float('nan')):>11.1f}"
            f"{'-' if diff is None else f'{diff:.1e}':>12}{'-' if conv is None else f'{conv:.1e}':>13}{within:>10}")
    if reference is not None:
        say(f"features' largest magnitude: {np.abs(reference).max():.3g}; '|diff| pyR': to pyRiemann at its defaults, "
            "'|diff| conv.': to pyRiemann with its mean run to 1e-12, the check of '<= 1e-10'")

    roof, tables, scale = [], {}, []
    # The roofline, profile and scaling are about the GPU; on a machine without one they run on the CPU.
    analysed = [d for d in devices if d.startswith("cuda") and torch.cuda.is_available()] or ["cpu"]
    for device in analysed:
        roof += roofline(X, device, args.repeat, say)
        tables[device] = profile(X, device, say)
        if args.sizes:
            scale += scaling(runs, args.sizes, device, args.batch_size, say)
    say(f"\npeak resident memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        result = {"n_windows": len(X), "threads": args.threads, "torch": torch.__version__,
                  "peaks": {"fp64_flops": H200_FP64_FLOPS, "bandwidth_bytes_per_s": H200_BANDWIDTH,
                            "source": "NVIDIA H200 datasheet (FP64 Tensor Core; HBM3e bandwidth)"},
                  "throughput": rows, "roofline": roof, "scaling": scale, "profiles": tables,
                  "command": " ".join(sys.argv)}
        (args.out / "results.json").write_text(json.dumps(result, indent=2))
        (args.out / "report.txt").write_text("\n".join(say.lines) + "\n")
        print(f"wrote {args.out / 'results.json'} and {args.out / 'report.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
