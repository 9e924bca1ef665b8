"""Timeline of a pseudo-online run: the true state and the decoded state, window after window."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._utils.plot_text import literal


def plot_timeline(times, y_true, y_pred, class_names, *, title: str | None = None, ax=None, path=None):
    """Step plot of the true and the decoded state over one run.

    Parameters
    ----------
    times : array-like of shape (n_decisions,)
        Time of each decision in seconds (e.g. the window end, when a causal decoder decides).
    y_true, y_pred : array-like of shape (n_decisions,)
        Integer labels indexing ``class_names``.
    class_names : sequence of str
        Name of each label, drawn on the y axis.
    title : str or None
    ax : matplotlib Axes or None
        Where to draw; default: a new figure.
    path : path-like or None
        If given, the figure is saved there as PNG.

    Returns
    -------
    fig : matplotlib Figure
    """
    import matplotlib.pyplot as plt

    times, y_true, y_pred = np.asarray(times, dtype=float), np.asarray(y_true), np.asarray(y_pred)
    if not (times.shape == y_true.shape == y_pred.shape) or times.ndim != 1:
        raise ValueError(f"times, y_true and y_pred must be 1-D of one length; got {times.shape}, "
                         f"{y_true.shape}, {y_pred.shape}")
    if times.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= len(class_names)):
        raise ValueError(f"labels must index class_names ({len(class_names)} names)")
    order = np.argsort(times, kind="stable")
    times, y_true, y_pred = times[order], y_true[order], y_pred[order]
    if ax is None:
        fig, ax = plt.subplots(figsize=(12, 2.6), layout="constrained")
    else:
        fig = ax.figure
    # Offsets keep the two traces apart where they agree.
    ax.step(times, y_true + 0.06, where="post", color="black", lw=1.6, label="true state")
    ax.step(times, y_pred - 0.06, where="post", color="tab:orange", lw=1.0, alpha=0.9, label="decoded")
    wrong = y_true != y_pred
    ax.scatter(times[wrong], y_pred[wrong] - 0.06, s=4, color="tab:red", zorder=3,
               label=f"errors ({wrong.mean():.0%})" if times.size else "errors")
    # Names are data: drawn as written (a "$" in one is not mathtext).
    ax.set_yticks(range(len(class_names)), [literal(c) for c in class_names])
    ax.set_ylim(-0.5, len(class_names) - 0.5)
    ax.set_xlabel("time in run (s)")
    ax.legend(loc="upper right", ncol=3, fontsize="small", frameon=False, bbox_to_anchor=(1, 1.25))
    if title:
        ax.set_title(literal(title), loc="left", fontsize="medium")
    if path is not None:
        fig.savefig(Path(path), format="png", dpi=120)
    return fig


__all__ = ["plot_timeline"]
