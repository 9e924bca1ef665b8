"""`neurodecode benchmark` on real eegmmidb data: fold rows, kill and resume, concurrent runs, Dask, deep nets, report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from neurodecode.benchmark.runner import BenchmarkConfig, load_pipelines, run_benchmark, session_scores
from neurodecode.benchmark.results import ResultStore, row_key
from neurodecode.reports.benchmark_report import write_report

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
    monkeypatch.setenv("NEURODECODE_DEEP_EPOCHS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    results = run_benchmark(BenchmarkConfig(pipelines_dir=str(REPO / "pipelines" / "EEGNet.py"), subjects=[1],
                                            out=str(tmp_path)), progress=False)
    assert results.attrs["failed"] == {}
    assert len(results) == 5 and set(results["pipeline"]) == {"EEGNet"}
    assert results["n_train"].tolist() == [36] * 5
    assert results["score"].between(0, 1).all()


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
