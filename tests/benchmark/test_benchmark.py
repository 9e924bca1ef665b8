"""`neurodecode benchmark` on real eegmmidb data: fold rows, kill and resume, concurrent runs, Dask, deep nets,
report, pipeline versions, failures, pipeline files as code, the progress bar."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from neurodecode.benchmark.runner import BenchmarkConfig, run_benchmark, session_scores
from neurodecode.contract.pipeline_files import load_pipelines
from neurodecode.benchmark.results import ResultStore, row_key
from neurodecode.reports.benchmark_report import pipeline_palette, write_report

REPO = Path(__file__).resolve().parents[2]
CHEAP = ["BandPower+LDA", "Cov+TS+LR"]
COV_TS_LR = """name: Cov+TS+LR
paradigms: [LeftRightImagery]
pipeline:
  - name: Covariances
    from: pyriemann.estimation
    parameters: {estimator: oas}
  - name: TangentSpace
    from: pyriemann.tangentspace
  - name: LogisticRegression
    from: sklearn.linear_model
"""


@pytest.fixture(scope="module")
def cheap_pipelines(tmp_path_factory):
    """Two cheap pipelines: the repository's band-power LDA and a covariance/tangent-space LR."""
    folder = tmp_path_factory.mktemp("pipelines")
    (folder / "BANDPOWER_LDA.yml").write_text((REPO / "pipelines" / "BANDPOWER_LDA.yml").read_text())
    (folder / "COV_TS_LR.yml").write_text(COV_TS_LR)
    return folder


def _command(pipelines, out, subjects="1-2"):
    return [sys.executable, "-m", "neurodecode.cli", "benchmark", str(pipelines), "--subjects", subjects,
            "--out", str(out), "--no-report", "--no-progress"]


def _env():
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _scores(results: pd.DataFrame) -> pd.Series:
    return results.set_index(["pipeline", "subject", "session", "fold"])["score"].sort_index()


@pytest.fixture(scope="module")
def reference(cheap_pipelines, tmp_path_factory, data_root):
    """An uninterrupted single-process run: 2 subjects x 2 pipelines x 5 folds."""
    out = tmp_path_factory.mktemp("reference")
    results = run_benchmark(BenchmarkConfig(pipelines_dir=str(cheap_pipelines), subjects=[1, 2], out=str(out)),
                            progress=False)
    return out, results


def test_load_pipelines_reports_and_skips_broken_files(tmp_path):
    (tmp_path / "good.yml").write_text(COV_TS_LR)
    (tmp_path / "bad.yml").write_text("name: Bad\nparadigms: [LeftRightImagery]\npipeline:\n"
                                      "  - name: NoSuchStep\n    from: sklearn.svm\n")
    (tmp_path / "nodict.py").write_text("X = 1\n")
    pipelines, failures = load_pipelines(tmp_path)
    assert [p.name for p in pipelines] == ["Cov+TS+LR"]
    assert {Path(f).name for f, _ in failures} == {"bad.yml", "nodict.py"}
    assert any("NoSuchStep" in message for _, message in failures)
    assert any("PIPELINE" in message for _, message in failures)


def test_result_store_cuts_partial_lines_and_keeps_first_writer(tmp_path):
    store = ResultStore(tmp_path)
    row = {"evaluation": "within-session", "dataset": "d", "pipeline": "p", "subject": 1, "session": "0",
           "fold": 0, "score": 0.75}
    assert store.append([row]) == 1
    # A writer killed mid-line leaves a tail without newline: readers skip it, the next writer cuts it.
    with open(store.results_path, "a") as fh:
        fh.write('{"evaluation": "within-session", "dataset": "d", "pip')
    assert len(store.rows()) == 1
    assert store.append([{**row, "score": 0.1}]) == 0  # same key: the first value stays
    assert store.append([{**row, "fold": 1, "score": 0.5}]) == 1
    lines = store.results_path.read_text().splitlines()
    assert [json.loads(line)["score"] for line in lines] == [0.75, 0.5]
    with pytest.raises(ValueError, match="fold"):
        store.append([{"evaluation": "x", "dataset": "d", "pipeline": "p", "subject": 1, "session": "0"}])


