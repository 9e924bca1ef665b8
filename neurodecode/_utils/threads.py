"""Thread control in one place.

Small-matrix work (64-channel covariances, tangent spaces, connectomes) is dominated by call
overhead, and BLAS libraries that spread each small product over every core run it several times
slower on a 2-core machine than one thread does. Parallelise over folds, subjects or batches
instead, and give each worker one thread.
"""

from __future__ import annotations

import contextlib

import torch
from threadpoolctl import threadpool_limits


def set_threads(n: int) -> None:
    """Use ``n`` threads for BLAS/LAPACK (OpenBLAS, MKL), OpenMP and torch's CPU operations.

    Environment variables (``OPENBLAS_NUM_THREADS=1``...) only act before a library loads; this
    works at any time, in the running process.
    """
    if int(n) < 1:
        raise ValueError(f"the number of threads must be at least 1; got {n!r}")
    threadpool_limits(int(n))
    torch.set_num_threads(int(n))


@contextlib.contextmanager
def threads(n: int):
    """Context manager form of :func:`set_threads`, restoring the previous settings on exit."""
    before = torch.get_num_threads()
    with threadpool_limits(int(n)):
        torch.set_num_threads(int(n))
        try:
            yield
        finally:
            torch.set_num_threads(before)
