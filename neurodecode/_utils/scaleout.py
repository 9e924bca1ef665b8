"""Scale-out: the benchmark's folds on a Dask cluster, through joblib's Dask backend.

Each fold is one call of a pure function (:func:`~neurodecode.benchmark.folds.score_fold`),
so where it runs does not change its result: a run on a Dask cluster writes the same rows as a
run in one process. The main process keeps the planning, the data loading and every write to
the result store; workers only fit and score.

``scheduler`` is either the address of a running scheduler (``tcp://host:8786``), or
``"local"`` for a :class:`distributed.LocalCluster` started here (one single-threaded worker
process per core, or ``n_workers``) and closed at the end.
"""

from __future__ import annotations

import contextlib
import os

#: Seconds to wait for a scheduler to answer: an unreachable address fails in this time instead of
#: distributed's default 30 s (a typo in --scheduler should not look like a hang).
CONNECT_TIMEOUT_S = 5.0


class SchedulerUnreachableError(ValueError):
    """The Dask scheduler named by ``scheduler`` did not answer (a wrong address, or it is not running)."""


def _local_cluster(n_workers=None):
    from distributed import LocalCluster

    n_workers = n_workers or os.cpu_count() or 1
    # One thread per worker: the folds themselves are the parallel unit, BLAS stays single-threaded.
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)


def _first_line(err) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


@contextlib.contextmanager
def dask_client(scheduler, n_workers=None, timeout=CONNECT_TIMEOUT_S):
    """A ``distributed.Client`` for ``scheduler`` (an address, or ``"local"``), closed on exit.

    Parameters
    ----------
    scheduler : str
        ``"local"`` or a scheduler address such as ``"tcp://10.0.0.5:8786"``.
    n_workers : int or None
        Workers of a local cluster (default: one per core); ignored for an address.
    timeout : float
        Seconds to wait for the scheduler at an address to answer.

    Raises
    ------
    SchedulerUnreachableError
        Nothing answered at the address within ``timeout`` seconds, or the address is malformed.
    """
    try:
        from distributed import Client
    except ImportError as err:
        raise ImportError("the Dask scale-out needs dask[distributed]: pip install 'dask[distributed]'") from err
    if scheduler == "local":
        with _local_cluster(n_workers) as cluster, Client(cluster) as client:
            yield client
        return
    # Only the connection is guarded: errors raised by the caller's block must pass through unchanged.
    try:
        client = Client(scheduler, timeout=timeout)
    except (ValueError, TypeError) as err:
        raise SchedulerUnreachableError(f"invalid Dask scheduler address {scheduler!r}: {_first_line(err)}; "
                                        "give tcp://HOST:PORT, or 'local'") from None
    except (OSError, TimeoutError) as err:
        raise SchedulerUnreachableError(
            f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s ({_first_line(err)}); "
            "check the address and that dask-scheduler is running, or use --scheduler local") from None
    with client:
        yield client


@contextlib.contextmanager
def joblib_backend(scheduler=None, n_workers=None):
    """Make joblib's ``Parallel`` run on Dask for a while; yield how many workers there are.

    Parameters
    ----------
    scheduler : str or None
        None: no change (joblib's own processes). ``"local"`` or an address: joblib's
        ``"dask"`` backend on that cluster.
    n_workers : int or None
        Workers of a local cluster.

    Yields
    ------
    n_jobs : int
        The number of worker threads on the cluster (1 without a scheduler).
    """
    if scheduler is None:
        yield 1
        return
    import joblib

    with dask_client(scheduler, n_workers) as client:
        n_jobs = sum(client.nthreads().values()) or 1
        with joblib.parallel_config(backend="dask", n_jobs=n_jobs):
            yield n_jobs


__all__ = ["CONNECT_TIMEOUT_S", "SchedulerUnreachableError", "dask_client", "joblib_backend"]
