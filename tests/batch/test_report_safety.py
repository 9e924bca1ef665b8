"""The batch report treats every string from a file as data, and shows scores a clinician can read.

A model file is shared data: its card's names, a recording's file and channel names and its
header are written by someone else. Here a card has ``<script>``, an ``onerror=`` attribute,
quotes, ``&`` and a mathtext ``$`` in every text field, the recordings carry them in their file
names, channel names, annotations and header, and a real batch run (a small COV+TS+LR fitted on
synthetic trials, no dataset needed) is reported. Every HTML page written must parse without a
script element or an event-handler attribute, and must show the strings as text.

The same run checks the report's figures of merit: accuracy and balanced accuracy over the cued
windows beside their chance levels (computed here independently from the predictions files), and
the recording whose windows are all predicted as one class is shown as such, not as ``ok``.
"""

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline

from neurodecode.batch import report as batch_report
from neurodecode.batch.runner import run_batch
from neurodecode.contract.model_file import ModelCard, save_model
from neurodecode.transforms.covariance import Covariances, TangentSpace

SFREQ = 128.0
WINDOW = [0.0, 1.0]
N_TIMES = int(SFREQ) + 1


def hostile(tag: str) -> str:
    """A text field that would run script, break out of an attribute or start mathtext if not escaped."""
    return f"""{tag} <script>alert('{tag}')</script><img src=x onerror=alert(1)> "q" 'a' &amp; & $\\notacommand$"""


def hostile_file(tag: str) -> str:
    """The same without ``/`` (a file name cannot hold one)."""
    return f"""{tag}<script>alert(1)<img src=x onerror=alert(2)>"q"'a'&$x$"""


CLASSES = [hostile("left"), hostile("right")]
CHANNELS = [hostile(f"ch{i}") for i in range(4)]
EXTRA = hostile("extra channel")


class _Page(HTMLParser):
    """Tags, attributes and visible text of an HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, name, value) for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


def assert_safe(page_path: Path) -> str:
    """No script element, no event-handler attribute, no raw ``<script``; returns the page's visible text."""
    source = page_path.read_text()
    assert "<script" not in source.lower(), page_path.name
    assert not re.search(r"<[^>]*\sonerror\s*=", source, re.IGNORECASE), page_path.name
    parser = _Page()
    parser.feed(source)
    parser.close()
    assert "script" not in parser.tags, page_path.name
    handlers = [(t, n) for t, n, _ in parser.attrs if n.lower().startswith("on")]
    assert not handlers, (page_path.name, handlers)
    for _tag, name, value in parser.attrs:
        if name in ("href", "src"):
            assert not (value or "").lower().startswith("javascript:"), (page_path.name, value)
    return "".join(parser.text)


def _trials(rng, n_per_class: int):
    """Trials in µV: class k has a 10 Hz rhythm on channel k over noise."""
    t = np.arange(N_TIMES) / SFREQ
    X, y = [], []
    for label in (0, 1):
        for _ in range(n_per_class):
            x = rng.normal(0, 5, (4, N_TIMES))
            x[label] += 30 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 2 * np.pi))
            X.append(x)
            y.append(label)
    return np.asarray(X), np.asarray(y)


def _card() -> ModelCard:
    return ModelCard(name=hostile("model name"), created="2026-01-01T00:00:00+00:00",
                     neurodecode_version=hostile("version"), versions={hostile("pkg"): hostile("pkg version")},
                     dataset=hostile("dataset"), subjects=[1, 2],
                     paradigm={"kind": hostile("kind"), "classes": CLASSES, "interval": WINDOW, "band": [5.0, 30.0]},
                     sfreq=SFREQ, ch_names=CHANNELS, window=WINDOW, class_names=CLASSES,
                     scores={"metric": hostile("metric"), "mean": 0.9, "std": 0.01, "cv": {hostile("cv"): 1}},
                     pipeline_name=hostile("pipeline"), pipeline_hash=hostile("hash"), notes=hostile("notes"),
                     unit="uV")


SPOTS = [(0.06, 0.0, 0.05), (-0.05, 0.03, 0.06), (0.0, -0.07, 0.04), (0.02, 0.02, 0.09), (-0.03, -0.04, 0.07)]
#: Four positions on one circle: MNE's interpolation (qhull) cannot triangulate them.
ON_A_CIRCLE = [(0.08, 0.0, 0.04), (0.0, 0.08, 0.04), (-0.08, 0.0, 0.04), (0.0, -0.08, 0.04)]


