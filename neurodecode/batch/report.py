"""The batch report: HTML pages with PNG figures, built from a batch's stored results only.

:func:`write_report` reads ``summary.csv`` and ``results/<id>.json`` / ``results/<id>.csv`` of a
batch output folder (:func:`~neurodecode.batch.runner.run_batch`) and writes ``report/index.html``
(the recordings, their status and predicted class counts) and one page per recording: its QC
table, its power spectra (mean per channel group), a scalp map (r² of log band power between
the annotated classes, else band power; only where channel positions were stored) and its
predictions over time with the cue intervals shaded. It can be rebuilt at any time after a run.

The pages are a small self-made HTML rather than MNE's ``Report``, which embeds the recording's
``info`` (measurement date, subject) in its pages. Nothing here reads a recording: a report holds
only what the result files hold, and those hold no name or date (see :mod:`.runner`). A
predictions file whose sha256 differs from the one its result records is not shown.

Every string that comes from a file (a model card's names, a recording's channel names, reasons
quoting a header, ids) is HTML-escaped wherever it is written, attributes included, and drawn
in figures as literal text (:func:`~neurodecode._utils.plot_text.literal`: a ``$`` in a class name is a
dollar sign, not mathtext).

Scores are computed here from each recording's predictions file (:func:`cue_scores`): accuracy
and balanced accuracy over the recording's cued windows, each beside its chance level, and a
recording whose windows were all predicted as one class is shown as such, not as ``ok``.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from .._utils.plot_text import literal
from .manifest import write_atomic
from .runner import RESULTS_DIR, SUMMARY_NAME

__all__ = ["write_report", "cue_scores", "REPORT_DIR", "SINGLE_CLASS"]

REPORT_DIR = "report"
#: How the report shows a scored recording whose windows were all predicted as one class.
SINGLE_CLASS = "single class predicted"
_STATUS_COLOURS = {"ok": "#1a7f37", SINGLE_CLASS: "#9a6700", "flagged": "#b35900", "failed": "#c62828"}
_DPI = 80

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #1f2328;
       max-width: 1280px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; white-space: nowrap; } .muted { color: #656d76; font-size: 13px; }
.reason { max-width: 520px; font-size: 12px; color: #444; }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 10px; font-size: 13px; display: inline-block; }
img { max-width: 100%; } .figs img { margin: 4px 0; }
"""


