"""The benchmark report: score tables, MOABB's statistics, a score plot, a ranking plot, one HTML page.

Built from the fold rows of :func:`~neurodecode.benchmark.runner.run_benchmark` (or a
results folder: there, each pipeline's rows of its latest version, so an edited pipeline's
old rows never mix with its new ones). Pipeline files that failed to load and pipelines that
failed are listed first, in the page and in ``failures.csv``. Folds are first averaged per
subject and session, as MOABB reports scores;
the statistics are MOABB's own (``moabb.analysis.meta_analysis``): paired comparisons of
pipelines over subjects (permutation test under 20 subjects, Wilcoxon above), standardised
mean differences, and their combination across datasets (Stouffer).

The page says, for each evaluation, how its folds were split (:data:`FOLD_SPLITS`) and, for each
dataset and metric, the chance level and how it is computed (:func:`chance_levels`); the score
plot draws those chance levels. Every name from a pipeline file, a dataset card or an error is
HTML-escaped in the page and drawn literally in the figures
(:func:`~neurodecode._utils.plot_text.literal`: a ``$`` is not mathtext).
"""

from __future__ import annotations

import html
import logging
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from .._utils.plot_text import literal
from ..benchmark.planner import LEARNING_CURVE, PSEUDO_ONLINE, RANDOM_STATE, WITHIN_SESSION_FOLDS
from ..benchmark.results import CALIBRATION, latest_version
from ..benchmark.runner import load_results, session_scores

#: Columns of ``failures.csv`` (one row per pipeline file that failed to load or pipeline that failed).
FAILURE_COLUMNS = ("stage", "pipeline", "file", "subject", "error")

#: How each evaluation splits a dataset into training and test folds, as the benchmark runs it.
FOLD_SPLITS = {
    "within-session": (f"per subject and session, stratified {WITHIN_SESSION_FOLDS}-fold cross-validation "
                       f"(MOABB's WithinSessionEvaluation; each fold keeps the class proportions, trials "
                       f"shuffled with random_state={RANDOM_STATE}); training and test trials come from the "
                       "same session of the same subject"),
    "cross-session": ("per subject, leave one session out (MOABB's CrossSessionEvaluation); trained on the "
                      "subject's other sessions, tested on the held-out one"),
    "cross-subject": ("leave one subject out (MOABB's CrossSubjectEvaluation); trained on every other selected "
                      "subject, tested on the held-out subject's sessions; with a calibration mode (MOABB's "
                      "cs_mode, shown in brackets) the first 20 % or 50 % of each of the held-out subject's "
                      "sessions, in recording order, is given to the pipeline as calibration (with or without "
                      "its labels, as the mode says) and the rest is tested (FULL: every trial, unlabelled, "
                      "is both calibration and test)"),
    "transfer": (f"pretrained once on every other selected subject, then, for each of the held-out subject's "
                 f"within-session folds (MOABB's stratified {WITHIN_SESSION_FOLDS}-fold splitter, "
                 f"random_state={RANDOM_STATE}: the same folds as within-session), calibrated on the fold's "
                 "training trials with their labels and tested on its test trials (the row's route says how: "
                 "calibrate, a refit with the routed trials, or none when the pipeline cannot calibrate)"),
    "learning-curve": (f"pretrained once on every other selected subject; the held-out subject's trials split "
                       f"into a fixed stratified test part ({LEARNING_CURVE['test_fraction']:.0%} of each class) "
                       f"and a calibration pool, {LEARNING_CURVE['n_repeats']} random splits; each point "
                       "calibrates on that many pool trials per class with their labels (nested: a point holds "
                       "the previous one's trials), the 0 point on the whole pool without labels (recentring "
                       "only); points beyond the pool are left out"),
    "pseudo-online": (f"per subject, leave one run out over sliding windows ({PSEUDO_ONLINE['window_s']:g} s "
                      f"every {PSEUDO_ONLINE['step_s']:g} s; trained on every {PSEUDO_ONLINE['train_every']}th "
                      "training window, tested on every window of the held-out run)"),
}


