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
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .manifest import write_atomic
from .runner import RESULTS_DIR, SUMMARY_NAME

__all__ = ["write_report", "REPORT_DIR"]

REPORT_DIR = "report"
_STATUS_COLOURS = {"ok": "#1a7f37", "flagged": "#b35900", "failed": "#c62828"}
_DPI = 80

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #1f2328;
       max-width: 1280px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; } .muted { color: #656d76; font-size: 13px; }
.reason { max-width: 520px; font-size: 12px; color: #444; }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 10px; font-size: 13px; display: inline-block; }
img { max-width: 100%; } .figs img { margin: 4px 0; }
"""


def _esc(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return html.escape(str(value))


def _page(title: str, body: str) -> bytes:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n").encode()


def _status(status: str) -> str:
    return f'<span class="status" style="color:{_STATUS_COLOURS.get(status, "#333")}">{_esc(status)}</span>'


def _table(frame: pd.DataFrame, *, links=None, raw_html=()) -> str:
    """A DataFrame as an HTML table; ``links`` maps a column to a function giving a cell's href."""
    links = links or {}
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            value = row[column]
            numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            if pd.isna(value) if np.isscalar(value) else False:
                text = ""
            elif column in raw_html:
                text = str(value)
            elif isinstance(value, (float, np.floating)):
                text = _esc(f"{value:.3g}")
            else:
                text = _esc(value)
            if column in links and text:
                text = f'<a href="{_esc(links[column](row))}">{text}</a>'
            css = ' class="num"' if numeric else (' class="reason"' if column == "reason" else "")
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
    labels = scored["id"].astype(str).to_numpy()
    for name, column in zip(class_names, columns):
        values = scored[column].fillna(0).to_numpy(dtype=float)
        ax.barh(labels, values, left=left, color=colours[name], label=name)
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
        ax.semilogy(freqs, psd * 1e12, label=f"{group} ({len(entry['channels'])})", lw=1.2)
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
    image, _ = mne.viz.plot_topomap(values, info, axes=ax, show=False, cmap=cmap, contours=4, sensors=True, res=48)
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
            ax.plot(centre, table[column], color=colours[name], lw=1.1, label=f"P({name})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("probability")
    handles, labels = ax.get_legend_handles_labels()
    handles += [Patch(color=colours[c], alpha=0.3) for c in class_names]
    labels += [f"cue: {c}" for c in class_names]
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
             f"channels renamed (case, padding dots): {len(renamed)}",
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

    return pd.read_csv(io.BytesIO(data)), data, ""


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
_FIGURES_VERSION = "2"


def _recording_page(out_dir: Path, report_dir: Path, result: dict, source: bytes, figures: _Figures) -> None:
    rec_id = result["id"]
    parts = [f'<p><a href="index.html">&larr; all recordings</a></p><h1>recording {_esc(rec_id)}</h1>',
             f"<p>{_status(result['status'])} &nbsp; <span class=\"muted\">{_esc(result.get('format'))} file"]
    recording = result.get("recording")
    if recording:
        parts[-1] += (f"; {recording['n_channels']} channels at {recording['sfreq']:g} Hz, "
                      f"{recording['duration_s']:.1f} s")
    parts[-1] += "</span></p>"
    if result.get("reason"):
        parts.append(f'<p class="note">{_esc(result["reason"])}</p>')
    predictions = result.get("predictions") or {}
    if predictions:
        counts = ", ".join(f"{k}: {v}" for k, v in predictions["counts"].items())
        accuracy = ("" if predictions.get("accuracy") is None else
                    f"; accuracy on the {predictions['n_annotated']} annotated windows: {predictions['accuracy']:.3f}")
        parts.append(f"<p>{predictions['n_windows']} windows every {predictions.get('step_s')} s; predicted {counts}"
                     f"{accuracy}</p>")
    if result.get("contract"):
        parts.append("<h2>match to the model</h2>" + _contract(result))
    parts.append("<h2>quality control</h2>" + _qc_table(result))
    if result.get("spectrum"):
        parts.append("<h2>spectra and scalp map</h2><div class=\"figs\">")
        name = figures.name(rec_id, "spectrum", source)
        if figures.draw(name, lambda path: _spectrum_figure(result, path)):
            parts.append(f'<img src="figures/{name}" alt="power spectra">')
        name = figures.name(rec_id, "map", source)
        caption = _map_caption(result)
        if figures.draw(name, lambda path: _map_figure(result, path)[0]):
            parts.append(f'<img src="figures/{name}" alt="scalp map"><p class="muted">{_esc(caption)}</p>')
        else:
            parts.append(f'<p class="note">{_esc(caption)}</p>')
        parts.append("</div>")
    table, csv, problem = _read_predictions(out_dir, result)
    if table is not None and len(table):
        name = figures.name(rec_id, "timeline", source + csv)
        figures.draw(name, lambda path: _timeline_figure(result, table, path))
        parts.append(f'<h2>predictions over time</h2><img src="figures/{name}" alt="predictions">'
                     f'<p class="muted">window predictions: <a href="../{RESULTS_DIR}/{rec_id}.csv">'
                     f"{rec_id}.csv</a>; shaded: trial intervals after each cue</p>")
    elif problem:
        parts.append(f'<h2>predictions over time</h2><p class="note">{_esc(problem)}</p>')
    elif result["status"] == "flagged":
        parts.append('<h2>predictions over time</h2><p class="muted">not scored: the recording failed QC '
                     "(score it anyway with --score-flagged)</p>")
    write_atomic(report_dir / f"{rec_id}.html", _page(f"recording {rec_id}", "\n".join(parts)))


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
    counts = summary["status"].value_counts()
    body = ["<h1>batch report</h1>",
            f"<p>{len(summary)} recording(s): " + ", ".join(f"{_status(s)} {int(counts.get(s, 0))}"
                                                            for s in ("ok", "flagged", "failed")) + "</p>"]
    if model:
        body.append(f"<p class=\"muted\">model {_esc(model.get('name'))}: classes {_esc(', '.join(class_names))}; "
                    f"windows {_esc(model.get('window'))} s at {_esc(model.get('sfreq'))} Hz; band "
                    f"{_esc(model.get('band'))} Hz. Recordings are named by an id (see docs/batch.md, privacy); "
                    "ok: scored; flagged: failed QC (not scored unless asked); failed: not scored, reason given.</p>")
    shown = summary.copy()
    shown["status"] = [_status(s) for s in summary["status"]]
    # Long reasons (a list of 56 missing channels) are cut here; each recording's page has them whole.
    shown["reason"] = [r if not isinstance(r, str) or len(r) <= 160 else r[:157] + "…" for r in summary["reason"]]
    body.append(_table(shown, links={"id": lambda row: f"{row['id']}.html"}, raw_html=("status",)))
    name = figures.name("summary", "class_counts", summary_path.read_bytes())
    if figures.draw(name, lambda path: _counts_figure(summary, class_names, path)):
        body.append(f'<h2>predicted classes per recording</h2><img src="figures/{name}" alt="class counts">')
    for rec_id, result in results.items():
        _recording_page(out_dir, report_dir, result, sources[rec_id], figures)
    figures.prune()
    index = report_dir / "index.html"
    write_atomic(index, _page("batch report", "\n".join(body)))
    return index
