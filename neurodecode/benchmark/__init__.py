"""The benchmark application: pipeline files, MOABB glue, the resumable runner, Dask scale-out."""

from .results import ResultStore
from .runner import BenchmarkConfig, load_pipelines, load_results, run_benchmark, session_scores

__all__ = ["BenchmarkConfig", "ResultStore", "load_pipelines", "load_results", "run_benchmark", "session_scores"]