def _n_classes(dataset: str, rows: pd.DataFrame):
    """Classes of a dataset: stored with its rows (``n_classes``), else from its package card, else None."""
    if "n_classes" in rows.columns and rows["n_classes"].notna().any():
        return int(rows["n_classes"].max())
    from ..data.errors import NeurodecodeDataError
    from ..data.registry import card_for

    try:
        classes = (card_for(dataset).extra.get("paradigm") or {}).get("classes")
    except NeurodecodeDataError:
        return None
    return len(classes) if classes else None


def chance_levels(results: pd.DataFrame) -> pd.DataFrame:
    """The chance level of each (evaluation, dataset, metric) of the results, and how it is computed.

    ROC AUC and nMCC are 0.5 at chance whatever the class balance; accuracy and balanced
    accuracy are 1 / the number of classes (for accuracy, with balanced classes: a decoder that
    always answers the majority class scores its share). The number of classes is the rows'
    ``n_classes`` when stored, else the dataset's package card; unknown, the level is NaN.

    Parameters
    ----------
    results : pandas.DataFrame
        Fold rows (``evaluation``, ``dataset``, ``metric``, optionally ``n_classes``).

    Returns
    -------
    chance : pandas.DataFrame
        One row per (evaluation, dataset, metric): ``chance`` (float, NaN when unknown) and
        ``computed_as`` (a sentence).
    """
    if "metric" not in results.columns:
        results = results.assign(metric="score")
    rows = []
    for (evaluation, dataset, metric), part in results.groupby(["evaluation", "dataset", "metric"], sort=True):
        if metric == "roc_auc":
            chance, how = 0.5, "ROC AUC of scores unrelated to the class: 0.5 whatever the class balance"
        elif metric == "nmcc":
            chance, how = 0.5, "nMCC = (MCC + 1) / 2 of a constant or random decoder"
        elif metric in ("accuracy", "balanced_accuracy"):
            n = _n_classes(dataset, part)
            chance = np.nan if n is None else 1.0 / n
            how = (f"1 / {n} classes" if n is not None else "1 / the number of classes, which these results do "
                   "not record")
            if metric == "accuracy":
                how += ("; for balanced classes (with unbalanced ones, always answering the majority class "
                        "scores its share)")
        else:
            chance, how = np.nan, f"not known for the metric {metric!r}"
        rows.append({"evaluation": evaluation, "dataset": dataset, "metric": metric, "chance": chance,
                     "computed_as": how})
    return pd.DataFrame(rows, columns=["evaluation", "dataset", "metric", "chance", "computed_as"])


def _how_html(results: pd.DataFrame, chance: pd.DataFrame) -> str:
    """How the folds were split (per evaluation) and what chance is (per dataset and metric)."""
    items = []
    for evaluation, part in results.groupby("evaluation", sort=True):
        folds = sorted(part["n_folds"].dropna().astype(int).unique()) if "n_folds" in part.columns else []
        counted = f" ({', '.join(map(str, folds))} fold(s) per split in these results)" if folds else ""
        base = str(evaluation).split(" [", 1)[0]
        split = FOLD_SPLITS.get(base, "not described: an evaluation this version does not know")
        items.append(f"<li><b>{html.escape(str(evaluation))}</b>: {html.escape(split)}{counted}</li>")
    table = chance.assign(chance=chance["chance"].map(lambda v: "unknown" if pd.isna(v) else f"{v:.3f}"))
    table = table.rename(columns={"chance": "chance level", "computed_as": "computed as"})
    return (f"<h2>How the scores were obtained</h2><p>Folds:</p><ul>{''.join(items)}</ul>"
            "<p>Chance level of each score (the dashed line of the score plot):</p>"
            + table.to_html(index=False, border=0, classes="t f"))


