"""The benchmark report escapes names from pipeline files, dataset cards and errors, and says what chance is.

Fold rows are made up here (the report is a function of them): pipeline and dataset names and a
failure's file and message carry ``<script>``, an ``onerror=`` attribute, quotes, ``&`` and a
mathtext ``$``. Every HTML page written must parse without a script element or an event-handler
attribute and show the names as text; the figures must draw them. The page must state, for each
evaluation, how the folds were split, and for each dataset and metric, the chance level and how
it is computed.
"""

import numpy as np
import pandas as pd
import pytest
from matplotlib.cbook import is_math_text

# The hostile strings and the page check of the batch report's safety test (tests/ is on the path, as for conftest).
from batch.test_report_safety import assert_safe, hostile, hostile_file
from neurodecode.data.cards import list_cards
from neurodecode.reports import benchmark_report
from neurodecode.reports.timeline import plot_timeline

PIPELINES = [hostile("pipeline A"), hostile("pipeline B")]


def _rows(evaluation, dataset, metric, subjects=(1, 2, 3), n_folds=5, pipelines=PIPELINES, **extra):
    rng = np.random.default_rng(len(dataset))
    rows = []
    for pipeline_index, pipeline in enumerate(pipelines):
        for subject in subjects:
            for fold in range(n_folds):
                rows.append({"evaluation": evaluation, "dataset": dataset, "pipeline": pipeline, "subject": subject,
                             "session": "0", "fold": fold, "n_folds": n_folds, "metric": metric,
                             "score": float(np.clip(0.6 + 0.1 * pipeline_index + rng.normal(0, 0.05), 0, 1)),
                             "fit_time": 0.1, **extra})
    return rows


def _many_class_card():
    """A package dataset card with more than two classes (its accuracy's chance is not 0.5)."""
    for card in list_cards():
        classes = (card.extra.get("paradigm") or {}).get("classes") or []
        if len(classes) > 2:
            return card.name, len(classes)
    pytest.fail("no package dataset card has more than two classes")


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    card_name, card_classes = _many_class_card()
    results = pd.DataFrame(_rows("within-session", hostile("dataset two-class"), "roc_auc")
                           + _rows("within-session", hostile("dataset four-class"), "accuracy", n_classes=4)
                           + _rows("within-session", card_name, "accuracy"))
    failures = [{"stage": "load", "pipeline": hostile("broken pipeline"), "file": hostile_file("broken") + ".yml",
                 "subject": None, "error": hostile("error message")},
                {"stage": "fold", "pipeline": PIPELINES[0], "file": hostile_file("file"), "subject": 2,
                 "error": hostile("fold error")}]
    out = tmp_path_factory.mktemp("benchmark-report")
    index = benchmark_report.write_report(results, out, failures=failures)
    return out, index, results, card_name, card_classes


def test_every_page_escapes_names(hostile_report):
    out, index, results, _, _ = hostile_report
    pages = list(out.glob("*.html"))
    assert pages == [index]
    text = assert_safe(index)
    for name in [*PIPELINES, hostile("dataset two-class"), hostile("dataset four-class"), hostile("error message"),
                 hostile("broken pipeline"), hostile("fold error")]:
        assert name in text, name
    # Every figure was drawn with these names ("$\notacommand$" read as mathtext would have raised).
    for figure in ("scores.png", "ranking.png", "significance.png", "meta_analysis.png"):
        assert (out / figure).stat().st_size > 5000, figure


def test_chance_level_and_fold_split_stated(hostile_report):
    out, index, results, card_name, card_classes = hostile_report
    text = assert_safe(index)
    assert "How the scores were obtained" in text
    assert "stratified 5-fold cross-validation" in text and "random_state=42" in text
    chance = pd.read_csv(out / "chance.csv").set_index("dataset")
    assert chance.loc[hostile("dataset two-class"), "chance"] == 0.5
    assert chance.loc[hostile("dataset four-class"), "chance"] == 0.25
    assert chance.loc[card_name, "chance"] == pytest.approx(1 / card_classes)
    assert "0.250" in text and "1 / 4 classes" in text and "whatever the class balance" in text
    assert f"1 / {card_classes} classes" in text


def test_chance_levels_per_metric():
    frame = pd.DataFrame(_rows("pseudo-online", hostile("d"), "nmcc", n_folds=3)
                         + _rows("cross-subject", "not a package card", "accuracy", n_folds=3))
    chance = benchmark_report.chance_levels(frame).set_index("evaluation")
    assert chance.loc["pseudo-online", "chance"] == 0.5
    assert np.isnan(chance.loc["cross-subject", "chance"])
    assert "do not record" in chance.loc["cross-subject", "computed_as"]


def test_pseudo_online_report_states_its_split_and_chance(tmp_path):
    results = pd.DataFrame(_rows("pseudo-online", hostile("dataset"), "nmcc", n_folds=3))
    index = benchmark_report.write_report(results, tmp_path)
    text = assert_safe(index)
    assert "leave one run out" in text and "(MCC + 1) / 2" in text and "3 fold(s)" in text


def test_timeline_draws_names_literally(tmp_path):
    names = [hostile("rest"), hostile("move")]
    fig = plot_timeline(np.arange(10.0), np.arange(10) % 2, np.zeros(10, int), names, title=hostile("title"),
                        path=tmp_path / "timeline.png")
    assert (tmp_path / "timeline.png").stat().st_size > 1000
    # Drawn as plain text that reads as the name ("\$" is matplotlib's literal dollar).
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()] + [fig.axes[0].get_title(loc="left")]
    assert not any(is_math_text(label) for label in labels)
    assert [label.replace("\\$", "$") for label in labels] == [*names, hostile("title")]


def test_pipelines_sharing_a_first_word_get_their_significance_plot(tmp_path):
    # MOABB's summary plot shortened names over 10 characters to their first word: these two became one
    # label and the report raised "The truth value of a Series is ambiguous".
    pipelines = ["ACM+TS+SVM (selected)", "ACM+TS+SVM (all channels)"]
    results = pd.DataFrame(_rows("within-session", "a dataset", "roc_auc", pipelines=pipelines))
    benchmark_report.write_report(results, tmp_path)
    assert (tmp_path / "significance.png").stat().st_size > 5000
