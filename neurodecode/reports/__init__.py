"""Reports: figures and tables built from results."""

from .benchmark_report import write_report
from .timeline import plot_timeline

__all__ = ["plot_timeline", "write_report"]