def _literal_names(frame: pd.DataFrame, columns=("dataset", "pipeline", "pipe1", "pipe2")) -> pd.DataFrame:
    """``frame`` with its name columns, index and column labels drawn literally (for MOABB's plots)."""
    frame = frame.copy()
    for column in columns:
        if column in frame.columns:
            frame[column] = frame[column].map(literal)

    def label(value):
        return literal(value) if isinstance(value, str) else value

    frame.index, frame.columns = frame.index.map(label), frame.columns.map(label)
    return frame


def _frame(results, allow_empty: bool = False) -> pd.DataFrame:
    if isinstance(results, (str, Path)):
        results = load_results(results)
    if not isinstance(results, pd.DataFrame):
        raise ValueError(f"benchmark results must be a DataFrame or a results folder, not {type(results).__name__}")
    if results.empty:
        if allow_empty:
            return results
        raise ValueError("no benchmark results to report (an empty table or folder)")
    missing = {"dataset", "pipeline", "subject", "session", "fold", "score"} - set(results.columns)
    if missing:
        raise ValueError(f"results lack column(s) {sorted(missing)}")
    if "evaluation" not in results.columns:
        results = results.assign(evaluation="within-session")
    # One version per pipeline: rows of an edited pipeline (another pipeline_hash) stay in the
    # results file but must not be averaged with the new ones.
    return with_calibration_label(latest_version(results))


def with_calibration_label(results: pd.DataFrame) -> pd.DataFrame:
    """Rows whose evaluation names their calibration too (``"cross-subject [calibration: train]"``).

    Every table and plot groups by evaluation: folding the calibration mode (or the learning
    curve's point) into it keeps rows of different calibrations from ever being averaged together.
    The bare evaluation stays in ``evaluation_base``.
    """
    results = results.assign(evaluation_base=results["evaluation"].astype(str))
    if CALIBRATION not in results.columns:
        return results
    calibration = results[CALIBRATION].fillna("").astype(str)
    labelled = results["evaluation_base"] + " [calibration: " + calibration + "]"
    return results.assign(evaluation=results["evaluation_base"].where(calibration.eq(""), labelled))


def learning_curve_table(results: pd.DataFrame) -> pd.DataFrame:
    """Learning-curve rows as mean and std over subjects of each (dataset, pipeline, trials per class).

    A subject's score at a point is the mean of its repeats. Empty when there are no learning-curve rows.

    Returns
    -------
    table : DataFrame
        Index (dataset, pipeline, trials_per_class); columns ``mean``, ``std``, ``subjects``, ``metric``.
    """
    base = results.get("evaluation_base", results["evaluation"])
    rows = results[base.eq("learning-curve")]
    if rows.empty or "trials_per_class" not in rows.columns:
        return pd.DataFrame(columns=["mean", "std", "subjects", "metric"])
    per_subject = rows.groupby(["dataset", "pipeline", "trials_per_class", "subject"]).agg(
        score=("score", "mean"), metric=("metric", "first"))
    grouped = per_subject.groupby(level=["dataset", "pipeline", "trials_per_class"])
    return pd.DataFrame({"mean": grouped["score"].mean(), "std": grouped["score"].std(ddof=1),
                         "subjects": grouped["score"].count(), "metric": grouped["metric"].first()})


