"""`neurodecode benchmark` on any dataset: subjects outside the staged set, SSVEP + P300 + motor imagery in one run,
a user's card and a BIDS folder, through the command line."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import EEGMMIDB_RUN, write_eegmmidb_bids
from neurodecode.benchmark.runner import BenchmarkConfig, run_benchmark
from neurodecode.data.datasets import eegmmidb

REPO = Path(__file__).resolve().parents[2]
EEGMMIDB_FILES = Path("eegmmidb/MNE-eegbci-data/files/eegmmidb/1.0.0")
COV_TS_LR = REPO / "pipelines" / "COV_TS_LR.yml"
#: Left vs right imagery, as a card or a neurodecode.toml says it.
LEFT_RIGHT = """[paradigm]
name = "imagery"
classes = ["left_hand", "right_hand"]
interval = [0.0, 3.0]
band = [8.0, 32.0]
"""


def _cli(*args, env=None):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "neurodecode.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture
def user_eegmmidb_folder(data_root, tmp_path, monkeypatch):
    """A user's data folder holding eegmmidb subjects 5 and 9 only (links to the shared files)."""
    for subject in (5, 9):
        folder = tmp_path / EEGMMIDB_FILES / f"S{subject:03d}"
        folder.mkdir(parents=True)
        for run in (4, 8, 12):
            name = f"S{subject:03d}R{run:02d}.edf"
            (folder / name).symlink_to(data_root / EEGMMIDB_FILES / f"S{subject:03d}" / name)
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))
    eegmmidb._card.cache_clear()
    yield tmp_path
    eegmmidb._card.cache_clear()


def test_a_folder_with_some_subjects_benchmarks_them(user_eegmmidb_folder, tmp_path):
    out = tmp_path / "out"
    result = _cli("benchmark", str(COV_TS_LR), "--out", str(out), "--no-progress", "--no-report")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = pd.read_json(out / "results.jsonl", lines=True)
    rows = rows[rows.get("score").notna()] if "score" in rows else rows
    assert sorted(rows["subject"].unique().tolist()) == [5, 9]
    assert len(rows) == 10 and rows["dataset"].unique().tolist() == ["eegmmidb"]
    # Subjects that are not there are refused, naming those that are.
    result = _cli("benchmark", str(COV_TS_LR), "--subjects", "1-2", "--out", str(tmp_path / "out2"), "--no-progress")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "subject(s) [1, 2] have no recordings here; present: [5, 9]" in result.stderr


def test_ssvep_p300_and_motor_imagery_in_one_run(data_root, tmp_path):
    out = tmp_path / "out"
    results = run_benchmark(BenchmarkConfig(pipelines_dir=str(REPO / "pipelines"),
                                            datasets=["kalunga2016", "muse_p300", "eegmmidb"], subjects=[1],
                                            pipelines=["COV+TS+LR", "XDAWNCov+TS+SVM"], out=str(out)),
                            progress=False)
    assert results.attrs["failed"] == {}
    counts = results.groupby(["dataset", "pipeline"]).size().to_dict()
    # MOABB's within-session 5-fold per session: Kalunga and eegmmidb have one session, the Muse subject one.
    assert counts == {("eegmmidb", "COV+TS+LR"): 5, ("eegnotebooks_muse_visual_p300", "COV+TS+LR"): 5,
                      ("eegnotebooks_muse_visual_p300", "XDAWNCov+TS+SVM"): 5,
                      ("ssvep_exo_kalunga2016", "COV+TS+LR"): 5}
    metrics = results.groupby("dataset")["metric"].first().to_dict()
    assert metrics == {"eegmmidb": "roc_auc", "eegnotebooks_muse_visual_p300": "roc_auc",
                       "ssvep_exo_kalunga2016": "accuracy"}
    # Above chance on each paradigm (4-class SSVEP: chance 0.25; the two ROC-AUCs: 0.5). Measured here:
    # SSVEP 0.55-0.6, eegmmidb subject 1 0.97, Muse xDAWN 0.6-0.7; the bounds leave room for fold noise.
    means = results.groupby(["dataset", "pipeline"])["score"].mean()
    assert means[("ssvep_exo_kalunga2016", "COV+TS+LR")] > 0.35
    assert means[("eegmmidb", "COV+TS+LR")] > 0.75
    assert means[("eegnotebooks_muse_visual_p300", "XDAWNCov+TS+SVM")] > 0.55
    from neurodecode.reports.benchmark_report import write_report

    index = write_report(results, out / "report")
    html = index.read_text()
    for name in ("eegmmidb", "eegnotebooks_muse_visual_p300", "ssvep_exo_kalunga2016"):
        assert name in html
    # Pipelines are ranked within each dataset: ranks across paradigms would compare unlike things.
    ranks = pd.read_csv(out / "report" / "ranking.csv", index_col=[0, 1])
    assert ranks.loc["ssvep_exo_kalunga2016", "of"].tolist() == [1]
    assert ranks.loc["eegnotebooks_muse_visual_p300", "of"].tolist() == [2, 2]