def _recording(rng, rhythm_on, cues, *, channels=CHANNELS, seconds=60.0, amplitude=30e-6,
               spots=SPOTS) -> mne.io.RawArray:
    """A recording in volts: 10 Hz rhythm on channel ``rhythm_on(time)`` (or none), cues named by class."""
    n = int(seconds * SFREQ)
    t = np.arange(n) / SFREQ
    data = rng.normal(0, 5e-6, (len(channels), n))
    for k in range(len(channels)):
        on = np.array([rhythm_on(s) == k for s in t])
        data[k, on] += amplitude * np.sin(2 * np.pi * 10 * t[on])
    info = mne.create_info(list(channels), SFREQ, "eeg")
    raw = mne.io.RawArray(data, info, verbose="error")
    positions = {c: np.array(xyz) for c, xyz in zip(channels, spots)}
    raw.set_montage(mne.channels.make_dig_montage(ch_pos=positions, coord_frame="head"))
    onsets = [c[0] for c in cues] + [1.0]
    names = [c[1] for c in cues] + [hostile("free-text annotation")]
    raw.set_annotations(mne.Annotations(onsets, [WINDOW[1]] * len(onsets), names))
    raw.info["subject_info"] = {"his_id": "Hostile<script>", "last_name": "O'Brien&<b>"}
    return raw


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory):
    """A batch run and its report: a hostile card applied to recordings with hostile names."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("hostile")
    X, y = _trials(rng, 30)
    model = make_pipeline(Covariances("oas"), TangentSpace(), LogisticRegression()).fit(X, y)
    model_path = save_model(model, _card(), root / "hostile.ndm")
    inputs = root / "in"
    inputs.mkdir()
    # Cues every 4 s alternating the classes, the rhythm on the cued class's channel during each trial.
    cues = [(2.0 + 4 * i, CLASSES[i % 2]) for i in range(14)]

    def cued_rhythm(s):
        for onset, name in cues:
            if onset <= s < onset + WINDOW[1]:
                return CLASSES.index(name)
        return None

    decodable = _recording(rng, cued_rhythm, cues, channels=[*CHANNELS, EXTRA])
    decodable.info["bads"] = [CHANNELS[2]]
    decodable.save(inputs / f"{hostile_file('decodable')}_raw.fif", verbose="error")
    # The same cues, but a weaker rhythm on channel 0 throughout (weak enough to pass QC): every window
    # looks like the first class.
    one_class = _recording(rng, lambda s: 0, cues, amplitude=10e-6)
    one_class.save(inputs / f"{hostile_file('oneclass')}_raw.fif", verbose="error")
    flat = _recording(rng, cued_rhythm, cues)
    flat._data[3] = 0.0
    flat.save(inputs / f"{hostile_file('flat')}_raw.fif", verbose="error")
    _recording(rng, cued_rhythm, cues, channels=CHANNELS[:3]).save(inputs / f"{hostile_file('missing')}_raw.fif",
                                                                     verbose="error")
    _recording(rng, cued_rhythm, cues, spots=ON_A_CIRCLE).save(inputs / f"{hostile_file('circle')}_raw.fif",
                                                               verbose="error")
    out = root / "out"
    summary = run_batch(inputs, model_path, out, progress=False, ids="name", step_s=0.25)
    index = batch_report.write_report(out)
    by_name = {rec_id.split("_")[0]: rec_id for rec_id in summary["id"]}
    return out, index, summary, by_name


def test_every_report_page_escapes_what_files_say(hostile_batch):
    out, index, summary, by_name = hostile_batch
    assert set(summary["status"]) == {"ok", "flagged", "failed"}, summary[["id", "status", "reason"]]
    pages = sorted((out / "report").glob("*.html"))
    assert len(pages) == 1 + len(summary)
    texts = {page.stem: assert_safe(page) for page in pages}
    # The strings reach the pages, as text: the model's name and classes, channel names (unused, marked bad,
    # flat, missing) and the predicted counts line that once held raw class names.
    assert _card().name in texts["index"]
    for class_name in CLASSES:
        assert class_name in texts["index"]
        assert f"{class_name}: " in texts[by_name["decodable"]]
    decodable = texts[by_name["decodable"]]
    assert EXTRA in decodable and CHANNELS[2] in decodable
    assert CHANNELS[3] in texts[by_name["flat"]]
    assert CHANNELS[3] in texts[by_name["missing"]]
    # html.escape's form of a class name (quotes included) is what the page holds.
    assert html.escape(CLASSES[0]) in (out / "report" / f"{by_name['decodable']}.html").read_text()
    # Nothing of the header reaches the report.
    assert not any("Brien" in text or "Hostile" in text for text in texts.values())
    # The figures were drawn with these names (a mathtext "$\notacommand$" would have raised).
    figures = {p.name.split("_")[-2] for p in (out / "report" / "figures").glob("*.png")}
    assert {"spectrum", "map", "timeline", "counts"} <= figures


def test_links_and_figures_stay_inside_the_report(hostile_batch):
    out, index, summary, by_name = hostile_batch
    report = out / "report"
    for page in report.glob("*.html"):
        parser = _Page()
        parser.feed(page.read_text())
        for _tag, name, value in parser.attrs:
            if name in ("href", "src"):
                target = (report / value).resolve()
                assert target.is_file(), (page.name, value)
                assert target.is_relative_to(out.resolve())


def test_scores_and_chance_levels_from_the_predictions(hostile_batch):
    out, index, summary, by_name = hostile_batch
    rec_id = by_name["decodable"]
    table = pd.read_csv(out / "results" / f"{rec_id}.csv")
    cued = table[table["true"].isin(CLASSES)]
    assert len(cued) > 20 and cued["predicted"].nunique() == 2
    expected = {"accuracy": (cued["true"] == cued["predicted"]).mean(),
                "accuracy_chance": cued["true"].value_counts().max() / len(cued),
                "balanced_accuracy": balanced_accuracy_score(cued["true"], cued["predicted"]),
                "balanced_chance": 0.5}
    scores = batch_report.cue_scores(table, CLASSES)
    assert scores["n_cued"] == len(cued)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value), key
    page = assert_safe(out / "report" / f"{rec_id}.html")
    assert "balanced accuracy" in page and "chance level" in page and "cue-window" in page
    for key in expected:
        assert f"{expected[key]:.3f}" in page, key
    assert "majority-class share of the" in page and "1 / 2 cued classes" in page
    index_text = assert_safe(index)
    for column in ("balanced accuracy", "chance (majority)", "chance (1/classes)", "cued windows"):
        assert column in index_text
    assert batch_report.SINGLE_CLASS not in page


def test_single_class_recording_is_flagged_not_ok(hostile_batch):
    out, index, summary, by_name = hostile_batch
    rec_id = by_name["oneclass"]
    table = pd.read_csv(out / "results" / f"{rec_id}.csv")
    assert table["predicted"].nunique() == 1, table["predicted"].value_counts()
    assert summary.set_index("id").loc[rec_id, "status"] == "ok"  # the runner scored it
    page = assert_safe(out / "report" / f"{rec_id}.html")
    assert batch_report.SINGLE_CLASS in page and f"all {len(table)} windows were predicted as {CLASSES[0]}" in page
    # In the index, its row's status cell says so, and the tally counts it apart from "ok".
    source = index.read_text()
    row = next(r for r in source.split("<tr>") if f'href="{rec_id}.html"' in r)
    status_cell = re.findall(r'<span class="status"[^>]*>([^<]*)</span>', row)
    assert status_cell == [batch_report.SINGLE_CLASS]
    assert f">{batch_report.SINGLE_CLASS}</span> 1" in source
    ok_rows = [r for r in source.split("<tr>") if '>ok</span></td>' in r]
    assert not any(f'href="{rec_id}.html"' in r for r in ok_rows)


def test_model_name_and_hash_shown(hostile_batch):
    out, index, summary, by_name = hostile_batch
    import json

    result = json.loads((out / "results" / f"{by_name['decodable']}.json").read_text())
    sha256 = result.get("model_sha256")
    assert sha256, "the runner records the model file's sha256 in each result"
    assert sha256 in assert_safe(index) and sha256 in assert_safe(out / "report" / f"{by_name['decodable']}.html")


def test_cue_scores_by_hand():
    table = pd.DataFrame({"predicted": ["a", "a", "a", "a", "a", "b"],
                          "true": ["a", "a", "a", "b", None, None]})
    scores = batch_report.cue_scores(table, ["a", "b"])
    assert scores == {"n_cued": 4, "cued_classes": {"a": 3, "b": 1}, "accuracy": 0.75, "accuracy_chance": 0.75,
                      "balanced_accuracy": 0.5, "balanced_chance": 0.5}
    assert batch_report.cue_scores(table.drop(columns="true"), ["a", "b"]) is None
    assert batch_report.cue_scores(table.assign(true=None), ["a", "b"]) is None


def test_positions_without_a_map_leave_a_note_not_a_crash(hostile_batch):
    # MNE cannot interpolate over four electrodes on one circle (a QhullError): the report said nothing and stopped.
    out, index, summary, by_name = hostile_batch
    rec_id = by_name["circle"]
    page = assert_safe(out / "report" / f"{rec_id}.html")
    assert "the stored channel positions give no scalp map" in page
    assert not list((out / "report" / "figures").glob(f"{rec_id}_map_*.png"))
    assert list((out / "report" / "figures").glob(f"{rec_id}_timeline_*.png"))


def test_the_command_line_summary_notes_single_class_recordings(hostile_batch, tmp_path, capsys):
    from neurodecode.cli import main

    out, _, _, _ = hostile_batch
    code = main(["batch", str(out.parent / "in"), "--model", str(out.parent / "hostile.ndm"), "--out",
                 str(tmp_path / "again"), "--ids", "name", "--step", "0.25", "--no-report", "--no-progress"])
    printed = capsys.readouterr().out
    assert code in (0, 1) and "note: 1 recording(s) had every window predicted as one class" in printed