def test_reference_run_has_moabb_folds(reference):
    _, results = reference
    assert len(results) == 20 and results["fold"].nunique() == 5
    assert set(results["pipeline"]) == set(CHEAP)
    assert results.groupby(["pipeline", "subject"])["n_test"].sum().eq(45).all()  # each trial tested once
    assert results["score"].between(0, 1).all() and results["score"].std() > 0
    assert (results["metric"] == "roc_auc").all()
    sessions = session_scores(results)
    assert len(sessions) == 4 and (sessions["n_folds"] == 5).all()


def test_killed_run_resumes_without_recomputing(cheap_pipelines, reference, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(cheap_pipelines, out), cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results_file = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if results_file.is_file() and results_file.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = ResultStore(out).rows()
    assert 2 <= len(before) < 20, f"the run was not killed midway ({len(before)} rows)"

    done = subprocess.run(_command(cheap_pipelines, out), cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{20 - len(before)} fold row(s) written, {len(before)} already stored (skipped)" in done.stdout
    after = ResultStore(out).rows()
    assert after[:len(before)] == before  # finished folds untouched (same fit times: not refitted)
    assert len({row_key(r) for r in after}) == len(after) == 20
    assert _scores(pd.DataFrame(after)).equals(_scores(reference[1]))
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 2 and runs[0]["subjects_run"] == {"eegmmidb": [1, 2]}


def test_two_concurrent_runs_share_one_folder(cheap_pipelines, reference, tmp_path):
    out = tmp_path / "shared"
    procs = [subprocess.Popen(_command(cheap_pipelines, out), cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line is whole JSON
    assert len({row_key(r) for r in rows}) == len(rows) == 20
    assert _scores(pd.DataFrame(rows)).equals(_scores(reference[1]))


def test_dask_local_cluster_equals_single_process(cheap_pipelines, reference, tmp_path):
    import distributed  # a declared dependency: missing means a broken install, not a skip
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        results = run_benchmark(BenchmarkConfig(pipelines_dir=str(cheap_pipelines), subjects=[1, 2],
                                                out=str(tmp_path / "dask"), scheduler=cluster.scheduler_address),
                                progress=False)
        workers = len(cluster.scheduler_info["workers"])
    assert workers == 2
    assert _scores(results).equals(_scores(reference[1]))


def test_deep_pipeline_one_epoch_on_cpu(data_root, tmp_path, monkeypatch):
    """One epoch of EEGNet per fold really trains: its weights move, its loss is finite, its outputs vary.

    A score in [0, 1] proves nothing (a network that never steps scores about 0.5, a collapsed
    one exactly 0.5), so the test watches each fit, in this process, through the Trainer (weights
    before and after, the loss) and the DeepClassifier (the trials it was given, its outputs).
    """
    import numpy as np
    import torch

    from neurodecode.models import DeepClassifier
    from neurodecode.training import Trainer

    fits = []
    trainer_fit, classifier_fit = Trainer.fit, DeepClassifier.fit

    def watched_trainer_fit(self, model, X, y=None, **kwargs):
        before = {k: p.detach().clone() for k, p in model.named_parameters()}
        result = trainer_fit(self, model, X, y, **kwargs)
        after = dict(result.model.named_parameters())
        moved = torch.cat([(after[k].detach() - before[k]).flatten() for k in before]).norm()
        size = torch.cat([before[k].flatten() for k in before]).norm()
        fits.append({"relative_change": float(moved / size), "loss": result.history[-1]["train_loss"],
                     "epochs": len(result.history), "split": (result.n_train, result.n_val)})
        return result

    def watched_fit(self, X, y):
        out = classifier_fit(self, X, y)
        fits[-1].update(n_train=len(X), distinct=len(np.unique(np.round(self.predict_proba(X), 6), axis=0)))
        return out

    monkeypatch.setattr(Trainer, "fit", watched_trainer_fit)
    monkeypatch.setattr(DeepClassifier, "fit", watched_fit)
    monkeypatch.setenv("NEURODECODE_DEEP_EPOCHS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    results = run_benchmark(BenchmarkConfig(pipelines_dir=str(REPO / "pipelines" / "EEGNet.py"), subjects=[1],
                                            out=str(tmp_path)), progress=False)
    assert results.attrs["failed"] == {}
    assert len(results) == 5 and set(results["pipeline"]) == {"EEGNet"}
    assert results["n_train"].tolist() == [36] * 5 and results["n_test"].sum() == 45  # every trial tested once
    assert len(fits) == 5 and [f["n_train"] for f in fits] == [36] * 5
    for fit in fits:
        # 36 trials: 7 or 8 held out for validation (20% of each class, rounded), the others trained
        # on in one epoch of one AdamW step (batch 64): about lr (1e-3) per weight, some 1e-2 of the
        # weights' norm (measured 0.0069 in each fold). Weight decay alone would move them by 1e-5.
        assert sum(fit["split"]) == 36 and fit["split"][1] in (7, 8) and fit["epochs"] == 1, fit
        assert fit["relative_change"] > 1e-3, fit
        assert np.isfinite(fit["loss"]), fit
        assert fit["distinct"] > 1, f"constant predictions on the training trials: {fit}"


def test_report_files_and_html(reference, tmp_path):
    index = write_report(reference[0], tmp_path / "report")
    html = index.read_text()
    for name in ("scores.png", "ranking.png", "significance.png", "meta_analysis.png"):
        assert (tmp_path / "report" / name).stat().st_size > 1000
        assert f'src="{name}"' in html
    table = pd.read_csv(tmp_path / "report" / "subjects.csv", index_col=[0, 1, 2])
    expected = session_scores(reference[1]).pivot(index="subject", columns="pipeline", values="score")
    assert table.loc[("within-session", "eegmmidb")].to_numpy() == pytest.approx(expected.to_numpy())
    stats = pd.read_csv(tmp_path / "report" / "statistics.csv")
    assert set(stats["pipe1"]) == set(CHEAP) and (stats["nsub"] == 2).all()


def test_every_pipeline_gets_its_own_colour_in_the_score_plot():
    from moabb.analysis.plotting import MOABB_PALETTE

    # MOABB's palette alone would give the 7th pipeline the 1st one's colour (the main job runs 10).
    assert pipeline_palette(4, MOABB_PALETTE) == list(MOABB_PALETTE)
    for n in (len(MOABB_PALETTE) + 1, 10, 12, 20):
        colours = pipeline_palette(n, MOABB_PALETTE)
        assert len(colours) == n and len(set(map(tuple, colours))) == n


# -- results keyed by the pipeline's content ------------------------------------------------

BANDPOWER_LDA = """name: BP+LDA
paradigms: [LeftRightImagery]
pipeline:
  - name: BandPower
    from: neurodecode.transforms.spectral
    parameters: {{bands: {{mu: [8, 13], beta: [13, 30]}}, method: welch, log: true}}
  - name: LinearDiscriminantAnalysis
    from: sklearn.discriminant_analysis
    parameters: {{solver: lsqr, shrinkage: {shrinkage}}}
"""


def test_edited_pipeline_is_recomputed_and_never_mixed_with_its_old_rows(data_root, tmp_path):
    from neurodecode.benchmark.runner import load_results

    folder, out = tmp_path / "pipelines", tmp_path / "out"
    folder.mkdir()
    pipeline_file = folder / "bp_lda.yml"
    pipeline_file.write_text(BANDPOWER_LDA.format(shrinkage="auto"))
    config = BenchmarkConfig(pipelines_dir=str(folder), subjects=[1], out=str(out))
    first = run_benchmark(config, progress=False)
    assert first.attrs["written"] == 5

    pipeline_file.write_text(BANDPOWER_LDA.format(shrinkage=0.99))  # the same name, another pipeline
    second = run_benchmark(config, progress=False)
    assert second.attrs["written"] == 5 and second.attrs["skipped"] == 0, "the edited pipeline must be recomputed"
    assert first["pipeline_hash"].nunique() == 1 and len(second) == 5 and second["pipeline_hash"].nunique() == 1
    assert (first["neurodecode_version"] == __import__("neurodecode").__version__).all()
    assert first["data_key"].str.len().gt(0).all(), "the eegmmidb dataset has a fingerprint"
    assert second["pipeline_hash"].iloc[0] != first["pipeline_hash"].iloc[0]
    assert not _scores(second).equals(_scores(first)), "shrinkage 0.99 and auto cannot score alike on 5 folds"

    # Nothing computed is lost: the old rows stay in the file, before the new ones.
    stored = load_results(out)
    assert len(stored) == 10 and stored.iloc[:5]["pipeline_hash"].eq(first["pipeline_hash"].iloc[0]).all()
    # The report of the folder is of one version only, the latest.
    write_report(out, tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "subjects.csv", index_col=[0, 1, 2])
    assert table["BP+LDA"].tolist() == pytest.approx([second["score"].mean()])

    # Unchanged again: reused, not recomputed.
    third = run_benchmark(config, progress=False)
    assert third.attrs["written"] == 0 and third.attrs["skipped"] == 5
    assert _scores(third).equals(_scores(second))


def test_pipeline_hash_is_the_same_in_another_process():
    """No memory address or object id leaks into the hash (the deep pipelines hold classes and partials)."""
    files = [REPO / "pipelines" / name for name in ("BANDPOWER_LDA.yml", "CONN_SVM.yml", "EEGNet.py")]
    code = ("import sys, json; from neurodecode.contract.pipeline_files import load_pipelines; "
            "print(json.dumps({p.name: p.hash for f in sys.argv[1:] for p in load_pipelines(f)[0]}))")
    runs = [subprocess.run([sys.executable, "-c", code, *map(str, files)], capture_output=True, text=True,
                           env={**_env(), "NEURODECODE_DEEP_EPOCHS": "3"}, timeout=300, check=True)
            for _ in range(2)]
    hashes = [json.loads(run.stdout.strip().splitlines()[-1]) for run in runs]
    assert hashes[0] == hashes[1] and len(hashes[0]) == 3
    assert len(set(hashes[0].values())) == 3 and all(len(h) == 16 for h in hashes[0].values())


# -- failures are reported and fail the run --------------------------------------------------

BOOM_PY = '''from sklearn.base import BaseEstimator, ClassifierMixin


class Boom(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        raise ValueError("boom: this pipeline always fails")


PIPELINE = {"name": "Boom", "paradigms": ["LeftRightImagery"], "pipeline": Boom()}
'''


def test_failed_pipelines_exit_1_and_are_listed_in_the_report(data_root, tmp_path, capsys):
    from neurodecode.cli import main

    folder, out = tmp_path / "pipelines", tmp_path / "out"
    folder.mkdir()
    (folder / "bp_lda.yml").write_text(BANDPOWER_LDA.format(shrinkage="auto"))
    (folder / "broken.yml").write_text("name: Broken\nparadigms: [LeftRightImagery]\npipeline:\n"
                                       "  - name: NoSuchStep\n    from: sklearn.svm\n")
    command = ["benchmark", str(folder), "--subjects", "1", "--out", str(out), "--no-progress"]
    # A file that does not load is a failure, even when every pipeline that loaded ran.
    assert main(command) == 1
    assert "FAILED pipeline file" in capsys.readouterr().out

    (folder / "boom.py").write_text(BOOM_PY)
    assert main(command) == 1
    failures = pd.read_csv(out / "report" / "failures.csv")
    assert failures[["stage", "pipeline"]].values.tolist() == [["load", "Broken"], ["run", "Boom"]]
    assert Path(failures["file"][0]).name == "broken.yml" and Path(failures["file"][1]).name == "boom.py"
    assert "NoSuchStep" in failures["error"][0]
    assert failures["error"][1] == "ValueError: boom: this pipeline always fails"
    page = (out / "report" / "index.html").read_text()
    for text in ("Failures (2)", "broken.yml", "NoSuchStep", "Boom", "boom.py", "boom: this pipeline always fails"):
        assert text in page
    assert "BP+LDA" in page  # the pipeline that ran is reported as usual


# -- pipeline files are code: only selected files are loaded, and nothing is written next to them --

EVIL_YML = """name: Evil
paradigms: [LeftRightImagery]
pipeline:
  - name: system
    from: os
    parameters: {{command: "touch {marker}"}}
"""


def test_unselected_pipeline_files_are_never_executed(data_root, tmp_path):
    from neurodecode.cli import main

    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "bp_lda.yml").write_text(BANDPOWER_LDA.format(shrinkage="auto"))
    yml_marker, py_marker = tmp_path / "yaml_ran", tmp_path / "python_ran"
    (folder / "evil.yml").write_text(EVIL_YML.format(marker=yml_marker))
    (folder / "evil_py.py").write_text(f"import pathlib\npathlib.Path({str(py_marker)!r}).touch()\n"
                                       "PIPELINE = {'name': 'EvilPy', 'paradigms': [], 'pipeline': None}\n")
    code = main(["benchmark", str(folder), "--pipelines", "BP+LDA", "--subjects", "1", "--out", str(tmp_path / "out"),
                 "--no-report", "--no-progress"])
    assert code == 0
    assert not yml_marker.exists() and not py_marker.exists(), "a file --pipelines did not select was executed"

    # The markers do detect execution: loading the files on purpose runs them.
    load_pipelines(folder / "evil.yml")
    load_pipelines(folder / "evil_py.py")
    assert yml_marker.exists() and py_marker.exists()


def test_declared_names_are_read_without_running_the_file(tmp_path):
    from neurodecode.contract.pipeline_files import declared_names

    marker = tmp_path / "ran"
    (tmp_path / "evil.yml").write_text(EVIL_YML.format(marker=marker))
    (tmp_path / "multi.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nname = 'A'\n"
                                       "PIPELINE = [{'name': 'B', 'pipeline': None}, dict(name='not literal')]\n")
    (tmp_path / "tagged.yml").write_text("name: !!python/object/apply:os.system ['touch " + str(marker) + "']\n")
    assert declared_names(tmp_path / "evil.yml") == ["Evil"]
    assert declared_names(tmp_path / "multi.py") == ["multi", "A", "B"]
    with pytest.raises(ValueError, match="tagged.yml"):
        declared_names(tmp_path / "tagged.yml")  # safe_load refuses the tag instead of calling os.system
    assert not marker.exists()
    # A file whose name cannot be read is named when a wanted pipeline is missing.
    with pytest.raises(ValueError, match=r"unknown pipeline\(s\) \['Nope'\].*tagged.yml"):
        load_pipelines(tmp_path, names=["Nope"])
    assert not marker.exists()


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_read_only_pipelines_folder_is_never_written(tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "BANDPOWER_LDA.yml").write_text((REPO / "pipelines" / "BANDPOWER_LDA.yml").read_text())
    (folder / "COV_TS_LR.yaml").write_text(COV_TS_LR)
    (folder / "dummy.py").write_text("from sklearn.dummy import DummyClassifier\n"
                                     "PIPELINE = {'name': 'Dummy', 'paradigms': ['LeftRightImagery'], "
                                     "'pipeline': DummyClassifier()}\n")
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)
    # Tests run as root, where chmod does not stop writes: compare the folder before and after instead.
    before = _listing(folder)
    try:
        pipelines, failures = load_pipelines(folder)
        after = _listing(folder)
        assert after == before, f"written next to the pipelines: {sorted(set(after) - set(before))}"
        selected, _ = load_pipelines(folder, names=["Cov+TS+LR"])
        assert _listing(folder) == before
    finally:
        folder.chmod(0o755)
    assert failures == []
    assert sorted(p.name for p in pipelines) == ["BandPower+LDA", "Cov+TS+LR", "Dummy"]
    assert [p.name for p in selected] == ["Cov+TS+LR"]


# -- the progress bar ------------------------------------------------------------------------

class _RecordingBar:
    """Stands in for tqdm: records when the total is set and each update."""

    events: list = []

    def __init__(self, *args, total=None, **kwargs):
        self._total, self.n = total, 0
        self.events.append(("total", total))

    @property
    def total(self):
        return self._total

    @total.setter
    def total(self, value):
        self._total = value
        self.events.append(("total", value))

    def update(self, n=1):
        self.n += n
        self.events.append(("update", n))

    def refresh(self):
        pass

    def close(self):
        pass

    @staticmethod
    def write(*args, **kwargs):
        pass


def test_progress_total_is_counted_before_the_first_fold(data_root, tmp_path, monkeypatch):
    import neurodecode.benchmark.runner as runner

    monkeypatch.setattr(runner, "tqdm", _RecordingBar)
    folder, out = tmp_path / "pipelines", tmp_path / "out"
    folder.mkdir()
    (folder / "bp_lda.yml").write_text(BANDPOWER_LDA.format(shrinkage="auto"))
    config = BenchmarkConfig(pipelines_dir=str(folder), subjects=[1, 2], out=str(out))
    for expected in (10, 3):
        _RecordingBar.events = []
        results = run_benchmark(config, progress=True)
        events = _RecordingBar.events
        totals = [value for kind, value in events if kind == "total"]
        assert events[0] == ("total", expected) and totals == [expected], events
        assert sum(n for kind, n in events if kind == "update") == expected == results.attrs["written"]
        # A resumed run counts only what is left: drop 3 stored folds of subject 2.
        lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
        (out / "results.jsonl").write_text("".join(lines[:-3]))