def test_pseudo_online_runs_on_a_dataset_without_rest_annotations(data_root, tmp_path):
    # Kalunga's cues carry no rest marker between trials: idle is the gap from trial end to next cue.
    results = run_benchmark(BenchmarkConfig(pipelines_dir=str(COV_TS_LR), datasets=["kalunga2016"], subjects=[1],
                                            evaluation="pseudo-online", out=str(tmp_path)), progress=False)
    assert results.attrs["failed"] == {}
    assert len(results) == 2 and set(results["test_runs"].astype(str)) == {"0", "1"}
    assert (results["n_test"] > 1000).all()


def _rows(out):
    rows = pd.read_json(out / "results.jsonl", lines=True)
    return rows[rows["score"].notna()]


def test_a_user_card_runs_through_datasets_and_benchmark(data_root, tmp_path):
    # A lab's own recordings: two eegmmidb subjects' EDFs under their own names, described by a card.
    folder = tmp_path / "my_lab"
    folder.mkdir()
    files = []
    for subject, source in ((101, 1), (102, 2)):
        for run in (4, 8, 12):
            name = f"patient{subject}_run{run}.edf"
            (folder / name).symlink_to(data_root / EEGMMIDB_RUN.format(s=source, r=run))
            files.append(f'[[files]]\npath = "{name}"\nsubject = {subject}\n')
    card = tmp_path / "my_lab.toml"
    card.write_text('name = "my_lab"\nfolder = "my_lab"\n\n' + "\n".join(files) + """
[events]
T0 = "rest"
T1 = "left_hand"
T2 = "right_hand"

""" + LEFT_RIGHT + 'idle = "rest"\n')
    shown = _cli("datasets", "--dataset", str(card))
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "subjects present: [101, 102]" in shown.stdout and "(45, 64, 481)" in shown.stdout
    out = tmp_path / "out"
    result = _cli("benchmark", str(COV_TS_LR), "--datasets", str(card), "--out", str(out), "--no-progress",
                  "--no-report")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _rows(out)
    assert rows["dataset"].unique().tolist() == ["my_lab"] and sorted(rows["subject"].unique()) == [101, 102]
    # The same trials as the package's eegmmidb subjects 1 and 2 (the EDF labels stay as written,
    # e.g. "Fc5."): the scores equal those of the eegmmidb run on the same folds.
    ref = run_benchmark(BenchmarkConfig(pipelines_dir=str(COV_TS_LR), subjects=[1, 2], out=str(tmp_path / "ref")),
                        progress=False)
    assert sorted(rows["score"].round(10)) == sorted(ref["score"].round(10))


def test_a_bids_folder_runs_through_datasets_and_benchmark(data_root, tmp_path):
    root = write_eegmmidb_bids(data_root, tmp_path / "bids", (1, 2))
    (root / "neurodecode.toml").write_text('name = "lab_bids"\n\n' + LEFT_RIGHT)
    shown = _cli("datasets", "--dataset", str(root))
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "subjects present: [1, 2]" in shown.stdout and "(45, 64, 481)" in shown.stdout
    out = tmp_path / "out"
    result = _cli("benchmark", str(COV_TS_LR), "--datasets", str(root), "--out", str(out), "--no-progress",
                  "--no-report")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _rows(out)
    assert rows["dataset"].unique().tolist() == ["lab_bids"] and len(rows) == 10
    bad = _cli("datasets", "--dataset", str(tmp_path))
    assert bad.returncode == 1 and "not a BIDS dataset" in bad.stderr and "Traceback" not in bad.stderr


def test_a_folder_of_recordings_with_an_events_mapping_trains_and_benchmarks(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURODECODE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "night_batch"
    folder.mkdir()
    for subject, source in ((11, 1), (12, 2)):
        for run in (4, 8, 12):
            (folder / f"sub{subject}_r{run:02d}.edf").symlink_to(data_root / EEGMMIDB_RUN.format(s=source, r=run))
    (folder / "neurodecode.toml").write_text("""subject_pattern = 'sub(\\d+)_'

[events]
T1 = "left_hand"
T2 = "right_hand"

""" + LEFT_RIGHT)
    before = sorted(p.name for p in folder.iterdir())
    model = tmp_path / "model.ndm"
    trained = _cli("train", str(COV_TS_LR), "--dataset", str(folder), "--out", str(model))
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "subjects 11,12" in trained.stdout and model.is_file()
    out = tmp_path / "out"
    result = _cli("benchmark", str(COV_TS_LR), "--datasets", str(folder), "--out", str(out), "--no-progress",
                  "--no-report")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _rows(out)
    assert rows["dataset"].unique().tolist() == ["night_batch"] and sorted(rows["subject"].unique()) == [11, 12]
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written into the user's folder