def _learning_curve_plot(table: pd.DataFrame, chance: pd.DataFrame, path) -> None:
    import matplotlib.pyplot as plt

    datasets = table.index.get_level_values("dataset").unique()
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        block = table.xs(dataset, level="dataset")
        for pipeline, part in block.groupby(level="pipeline"):
            points = part.index.get_level_values("trials_per_class").to_numpy()
            ax.errorbar(points, part["mean"], yerr=part["std"].fillna(0.0), marker="o", capsize=3,
                        label=literal(pipeline))
        level = chance[(chance["dataset"] == dataset) & chance["evaluation"].str.startswith("learning-curve")]
        known = level["chance"].dropna().unique()
        if len(known) == 1:
            ax.axhline(known[0], color="k", ls="--", lw=1, label=f"chance ({known[0]:.2f})")
        metric = ", ".join(sorted(block["metric"].dropna().unique()))
        ax.set_xlabel("labelled calibration trials per class of the held-out subject (0: unlabelled, recentring)")
        ax.set_ylabel(f"{metric} on the held-out subject's test part (mean ± std over subjects)")
        ax.set_title(literal(f"{dataset}: calibration learning curve"))
        ax.set_xticks(sorted(block.index.get_level_values("trials_per_class").unique()))
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _learning_curve_html(results: pd.DataFrame, table: pd.DataFrame) -> str:
    base = results.get("evaluation_base", results["evaluation"])
    rows = results[base.eq("learning-curve")]
    left_out = sorted({int(n) for v in rows.get("points_left_out", pd.Series(dtype=object)).dropna()
                       for n in (v if isinstance(v, list) else [])})
    pool = rows["n_pool_per_class"].min() if "n_pool_per_class" in rows.columns else None
    note = (f" Left out (the held-out subject's calibration pool holds only {int(pool)} trial(s) of its smallest "
            f"class): {', '.join(map(str, left_out))} trials per class." if left_out and pool is not None else "")
    shown = table.reset_index().pivot_table(index=["dataset", "pipeline"], columns="trials_per_class",
                                            values="mean")
    return ("<h2>Calibration learning curve</h2><p>" + html.escape(FOLD_SPLITS["learning-curve"]) + "."
            + html.escape(note) + " The dashed line is chance.</p>"
            '<img src="learning_curve.png" alt="learning curve">'
            "<p>Mean over subjects, by labelled calibration trials per class:</p>" + _html_table(shown))


def failure_table(failures) -> pd.DataFrame:
    """The failures of a run as a table (columns :data:`FAILURE_COLUMNS`), empty when there were none.

    Parameters
    ----------
    failures : list of dict or None
        ``results.attrs["failures"]`` of :func:`~neurodecode.benchmark.runner.run_benchmark`.
    """
    rows = [{k: f.get(k) for k in FAILURE_COLUMNS} for f in (failures or [])]
    return pd.DataFrame(rows, columns=list(FAILURE_COLUMNS))


def _failures_html(failures: pd.DataFrame) -> str:
    if failures.empty:
        return ""
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if pd.isna(v) else str(v))}</td>" for v in row) + "</tr>"
        for row in failures.itertuples(index=False))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in failures.columns)
    return (f'<h2 style="color:#b00">Failures ({len(failures)})</h2>'
            "<p>These pipeline files did not load, or these pipelines raised; their results are missing or "
            "incomplete below (details in <code>failures.csv</code> and the results folder's "
            "<code>errors.jsonl</code>).</p>"
            f'<table class="t f"><tr>{head}</tr>{rows}</table>')