def _esc(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return html.escape(str(value))


def _href(path: str) -> str:
    """A relative link as an attribute value: percent-encoded (an id is a path segment), then HTML-escaped."""
    return html.escape(quote(str(path)), quote=True)


def _page(title: str, body: str) -> bytes:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n").encode()


def _status(status: str) -> str:
    colour = _STATUS_COLOURS.get(status, "#333")
    return f'<span class="status" style="color:{colour}">{_esc(status)}</span>'


def _table(frame: pd.DataFrame, *, links=None, raw_html=(), numeric=()) -> str:
    """A DataFrame as an HTML table; ``links`` maps a column to a function giving a cell's href.

    Cells are escaped except in the ``raw_html`` columns; numbers, and the ``numeric`` columns
    (numbers written as text), are aligned right.
    """
    links = links or {}
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            value = row[column]
            number = column in numeric or (isinstance(value, (int, float, np.integer, np.floating))
                                           and not isinstance(value, bool))
            if pd.isna(value) if np.isscalar(value) else False:
                text = ""
            elif column in raw_html:
                text = str(value)
            elif isinstance(value, (float, np.floating)):
                text = _esc(f"{value:.3g}")
            else:
                text = _esc(value)
            if column in links and text:
                text = f'<a href="{_href(links[column](row))}">{text}</a>'
            css = ' class="num"' if number else (' class="reason"' if column == "reason" else "")
            cells.append(f"<td{css}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _save(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    # No metadata: the PNG holds only pixels (and is the same bytes on every rebuild).
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def _class_colours(class_names) -> dict:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {c: cmap(i % 10) for i, c in enumerate(class_names)}


def _counts_figure(summary: pd.DataFrame, class_names, path: Path) -> bool:
    import matplotlib.pyplot as plt

    columns = [f"n_{c}" for c in class_names if f"n_{c}" in summary]
    scored = summary[summary["n_windows"].notna()] if "n_windows" in summary else summary.iloc[:0]
    if scored.empty or not columns:
        return False
    colours = _class_colours(class_names)
    height = max(2.5, 0.28 * len(scored) + 1.2)
    height += 0.4  # room for the legend above the bars
    fig, ax = plt.subplots(figsize=(9, height))
    fig.subplots_adjust(left=0.16, right=0.98, top=1 - 0.6 / height, bottom=0.6 / height)
    left = np.zeros(len(scored))
    labels = [literal(i) for i in scored["id"].astype(str)]
    for name, column in zip(class_names, columns):
        values = scored[column].fillna(0).to_numpy(dtype=float)
        ax.barh(labels, values, left=left, color=colours[name], label=literal(name))
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("windows predicted as each class")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(columns), fontsize=8, frameon=False)
    ax.tick_params(axis="y", labelsize=8)
    _save(fig, path)
    return True


def _spectrum_figure(result: dict, path: Path) -> bool:
    import matplotlib.pyplot as plt

    spectrum = result.get("spectrum") or {}
    freqs = np.asarray(spectrum.get("freqs") or [], dtype=float)
    if not len(freqs):
        return False
    # Fixed margins rather than a layout engine: a constrained layout costs a second drawing of every figure.
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    fig.subplots_adjust(left=0.13, right=0.98, top=0.92, bottom=0.14)
    for group, entry in spectrum["groups"].items():
        psd = np.asarray([np.nan if v is None else v for v in entry["psd"]], dtype=float)
        ax.semilogy(freqs, psd * 1e12, label=literal(f"{group} ({len(entry['channels'])})"), lw=1.2)
    band = (result.get("band_power") or {}).get("band")
    if band:
        ax.axvspan(band[0], band[1], color="0.9", zorder=0, label=f"model band {band[0]:g}-{band[1]:g} Hz")
    for f0 in (50, 60):
        if freqs[-1] >= f0:
            ax.axvline(f0, color="0.6", ls=":", lw=0.8)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power (µV²/Hz), mean per group")
    ax.set_xlim(0, freqs[-1])
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("power spectra (Welch, 2 s segments)", fontsize=10)
    _save(fig, path)
    return True


def _map_values(result: dict):
    """(values per channel, colour-bar label, colour map, caption), or (None, ..., note) when there is no map."""
    positions = result.get("positions") or {}
    if not positions.get("source"):
        return None, "", "", positions.get("note", "no channel positions were stored; no scalp map")
    band_power = result.get("band_power") or {}
    r2 = result.get("r2")
    if r2:
        values = np.asarray([np.nan if v is None else v for v in r2["values"]], dtype=float)
        label = "r²" if r2["measure"] == "r2" else "η²"
        caption = (f"{label} of log band power ({r2['band'][0]:g}-{r2['band'][1]:g} Hz) between "
                   + " and ".join(f"{c} ({n} windows)" for c, n in r2["n_windows"].items()))
        cmap = "Reds"
    else:
        power = np.asarray([np.nan if v is None else v for v in band_power["values"]], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):  # a flat channel has no power: no map
            values = np.log10(power * 1e12)
        lo, hi = band_power["band"]
        caption = f"log10 band power (µV²), {lo:g}-{hi:g} Hz (no annotated classes)"
        label, cmap = "log10 µV²", "viridis"
    if not np.isfinite(values).all():
        return None, "", "", "some channels have no finite value (flat or non-finite samples); no scalp map"
    return values, label, cmap, f"{caption}; positions: {positions['source']}"


def _map_caption(result: dict) -> str:
    return _map_values(result)[3]


def _map_figure(result: dict, path: Path) -> tuple[bool, str]:
    """Scalp map of r² between classes (when annotated) or of log band power; (drawn, caption or note)."""
    import matplotlib.pyplot as plt
    import mne

    values, label, cmap, caption = _map_values(result)
    if values is None:
        return False, caption
    positions = result["positions"]
    names = result["band_power"]["channels"]
    info = mne.create_info(list(names), 100.0, "eeg")
    montage = mne.channels.make_dig_montage(ch_pos={n: np.asarray(positions["ch_pos"][n]) for n in names},
                                            coord_frame="head")
    info.set_montage(montage)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    fig.subplots_adjust(left=0.02, right=0.9, top=0.98, bottom=0.02)
    # res=48: the map's grid; MNE's 64 takes most of a report's time and looks the same at this size.
    try:
        image, _ = mne.viz.plot_topomap(values, info, axes=ax, show=False, cmap=cmap, contours=4, sensors=True,
                                        res=48)
    except (RuntimeError, ValueError) as err:  # positions MNE cannot interpolate over (qhull: all on one circle)
        plt.close(fig)
        return False, f"the stored channel positions give no scalp map ({type(err).__name__}); no scalp map"
    fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    _save(fig, path)
    return True, caption


def _timeline_figure(result: dict, table: pd.DataFrame, path: Path) -> bool:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    class_names = (result.get("model") or {}).get("class_names") or sorted(table["predicted"].unique())
    colours = _class_colours(class_names)
    centre = (table["start_s"] + table["end_s"]) / 2
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(11, 3.6), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    fig.subplots_adjust(left=0.07, right=0.99, top=0.97, bottom=0.14, hspace=0.08)
    for start, end, name in result.get("cues") or []:
        for axis in (ax, strip):
            axis.axvspan(start, end, color=colours.get(name, "0.8"), alpha=0.18, lw=0)
    for name in class_names:
        column = f"proba_{name}"
        if column in table:
            ax.plot(centre, table[column], color=colours[name], lw=1.1, label=literal(f"P({name})"))
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("probability")
    handles, labels = ax.get_legend_handles_labels()
    handles += [Patch(color=colours[c], alpha=0.3) for c in class_names]
    labels += [literal(f"cue: {c}") for c in class_names]
    ax.legend(handles, labels, fontsize=7, ncol=4, loc="upper right")
    step = float(np.median(np.diff(table["start_s"]))) if len(table) > 1 else 1.0
    for name in class_names:
        chosen = table["predicted"] == name
        strip.bar(centre[chosen], np.ones(chosen.sum()), width=step, color=colours[name], lw=0)
    strip.set_yticks([])
    strip.set_ylabel("predicted", fontsize=8)
    strip.set_xlabel("time from the first sample (s); windows plotted at their centre")
    _save(fig, path)
    return True


def _qc_table(result: dict) -> str:
    qc = result.get("qc")
    if not qc:
        return '<p class="muted">no QC (the recording was not read or did not match the model)</p>'
    rows = []
    for check in qc["checks"]:
        channels = check.get("channels") or []
        rows.append({"check": check["name"], "passed": _status("ok" if check["passed"] else "failed")
                     .replace(">ok<", ">pass<").replace(">failed<", ">FAIL<"),
                     "value": check["value"], "threshold": check["threshold"],
                     "channels": ", ".join(channels[:12]) + (f" … ({len(channels)})" if len(channels) > 12 else ""),
                     "what is measured": check["description"]})
    return _table(pd.DataFrame(rows), raw_html=("passed",))


def _contract(result: dict) -> str:
    contract = result.get("contract")
    if not contract:
        return ""
    renamed = contract.get("renamed") or {}
    items = [f"extra channels (not used): {len(contract.get('extra_channels') or [])}"
             + (f" ({', '.join(contract['extra_channels'][:8])}{' …' if len(contract['extra_channels']) > 8 else ''})"
                if contract.get("extra_channels") else ""),
             f"channels reordered to the model's order: {'yes' if contract.get('reordered') else 'no'}",
             f"channels renamed (other spellings of the model's names): {len(renamed)}",
             f"channels marked bad in the file, used anyway: {', '.join(contract.get('bads') or []) or 'none'}",
             (f"resampled from {contract['resampled_from']:g} Hz to {(result.get('model') or {}).get('sfreq', 0):g} Hz"
              if contract.get("resampled_from") else "sampling rate: the model's (not resampled)")]
    return "<ul>" + "".join(f"<li>{_esc(i)}</li>" for i in items) + "</ul>"


def _read_predictions(out_dir: Path, result: dict) -> tuple[pd.DataFrame | None, bytes, str]:
    """The predictions table, its bytes, and why it is not shown (when it is not)."""
    predictions = result.get("predictions") or {}
    name = predictions.get("file")
    if not name:
        return None, b"", ""
    path = out_dir / RESULTS_DIR / name
    if not path.is_file():
        return None, b"", "the predictions file is missing; rerun the batch"
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != predictions.get("sha256"):
        return None, b"", "the predictions file does not match its result record (changed since the run); not shown"
    import io

    # Class names are text even when they look like numbers or "NA"; only an empty ``true`` is missing.
    table = pd.read_csv(io.BytesIO(data), dtype={"predicted": str, "true": str}, keep_default_na=False,
                        na_values={"true": [""]})
    return table, data, ""


class _Figures:
    """Figure files named by a hash of what they are drawn from: a rebuild redraws only what changed.

    A figure is drawn when its file is absent; figures that no page references any more are deleted
    at the end, so that a stale figure never outlives the result it was drawn from.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.used: set = set()

    def name(self, rec_id: str, kind: str, source: bytes) -> str:
        tag = hashlib.sha256(source + f"{kind}:{_FIGURES_VERSION}".encode()).hexdigest()[:10]
        name = f"{rec_id}_{kind}_{tag}.png"
        self.used.add(name)
        return name

    def draw(self, name: str, draw) -> bool:
        """Draw with ``draw(path)`` unless the file exists; whether there is a figure."""
        path = self.folder / name
        if path.is_file():
            return True
        drawn = draw(path)
        if not drawn:
            self.used.discard(name)
        return drawn

    def prune(self) -> None:
        for path in self.folder.glob("*.png"):
            if path.name not in self.used:
                path.unlink()


#: Changes whenever the figures' drawing changes, so that a rebuild redraws them all.
_FIGURES_VERSION = "3"


def cue_scores(table: pd.DataFrame, class_names) -> dict | None:
    """Scores of a recording's cued windows, each beside its chance level; None when no window is cued.

    A window is cued when its ``true`` column names one of ``class_names``: the class of the cue
    whose trial interval ``[onset + tmin, onset + tmax]`` covers at least half of it
    (:func:`~neurodecode.data.stream.cue_window_labels`, the rule by which the training trials
    were cut).

    Parameters
    ----------
    table : pandas.DataFrame
        A predictions file (``predicted``, and ``true`` when the recording's cues name the
        model's classes), one row per window.
    class_names : sequence of str
        The model's classes.

    Returns
    -------
    scores : dict or None
        ``n_cued`` (cued windows); ``cued_classes`` (class -> cued windows, in ``class_names``'
        order, classes without a cued window left out); ``accuracy`` (the share of cued windows
        predicted as their cue's class) and its chance level ``accuracy_chance`` (the share of the
        most frequent cued class: what always predicting that class scores); ``balanced_accuracy``
        (the mean over the cued classes of the share of their windows predicted as them) and its
        chance level ``balanced_chance`` (1 / the number of cued classes).
    """
    from ..evaluation.metrics import per_class_recall

    if "true" not in table:
        return None
    cued = table[table["true"].isin(list(class_names))]
    if cued.empty:
        return None
    true, predicted = cued["true"].astype(str).to_numpy(), cued["predicted"].astype(str).to_numpy()
    counts = cued["true"].value_counts()
    classes = [c for c in class_names if counts.get(c, 0) > 0]
    return {"n_cued": int(len(cued)), "cued_classes": {c: int(counts[c]) for c in classes},
            "accuracy": float((true == predicted).mean()), "accuracy_chance": float(counts.max() / len(cued)),
            "balanced_accuracy": float(np.mean(per_class_recall(true, predicted, labels=classes))),
            "balanced_chance": 1.0 / len(classes)}


def _single_class(table: pd.DataFrame | None):
    """The one class predicted for every window of a recording (of two or more windows), else None."""
    if table is None or len(table) < 2:
        return None
    predicted = table["predicted"].astype(str).unique()
    return predicted[0] if len(predicted) == 1 else None


class _Scored:
    """What the report shows of one recording's predictions: read (sha256-checked) once, for its page and the index."""

    def __init__(self, out_dir: Path, result: dict, class_names):
        self.table, self.csv, self.problem = _read_predictions(out_dir, result)
        if self.table is not None and not len(self.table):
            self.table = None
        self.scores = None if self.table is None else cue_scores(self.table, class_names)
        self.single = _single_class(self.table)

    def status(self, status: str) -> str:
        """The status shown: a scored recording predicted as a single class is not shown as ``ok``."""
        if not self.single:
            return status
        return SINGLE_CLASS if status == "ok" else f"{status}; {SINGLE_CLASS}"


def _fmt(value, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


#: How the scores are obtained, said once on the index and on every recording page.
_SCORES_HOW = (
    "Scores are cue-window scores: the recording is cut into sliding windows of the model's trial length; a "
    "window is cued when the trial interval of a cue naming one of the model's classes ([onset + tmin, "
    "onset + tmax], as the training trials were cut) covers at least half of it, and its class is that cue's. "
    "Accuracy is the share of the cued windows predicted as their class; its chance level is the share of the most "
    "frequent cued class (what always predicting that class scores). Balanced accuracy is the mean, over the cued "
    "classes, of the share of their windows predicted correctly; its chance level is 1 / the number of cued "
    "classes. Overlapping windows are not independent trials, and none of this is the cross-validated score "
    "of the model's card.")


def _scores_table(scores: dict) -> str:
    cued = ", ".join(f"{_esc(c)}: {n}" for c, n in scores["cued_classes"].items())
    rows = [("accuracy", scores["accuracy"], scores["accuracy_chance"],
             f"majority-class share of the {scores['n_cued']} cued windows"),
            ("balanced accuracy", scores["balanced_accuracy"], scores["balanced_chance"],
             f"1 / {len(scores['cued_classes'])} cued classes")]
    body = "".join(f'<tr><td>{name}</td><td class="num">{_fmt(value)}</td><td class="num">{_fmt(chance)}</td>'
                   f"<td>{_esc(how)}</td></tr>" for name, value, chance, how in rows)
    return (f"<p>{scores['n_cued']} cued windows ({cued})</p><table><thead><tr><th>score</th><th>value</th>"
            f"<th>chance level</th><th>chance computed as</th></tr></thead><tbody>{body}</tbody></table>")


def _single_class_note(single: str, n_windows: int) -> str:
    return (f'<p class="note"><b>{_esc(SINGLE_CLASS)}</b>: all {n_windows} windows were predicted as '
            f"{_esc(single)}. The model does not tell this recording's classes apart; an accuracy here only "
            "measures how often that class was cued.</p>")


def _model_line(result: dict) -> str:
    model = result.get("model") or {}
    name, sha256 = result.get("model_name") or model.get("name"), result.get("model_sha256")
    if not (name or sha256):
        return ""
    return (f'<p class="muted">model {_esc(name) or "(unnamed)"}; model file sha256 '
            f"<code>{_esc(sha256) or 'not recorded'}</code></p>")


def _recentred_text(result: dict) -> str:
    n_windows = (result.get("recentring") or {}).get("n_windows")
    return (f"recentred without labels: the transfer model was aligned to this recording by the reference of its own "
            f"{n_windows if n_windows is not None else ''} non-overlapping windows before predicting (no label used)")


def _recording_page(report_dir: Path, result: dict, source: bytes, scored: _Scored, figures: _Figures) -> None:
    rec_id = str(result["id"])
    parts = [f'<p><a href="index.html">&larr; all recordings</a></p><h1>recording {_esc(rec_id)}</h1>',
             f"<p>{_status(scored.status(result['status']))} &nbsp; <span class=\"muted\">"
             f"{_esc(result.get('format'))} file"]
    recording = result.get("recording")
    if recording:
        parts[-1] += (f"; {_esc(recording['n_channels'])} channels at {recording['sfreq']:g} Hz, "
                      f"{recording['duration_s']:.1f} s")
    parts[-1] += "</span></p>"
    parts.append(_model_line(result))
    if result.get("reason"):
        parts.append(f'<p class="note">{_esc(result["reason"])}</p>')
    predictions = result.get("predictions") or {}
    if predictions:
        counts = ", ".join(f"{_esc(k)}: {_esc(v)}" for k, v in (predictions.get("counts") or {}).items())
        parts.append(f"<p>{_esc(predictions.get('n_windows'))} windows every {_esc(predictions.get('step_s'))} s; "
                     f"predicted {counts}</p>")
    if result.get("recentred"):
        parts.append(f"<p>{_esc(_recentred_text(result))}</p>")
    if scored.single:
        parts.append(_single_class_note(scored.single, len(scored.table)))
    if scored.table is not None:
        parts.append("<h2>scores on the cued windows</h2>")
        parts.append(_scores_table(scored.scores) if scored.scores else
                     '<p class="muted">no cued window: the recording has no annotation naming the model\'s '
                     "classes (map its markers with --events), so it is not scored</p>")
        parts.append(f'<p class="muted">{_esc(_SCORES_HOW)}</p>')
    if result.get("contract"):
        parts.append("<h2>match to the model</h2>" + _contract(result))
    parts.append("<h2>quality control</h2>" + _qc_table(result))
    if result.get("spectrum"):
        parts.append("<h2>spectra and scalp map</h2><div class=\"figs\">")
        name = figures.name(rec_id, "spectrum", source)
        if figures.draw(name, lambda path: _spectrum_figure(result, path)):
            parts.append(f'<img src="figures/{_href(name)}" alt="power spectra">')
        name = figures.name(rec_id, "map", source)
        said = {"text": _map_caption(result)}  # the caption, or why there is no map once drawing was tried

        def draw_map(path):
            drawn, said["text"] = _map_figure(result, path)
            return drawn

        if figures.draw(name, draw_map):
            parts.append(f'<img src="figures/{_href(name)}" alt="scalp map"><p class="muted">{_esc(said["text"])}</p>')
        else:
            parts.append(f'<p class="note">{_esc(said["text"])}</p>')
        parts.append("</div>")
    if scored.table is not None:
        name = figures.name(rec_id, "timeline", source + scored.csv)
        figures.draw(name, lambda path: _timeline_figure(result, scored.table, path))
        parts.append(f'<h2>predictions over time</h2><img src="figures/{_href(name)}" alt="predictions">'
                     f'<p class="muted">window predictions: <a href="{_href(f"../{RESULTS_DIR}/{rec_id}.csv")}">'
                     f"{_esc(rec_id)}.csv</a>; shaded: trial intervals after each cue</p>")
    elif scored.problem:
        parts.append(f'<h2>predictions over time</h2><p class="note">{_esc(scored.problem)}</p>')
    elif result["status"] == "flagged":
        parts.append('<h2>predictions over time</h2><p class="muted">not scored: the recording failed QC '
                     "(score it anyway with --score-flagged)</p>")
    write_atomic(report_dir / f"{rec_id}.html", _page(f"recording {rec_id}", "\n".join(parts)))


#: The index's score columns (three decimals) and the :func:`cue_scores` key each shows.
_SCORE_COLUMNS = {"accuracy": "accuracy", "chance (majority)": "accuracy_chance",
                  "balanced accuracy": "balanced_accuracy", "chance (1/classes)": "balanced_chance"}


def _index_table(summary: pd.DataFrame, scored: dict, class_names, several_models: bool) -> pd.DataFrame:
    """The recordings as the index shows them: status as shown, scores and chance levels from the predictions."""
    rows = []
    for _, row in summary.iterrows():
        view = scored[row["id"]]
        scores = view.scores or {}
        shown = {"id": row["id"], "format": row.get("format"), "status": _status(view.status(row["status"])),
                 # Long reasons (a list of 56 missing channels) are cut here; each recording's page has them whole.
                 "reason": row["reason"] if not isinstance(row["reason"], str) or len(row["reason"]) <= 160
                 else row["reason"][:157] + "…",
                 "windows": row.get("n_windows")}
        for name in class_names:
            shown[f"n_{name}"] = row.get(f"n_{name}")
        shown["cued windows"] = scores.get("n_cued")
        for column, key in _SCORE_COLUMNS.items():
            shown[column] = _fmt(scores.get(key))
        shown["qc_failed"] = row.get("qc_failed")
        if several_models:
            shown["model sha256"] = str(row.get("model_sha256") or "")[:12]
        rows.append(shown)
    return pd.DataFrame(rows)


def _models_html(results: dict) -> tuple[str, bool]:
    """The model(s) whose results the folder holds (name, file sha256), and whether there are several."""
    models = {}
    for result in results.values():
        name = result.get("model_name") or (result.get("model") or {}).get("name")
        if name or result.get("model_sha256"):
            key = (name, result.get("model_sha256"))
            models[key] = models.get(key, 0) + 1
    if not models:
        return "", False
    items = [f"{_esc(name) or '(unnamed)'}, model file sha256 <code>{_esc(sha256) or 'not recorded'}</code>"
             for name, sha256 in models]
    if len(models) == 1:
        return f"<p>model: {items[0]}</p>", False
    listed = "".join(f"<li>{item}: {n} recording(s)</li>" for item, n in zip(items, models.values()))
    return (f'<p class="note">these results come from {len(models)} different models; compare recordings of one '
            f"model only</p><ul>{listed}</ul>"), True


def write_report(out_dir, report_dir=None) -> Path:
    """Build the HTML report of a batch output folder from its stored results.

    Parameters
    ----------
    out_dir : path-like
        A folder written by :func:`~neurodecode.batch.runner.run_batch`.
    report_dir : path-like or None
        Where to write (default ``out_dir/report``).

    Returns
    -------
    index : Path
        ``report/index.html``.

    Raises
    ------
    FileNotFoundError
        ``out_dir`` holds no ``summary.csv`` (no finished run).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    out_dir = Path(out_dir)
    report_dir = Path(report_dir) if report_dir is not None else out_dir / REPORT_DIR
    summary_path = out_dir / SUMMARY_NAME
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} does not exist: run the batch to the end first")
    summary = pd.read_csv(summary_path, dtype={"id": str}, keep_default_na=False, na_values=[""])
    results, sources = {}, {}
    for rec_id in summary["id"]:
        path = out_dir / RESULTS_DIR / f"{rec_id}.json"
        sources[rec_id] = path.read_bytes() if path.is_file() else b""
        results[rec_id] = json.loads(sources[rec_id]) if path.is_file() else {
            "id": rec_id, "status": "failed", "reason": "its result file is missing; rerun the batch"}
    (report_dir / "figures").mkdir(parents=True, exist_ok=True)
    figures = _Figures(report_dir / "figures")
    model = next((r["model"] for r in results.values() if r.get("model")), {})
    class_names = model.get("class_names") or [c[2:] for c in summary.columns
                                               if c.startswith("n_") and c not in ("n_windows", "n_annotated")]
    scored = {rec_id: _Scored(out_dir, result, class_names) for rec_id, result in results.items()}
    shown_status = [scored[rec_id].status(s) for rec_id, s in zip(summary["id"], summary["status"])]
    n_single = sum(s == SINGLE_CLASS for s in shown_status)  # among the ok ones (a flagged one stays flagged)
    counts = summary["status"].value_counts()
    tally = [(s, int(counts.get(s, 0)) - (n_single if s == "ok" else 0)) for s in ("ok", "flagged", "failed")]
    tally.insert(1, (SINGLE_CLASS, n_single))
    models_html, several_models = _models_html(results)
    body = ["<h1>batch report</h1>",
            f"<p>{len(summary)} recording(s): " + ", ".join(f"{_status(s)} {n}" for s, n in tally) + "</p>",
            models_html]
    if model:
        body.append(f"<p class=\"muted\">classes {_esc(', '.join(class_names))}; windows {_esc(model.get('window'))}"
                    f" s at {_esc(model.get('sfreq'))} Hz; band {_esc(model.get('band'))} Hz. Recordings are named "
                    "by an id (see docs/batch.md, privacy); ok: scored; single class predicted: scored, but every "
                    "window was predicted as the same class; flagged: failed QC (not scored unless asked); failed: "
                    "not scored, reason given.</p>")
    body.append(f'<p class="muted">{_esc(_SCORES_HOW)}</p>')
    shown = _index_table(summary, scored, class_names, several_models)
    n_recentred = sum(bool(r.get("recentred")) for r in results.values())
    if n_recentred:
        shown.insert(shown.columns.get_loc("status") + 1, "recentred",
                     ["yes" if results[rec_id].get("recentred") else "no" for rec_id in shown["id"]])
        body.append(f"<p>{n_recentred} recording(s) recentred without labels: the model is a transfer model with "
                    "alignment, aligned to each recording by the reference of its own windows before predicting.</p>")
    body.append(_table(shown, links={"id": lambda row: f"{row['id']}.html"}, raw_html=("status",),
                       numeric=tuple(_SCORE_COLUMNS)))
    name = figures.name("summary", "class_counts", summary_path.read_bytes())
    if figures.draw(name, lambda path: _counts_figure(summary, class_names, path)):
        body.append(f'<h2>predicted classes per recording</h2><img src="figures/{_href(name)}" alt="class counts">')
    for rec_id, result in results.items():
        _recording_page(report_dir, result, sources[rec_id], scored[rec_id], figures)
    figures.prune()
    index = report_dir / "index.html"
    write_atomic(index, _page("batch report", "\n".join(body)))
    return index