def dataset_table(sessions: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and pipeline: mean and std of subject scores, subjects, mean fit time (s)."""
    per_subject = sessions.groupby(["evaluation", "dataset", "pipeline", "subject"])[["score", "fit_time"]].mean()
    grouped = per_subject.groupby(["evaluation", "dataset", "pipeline"])
    table = pd.DataFrame({"mean": grouped["score"].mean(), "std": grouped["score"].std(ddof=1),
                          "subjects": grouped["score"].count(), "fit_time_s": grouped["fit_time"].mean()})
    return table.sort_values(["evaluation", "dataset", "mean"], ascending=[True, True, False])


def subject_table(sessions: pd.DataFrame) -> pd.DataFrame:
    """Subject x pipeline table of scores (sessions averaged), one block per dataset."""
    return sessions.pivot_table(index=["evaluation", "dataset", "subject"], columns="pipeline", values="score",
                                aggfunc="mean")


def pipeline_ranks(sessions: pd.DataFrame) -> pd.DataFrame:
    """Mean rank of each pipeline over subjects (1 = best score on that subject), per dataset.

    Ranks are only comparable among the pipelines a dataset ran (an SSVEP dataset runs fewer than a
    motor-imagery one), so each dataset is ranked on its own.

    Returns
    -------
    ranks : DataFrame
        Index (dataset, pipeline); columns ``mean_rank``, ``wins`` and ``of`` (pipelines ranked).
    """
    parts = []
    for dataset, block in subject_table(sessions).groupby(level="dataset"):
        block = block.dropna(axis=1, how="all")
        ranks = block.rank(axis=1, ascending=False, method="average")
        part = ranks.mean(axis=0).sort_values().to_frame("mean_rank").assign(
            wins=(ranks == 1).sum(axis=0), of=block.shape[1])
        part.index = pd.MultiIndex.from_product([[dataset], part.index], names=["dataset", "pipeline"])
        parts.append(part)
    return pd.concat(parts)


def statistics(sessions: pd.DataFrame):
    """MOABB's pairwise statistics; None when fewer than 2 pipelines or 2 subjects.

    Returns
    -------
    stats : DataFrame
        ``compute_dataset_statistics``: dataset, pipe1, pipe2, p, smd, nsub.
    p_values, effects : DataFrame of shape (n_pipelines, n_pipelines)
        ``find_significant_differences``: combined over datasets.
    """
    from moabb.analysis.meta_analysis import compute_dataset_statistics, find_significant_differences

    frame = sessions[["dataset", "pipeline", "subject", "session", "score"]]
    # MOABB combines effects over datasets pipeline pair by pipeline pair: every dataset in the
    # meta-analysis must hold the same pipelines (an SSVEP dataset runs fewer than a motor-imagery
    # one) and at least two subjects.
    frame = frame.groupby("dataset").filter(lambda d: d["pipeline"].nunique() >= 2 and d["subject"].nunique() >= 2)
    if frame.empty:
        return None
    # The pipelines of the dataset that ran the most, and every dataset that ran all of them.
    ran = {name: set(d["pipeline"]) for name, d in frame.groupby("dataset")}
    widest = max(ran.values(), key=len)
    frame = frame[frame["dataset"].isin([n for n, pipes in ran.items() if widest <= pipes])
                  & frame["pipeline"].isin(widest)]
    stats = compute_dataset_statistics(frame)
    p_values, effects = find_significant_differences(stats)
    return stats, p_values, effects


def pipeline_palette(n_pipelines: int, default) -> list:
    """One colour per pipeline: ``default`` (MOABB's six) while it suffices, else matplotlib's tab10/tab20.

    Beyond the default's length its colours repeat and two pipelines would look the same; past
    20 pipelines, colours cycle through tab20 again.
    """
    import matplotlib.pyplot as plt

    if n_pipelines <= len(default):
        return list(default)
    colors = plt.get_cmap("tab10" if n_pipelines <= 10 else "tab20").colors
    return [colors[k % len(colors)] for k in range(n_pipelines)]


def _score_plot(sessions, path, chance: pd.DataFrame):
    import matplotlib.pyplot as plt
    from moabb.analysis.plotting import score_plot

    from moabb.analysis import plotting

    # One chance line per dataset, drawn only when every dataset's level is known and single (MOABB draws
    # 0.5 for a dataset it is not given, which would be wrong for a four-class accuracy).
    levels = chance.groupby("dataset")["chance"].unique()
    known = all(len(v) == 1 and pd.notna(v[0]) for v in levels)
    chance_level = {literal(d): float(v[0]) for d, v in levels.items()} if known else None
    palette = pipeline_palette(sessions["pipeline"].nunique(), plotting.MOABB_PALETTE)
    with warnings.catch_warnings(), mock.patch.object(plotting, "MOABB_PALETTE", palette):
        warnings.simplefilter("ignore", UserWarning)  # seaborn on a palette longer than the hues
        fig, _ = score_plot(_literal_names(sessions[["dataset", "pipeline", "subject", "session", "score"]]),
                            chance_level=chance_level)
    ax = fig.axes[0]
    # Beside the axes: inside, MOABB's legend covers the points of the first dataset.
    ax.legend(*ax.get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _ranking_plot(ranks, path):
    import matplotlib.pyplot as plt

    several = ranks.index.get_level_values("dataset").nunique() > 1
    labels = [literal(f"{d}: {p}" if several else p) for d, p in ranks.index]
    fig, ax = plt.subplots(figsize=(8 if several else 7, 0.5 * len(ranks) + 1.5))
    ax.barh(labels[::-1], ranks["mean_rank"][::-1], color="#3b7dd8")
    for y, (rank, wins, of) in enumerate(zip(ranks["mean_rank"][::-1], ranks["wins"][::-1], ranks["of"][::-1])):
        ax.text(rank, y, f" {rank:.2f} of {of} ({wins} best)", va="center")
    ax.set_xlabel("mean rank over subjects within each dataset (1 = best)")
    ax.set_xlim(0, ranks["of"].max() + 3.5)
    ax.set_title("Pipeline ranking")
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")  # keeps the bar labels that run past the axes
    plt.close(fig)


def _stats_plots(stats, p_values, effects, out):
    import matplotlib.pyplot as plt
    from moabb.analysis.plotting import meta_analysis_plot, summary_plot

    files = {}
    stats, p_values, effects = _literal_names(stats), _literal_names(p_values), _literal_names(effects)
    # Full names: MOABB's shortening (the first word of a name over 10 characters) gives two pipelines
    # named "ACM+TS+SVM (...)" one label, and its table lookups then fail.
    fig = summary_plot(p_values.copy(), effects.copy(), simplify=False)
    fig.savefig(out / "significance.png", dpi=70, bbox_inches="tight")
    plt.close(fig)
    files["significance"] = "significance.png"
    # The meta-analysis plot compares the two best pipelines (by mean effect against the others).
    best = effects.mean(axis=1).sort_values(ascending=False).index[:2].tolist()
    fig = meta_analysis_plot(stats, best[0], best[1])
    fig.savefig(out / "meta_analysis.png", dpi=70, bbox_inches="tight")
    plt.close(fig)
    files["meta_analysis"] = "meta_analysis.png"
    return files


def _html_table(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_html(float_format=lambda v: f"{v:.{digits}f}", na_rep="-", border=0, classes="t")


def write_report(results, out, failures=None) -> Path:
    """Write tables (CSV), plots (PNG) and ``index.html`` for benchmark results.

    Parameters
    ----------
    results : DataFrame or str or Path
        Fold rows (from :func:`~neurodecode.benchmark.runner.run_benchmark`) or a results
        folder (each pipeline's latest version is reported).
    out : str or Path
        Report folder (created).
    failures : list of dict or None
        Pipeline files that failed to load and pipelines that failed (``stage``,
        ``pipeline``, ``file``, ``subject``, ``error``); default: ``results.attrs["failures"]``
        of a DataFrame from ``run_benchmark``, none for a folder.

    Returns
    -------
    index : Path
        The HTML page; next to it ``failures.csv`` (always, empty when nothing failed) and,
        when there are results, ``scores.png``, ``ranking.png``, with two or more pipelines
        and subjects ``significance.png`` and ``meta_analysis.png``, and the CSV files
        ``datasets.csv``, ``subjects.csv``, ``ranking.csv``, ``statistics.csv`` and
        ``chance.csv`` (:func:`chance_levels`); with learning-curve rows, ``learning_curve.png`` and
        ``learning_curve.csv`` (:func:`learning_curve_table`).

    Raises
    ------
    ValueError
        No results and no failures: nothing to report.
    """
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    if failures is None and isinstance(results, pd.DataFrame):
        failures = results.attrs.get("failures")
    failed = failure_table(failures)
    results = _frame(results, allow_empty=not failed.empty)
    # MOABB logs a warning when dataset names are too short to shorten; nothing to act on.
    logging.getLogger("moabb.analysis.plotting").setLevel(logging.ERROR)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failed.to_csv(out / "failures.csv", index=False)
    if results.empty:
        # Everything failed: the page still says what, rather than no report at all.
        return _write_page(out, "<p>No results: every selected pipeline failed.</p>" + _failures_html(failed))
    sessions = session_scores(results)
    metrics = sorted(results["metric"].dropna().unique()) if "metric" in results.columns else ["score"]
    chance = chance_levels(results)

    datasets = dataset_table(sessions)
    subjects = subject_table(sessions)
    ranks = pipeline_ranks(sessions)
    datasets.to_csv(out / "datasets.csv")
    subjects.to_csv(out / "subjects.csv")
    ranks.to_csv(out / "ranking.csv")
    chance.to_csv(out / "chance.csv", index=False)
    _score_plot(sessions, out / "scores.png", chance)
    _ranking_plot(ranks, out / "ranking.png")
    figures = {"scores": "scores.png", "ranking": "ranking.png"}
    curve = learning_curve_table(results)
    curve_html = ""
    if not curve.empty:
        curve.to_csv(out / "learning_curve.csv")
        _learning_curve_plot(curve, chance, out / "learning_curve.png")
        figures["learning_curve"] = "learning_curve.png"
        curve_html = _learning_curve_html(results, curve)
    stats = statistics(sessions)
    stats_html = "<p>Statistics need at least two pipelines and two subjects.</p>"
    if stats is not None:
        stats_table, p_values, effects = stats
        stats_table.to_csv(out / "statistics.csv", index=False)
        figures.update(_stats_plots(stats_table, p_values, effects, out))
        stats_html = (
            f"<p>Datasets in the meta-analysis (those with two or more subjects, on the pipelines they all ran): "
            f"{html.escape(', '.join(sorted(stats_table['dataset'].unique())))}.</p>"
            "<h3>Combined over datasets: p-values (row better than column)</h3>" + _html_table(p_values, 4)
            + "<h3>Standardised mean differences (row minus column)</h3>" + _html_table(effects, 2)
            + "<h3>Per dataset</h3>" + _html_table(stats_table.drop(columns=["index"], errors="ignore"), 4))

    n_folds = len(results)
    evaluations = ", ".join(sorted(results["evaluation"].unique()))
    failed_note = f" <b>{len(failed)} failure(s), listed below.</b>" if not failed.empty else ""
    body = f"""<p>Evaluation: {html.escape(evaluations)}; metric: {html.escape(", ".join(metrics))};
{results['pipeline'].nunique()} pipeline(s), {results['subject'].nunique()} subject(s), {n_folds} fold row(s).
Scores are fold means per subject and session, as MOABB reports them.{failed_note}</p>
{_failures_html(failed)}
{_how_html(results, chance)}
<h2>Per dataset</h2>{_html_table(datasets)}
{curve_html}
<h2>Scores</h2><img src="{figures['scores']}" alt="score plot">
<h2>Pipeline ranking</h2><img src="{figures['ranking']}" alt="ranking plot">{_html_table(ranks, 2)}
<h2>Statistics (MOABB meta-analysis)</h2>{stats_html}
{''.join(f'<img src="{figures[k]}" alt="{k}">' for k in ("significance", "meta_analysis") if k in figures)}
<h2>Per subject</h2>{_html_table(subjects)}"""
    return _write_page(out, body)


def _write_page(out: Path, body: str) -> Path:
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>neurodecode benchmark report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table.t{{border-collapse:collapse}}
table.t td,table.t th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}} img{{max-width:100%}}
table.f td,table.f th{{text-align:left}}</style>
</head><body>
<h1>Benchmark report</h1>
{body}
</body></html>
"""
    index = out / "index.html"
    index.write_text(page)
    return index


__all__ = ["FAILURE_COLUMNS", "FOLD_SPLITS", "chance_levels", "dataset_table", "failure_table",
           "learning_curve_table", "pipeline_ranks", "statistics", "subject_table", "with_calibration_label",
           "write_report"]
