"""The batch runner on real recordings: formats, broken copies, resume after a kill, parallel and Dask runs, report.

The model is COV+TS+LR (``pipelines/COV_TS_LR.yml``) trained with ``train_model`` on eegmmidb
subjects 1-2; the recordings are eegmmidb runs of subjects 3-5 (EDF as published), copies of
S003R04 converted to BDF, BrainVision, EEGLAB and FIF, broken copies of it, and a Kalunga SSVEP
recording (8 channels: the wrong channels for this model).
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest

from conftest import trained_model
from neurodecode.batch.manifest import MANIFEST_NAME, Manifest
from neurodecode.batch.discovery import find_recordings, recording_id
from neurodecode.batch.errors import BatchError, NoRecordingsError
from neurodecode.batch.runner import run_batch

REPO = Path(__file__).resolve().parents[2]
EDF = "MNE-eegbci-data/files/eegmmidb/1.0.0/S{s:03d}/S{s:03d}R{r:02d}.edf"
KALUNGA = "subject03/record-[2012.07.11-15.33.08]"
EVENTS = {"T1": "left_hand", "T2": "right_hand"}
# Seconds between windows: half as many windows as the default 0.75 s, to keep the tests short.
STEP = 1.5


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, dataset_dir):
    return trained_model(tmp_path_factory, dataset_dir)


def _link(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)
    return dst


def _standard_names(raw):
    """EDF labels ("Fc5.") as 10-05 names ("FC5"), with the standard positions: what a FIF export would hold."""
    montage = mne.channels.make_standard_montage("colin27_1005")  # MNE 1.13's name for standard_1005
    by_upper = {n.upper(): n for n in montage.ch_names}
    raw.rename_channels({c: by_upper[c.strip(".").upper()] for c in raw.ch_names})
    raw.set_montage(montage)
    return raw


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, dataset_dir):
    """A folder of 17 recordings in six formats, good and broken, plus files that are not recordings."""
    eeg = dataset_dir("eegmmidb")
    root = tmp_path_factory.mktemp("batch-inputs")
    for s, r in [(3, 4), (4, 8), (5, 12)]:
        _link(eeg / EDF.format(s=s, r=r), root / "edf" / f"S{s:03d}R{r:02d}.edf")
    source = eeg / EDF.format(s=3, r=4)
    base = mne.io.read_raw_edf(source, preload=True, verbose="error")
    (root / "converted").mkdir()
    for fmt, name in [("bdf", "s3r4.bdf"), ("brainvision", "s3r4.vhdr"), ("eeglab", "s3r4.set")]:
        base.export(root / "converted" / name, fmt=fmt, verbose="error")
    fif = root / "fif"
    fif.mkdir()
    standard = _standard_names(base.copy())
    standard.save(fif / "standard_raw.fif", verbose="error")
    order = list(np.random.default_rng(0).permutation(standard.ch_names))
    standard.copy().reorder_channels(order).save(fif / "permuted_raw.fif", verbose="error")
    standard.copy().drop_channels(["C3", "Cz", "C4"]).save(fif / "missing_raw.fif", verbose="error")
    standard.copy().resample(128.0, verbose="error").save(fif / "rate128_raw.fif", verbose="error")
    zero = standard.copy()
    zero._data[zero.ch_names.index("Pz")] = 0.0
    zero.save(fif / "zero_raw.fif", verbose="error")
    nan = standard.copy()
    nan._data[nan.ch_names.index("O1"), 1000:1010] = np.nan
    nan.save(fif / "nan_raw.fif", verbose="error")
    hum = standard.copy()
    hum._data += 200e-6 * np.sin(2 * np.pi * 60 * hum.times)
    hum.save(fif / "hum_raw.fif", verbose="error")
    broken = root / "broken"
    broken.mkdir()
    data = source.read_bytes()
    (broken / "truncated.edf").write_bytes(data[: len(data) * 6 // 10])
    (broken / "header.edf").write_bytes(data[:236] + b"#garbage#" + data[245:])  # the record-count field
    (broken / "not_a_recording.edf").write_text("this is a text file\n" * 50)
    kalunga = dataset_dir("ssvep_exo_kalunga2016")
    shutil.copy(kalunga / f"{KALUNGA}_raw.fif", broken / "kalunga_raw.fif")
    shutil.copy(kalunga / f"{KALUNGA}-eve.fif", broken / "kalunga-eve.fif")  # events, not a recording
    (broken / "notes.txt").write_text("not a recording")
    (root / ".hidden").mkdir()
    _link(source, root / ".hidden" / "S003R04.edf")
    return root


@pytest.fixture(scope="module")
def main_run(inputs, model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch-main")
    summary = run_batch(inputs, model_path, out, events=EVENTS, step_s=STEP, progress=False, keep_names=True)
    names = pd.read_csv(out / "names.csv")
    by_file = dict(zip(names["file"], names["id"]))
    return out, summary.set_index("id"), by_file


def _result(main_run, file):
    out, _, by_file = main_run
    return json.loads((out / "results" / f"{by_file[file]}.json").read_text())


def _row(main_run, file):
    _, summary, by_file = main_run
    return summary.loc[by_file[file]]


def _predictions(main_run, file):
    out, _, by_file = main_run
    return pd.read_csv(out / "results" / f"{by_file[file]}.csv")


def _outputs(out: Path) -> dict:
    """Every result file and the summary, as bytes (the manifest, an append-only log, is left out)."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "results").iterdir()}
    files["summary.csv"] = (out / "summary.csv").read_bytes()
    return files


# --------------------------------------------------------------------------- finding recordings
def test_every_supported_format_is_found_and_nothing_else(main_run):
    _, summary, by_file = main_run
    expected = {"edf/S003R04.edf", "edf/S004R08.edf", "edf/S005R12.edf", "converted/s3r4.bdf",
                "converted/s3r4.vhdr", "converted/s3r4.set", "broken/truncated.edf", "broken/header.edf",
                "broken/not_a_recording.edf", "broken/kalunga_raw.fif",
                *[f"fif/{n}_raw.fif" for n in ("standard", "permuted", "missing", "rate128", "zero", "nan", "hum")]}
    assert set(by_file) == expected  # not the -eve.fif, the .txt, the hidden folder, BrainVision's .eeg/.vmrk
    assert sorted(summary.index) == sorted(by_file.values()) and len(summary) == 17
    assert set(summary["format"]) == {"EDF", "BDF", "BrainVision", "EEGLAB", "FIF"}


def test_ids_are_path_hashes_or_names():
    assert recording_id("a/b.edf") == hashlib.sha256(b"a/b.edf").hexdigest()[:12]
    assert recording_id(Path("a") / "b.edf") == recording_id("a/b.edf") != recording_id("a/c.edf")
    assert recording_id("sub 1/run[1].edf", "name") == "sub_1__run_1_.edf"
    with pytest.raises(BatchError, match="ids must be"):
        recording_id("a.edf", "other")


def test_output_folder_inside_the_input_is_not_read(tmp_path, dataset_dir):
    _link(dataset_dir("eegmmidb") / EDF.format(s=3, r=4), tmp_path / "S003R04.edf")
    _link(dataset_dir("eegmmidb") / EDF.format(s=3, r=8), tmp_path / "out" / "S003R08.edf")
    assert [p.name for p in find_recordings(tmp_path, exclude=[tmp_path / "out"])] == ["S003R04.edf"]


# --------------------------------------------------------------------------- what is scored
@pytest.mark.parametrize("file", ["edf/S003R04.edf", "edf/S004R08.edf", "edf/S005R12.edf"])
def test_real_runs_are_scored(main_run, model_path, file):
    from neurodecode.contract.model_file import read_card

    card = read_card(model_path)
    row, result, table = _row(main_run, file), _result(main_run, file), _predictions(main_run, file)
    assert row["status"] == "ok" and row["reason"] == ""
    n_samples = round(result["recording"]["duration_s"] * 160)
    assert row["n_windows"] == len(table) == (n_samples - card.n_times) // round(STEP * 160) + 1
    assert row["n_left_hand"] + row["n_right_hand"] == row["n_windows"]
    assert list(table.columns) == ["start_s", "end_s", "predicted", "proba_left_hand", "proba_right_hand", "true",
                                   "overlap"]
    annotated = table["true"].notna()
    # 15 cues per run (left or right, with rest between), 8.2 s apart: about a third of the windows lie on a trial.
    assert row["n_annotated"] == annotated.sum() > 20
    assert row["accuracy"] == pytest.approx((table.loc[annotated, "predicted"] == table.loc[annotated, "true"]).mean(),
                                            abs=1e-6)
    assert np.allclose(table["proba_left_hand"] + table["proba_right_hand"], 1)
    assert len(result["cues"]) == 15 and {c[2] for c in result["cues"]} == {"left_hand", "right_hand"}
    assert result["qc"]["passed"] and result["positions"]["source"] is None


def test_a_model_scores_its_own_training_run_well(tmp_path, model_path, dataset_dir):
    # The check that the whole chain (read, rename, filter, unit, windows) is the training's: subject 1's
    # own run. (Subjects 3-5 are other people: a cross-subject model is near chance on them.)
    _link(dataset_dir("eegmmidb") / EDF.format(s=1, r=4), tmp_path / "in" / "S001R04.edf")
    summary = run_batch(tmp_path / "in", model_path, tmp_path / "out", events=EVENTS, step_s=STEP, progress=False)
    assert summary.loc[0, "status"] == "ok" and summary.loc[0, "accuracy"] > 0.9


@pytest.mark.parametrize("file", ["converted/s3r4.bdf", "converted/s3r4.vhdr", "converted/s3r4.set",
                                  "fif/standard_raw.fif"])
def test_converted_copies_give_the_edf_predictions(main_run, file):
    original, copy = _predictions(main_run, "edf/S003R04.edf"), _predictions(main_run, file)
    assert _row(main_run, file)["status"] == "ok"
    assert len(copy) == len(original)
    # BDF stores 24-bit integers (3e-11 V from the EDF values), BrainVision, EEGLAB and FIF float32:
    # the probabilities move by far less than a rounding of the displayed values.
    assert np.abs(copy["proba_left_hand"] - original["proba_left_hand"]).max() < 1e-4
    assert (copy["predicted"] == original["predicted"]).all()
    assert copy["true"].equals(original["true"])  # BrainVision's "Comment/T1" markers are matched too


def test_permuted_channels_are_scored_identically(main_run):
    standard = (main_run[0] / "results" / f"{main_run[2]['fif/standard_raw.fif']}.csv").read_bytes()
    permuted = (main_run[0] / "results" / f"{main_run[2]['fif/permuted_raw.fif']}.csv").read_bytes()
    assert permuted == standard
    assert _result(main_run, "fif/permuted_raw.fif")["contract"]["reordered"] is True
    assert _result(main_run, "fif/standard_raw.fif")["contract"]["reordered"] is False


@pytest.mark.parametrize("file,status,reason", [
    ("broken/truncated.edf", "failed", "is truncated: its header declares 125 records"),
    ("broken/header.edf", "failed", "header is unreadable"),
    ("broken/not_a_recording.edf", "failed", "unreadable"),
    ("broken/kalunga_raw.fif", "failed", "56 of 64 model channels not found: "),
    ("fif/missing_raw.fif", "failed", "3 of 64 model channels not found: C3, Cz, C4 (no recording channel matches"),
    ("fif/rate128_raw.fif", "failed", "sampled at 128 Hz but model"),
    ("fif/zero_raw.fif", "flagged", "QC failed: flat channel(s) (Pz)"),
    ("fif/nan_raw.fif", "flagged", "QC failed: nonfinite 10 > 0 (O1)"),
    ("fif/hum_raw.fif", "flagged", "QC failed: line_noise"),
])
def test_broken_copies_are_reported_with_their_reason(main_run, file, status, reason):
    row, result = _row(main_run, file), _result(main_run, file)
    assert row["status"] == status
    assert reason in row["reason"] and row["reason"] == result["reason"]
    assert "\n" not in row["reason"]
    assert pd.isna(row["n_windows"]) and not result["scored"]
    assert not (main_run[0] / "results" / f"{main_run[2][file]}.csv").exists()
    if status == "flagged":
        assert result["qc"]["failed"] == row["qc_failed"].split()


def test_flagged_recordings_are_scored_when_asked(tmp_path, inputs, model_path):
    _link(inputs / "fif" / "hum_raw.fif", tmp_path / "in" / "hum_raw.fif")
    _link(inputs / "fif" / "nan_raw.fif", tmp_path / "in" / "nan_raw.fif")
    summary = run_batch(tmp_path / "in", model_path, tmp_path / "out", score_flagged=True, events=EVENTS,
                        step_s=STEP, progress=False, ids="name")
    row = summary.set_index("id").loc["hum_raw.fif"]
    assert row["status"] == "flagged" and row["qc_failed"] == "line_noise" and row["n_windows"] > 0
    assert not pd.isna(row["accuracy"])
    # NaN samples cannot be scored: a failure, with both reasons, recorded as final (not retried by a rerun).
    row = summary.set_index("id").loc["nan_raw.fif"]
    assert row["status"] == "failed" and row["reason"].startswith("QC failed: nonfinite 10 > 0 (O1); cannot be scored")
    assert "nan_raw.fif" in Manifest(tmp_path / "out").completed()


def test_resample_scores_another_rate(tmp_path, inputs, model_path):
    _link(inputs / "fif" / "rate128_raw.fif", tmp_path / "in" / "rate128_raw.fif")
    summary = run_batch(tmp_path / "in", model_path, tmp_path / "out", resample=True, step_s=STEP, progress=False)
    assert summary.loc[0, "status"] == "ok"
    result = json.loads(next((tmp_path / "out" / "results").glob("*.json")).read_text())
    assert result["contract"]["resampled_from"] == 128.0 and result["recording"]["sfreq"] == 128.0


def test_result_json_holds_qc_spectra_and_separability(main_run):
    result = _result(main_run, "fif/standard_raw.fif")
    assert [c["name"] for c in result["qc"]["checks"]] == ["nonfinite", "flat", "noisy", "line_noise", "clipping",
                                                          "amplitude"]
    assert len(result["qc"]["channels"]["std_uv"]) == 64
    assert set(result["spectrum"]["groups"]) == {"frontal", "central", "parietal", "occipital", "temporal"}
    assert result["spectrum"]["freqs"][-1] == 80.0 and len(result["band_power"]["values"]) == 64
    assert result["positions"]["source"] == "recording" and len(result["positions"]["ch_pos"]) == 64
    r2 = result["r2"]
    assert r2["classes"] == ["left_hand", "right_hand"] and len(r2["values"]) == 64
    assert all(0 <= v <= 1 for v in r2["values"]) and max(r2["values"]) > 0
    assert "file" not in result["contract"]
    assert result["predictions"]["sha256"] and result["key"]["model_sha256"]


# --------------------------------------------------------------------------- resume and the manifest
@pytest.fixture
def pair(tmp_path, dataset_dir):
    root = tmp_path / "pair"
    for s in (3, 4):
        _link(dataset_dir("eegmmidb") / EDF.format(s=s, r=4), root / f"S{s:03d}R04.edf")
    return root


def _run(root, model, out, **kw):
    return run_batch(root, model, out, events=EVENTS, step_s=STEP, progress=False, **kw)


def test_rerun_skips_finished_recordings(pair, model_path, tmp_path):
    out = tmp_path / "out"
    first = _run(pair, model_path, out)
    before = _outputs(out)
    again = _run(pair, model_path, out)
    assert first.attrs["computed"] == 2 and again.attrs["computed"] == 0 and again.attrs["reused"] == 2
    assert _outputs(out) == before
    assert again.equals(first)


def test_changed_input_is_recomputed(pair, model_path, tmp_path, dataset_dir):
    out = tmp_path / "out"
    _run(pair, model_path, out)
    before = _outputs(out)
    changed = pair / "S004R04.edf"
    changed.unlink()
    changed.symlink_to(dataset_dir("eegmmidb") / EDF.format(s=4, r=8))  # same name, other bytes
    again = _run(pair, model_path, out)
    assert again.attrs["computed"] == 1 and again.attrs["reused"] == 1
    rec = recording_id("S004R04.edf")
    assert _outputs(out)[f"results/{rec}.csv"] != before[f"results/{rec}.csv"]
    same = f"results/{recording_id('S003R04.edf')}.csv"
    assert _outputs(out)[same] == before[same]


def test_changed_model_or_options_recompute_everything(pair, model_path, tmp_path):
    from neurodecode.contract.model_file import load_model, save_model

    out = tmp_path / "out"
    _run(pair, model_path, out)
    estimator, card = load_model(model_path)
    other = save_model(estimator, replace(card, notes="the same weights, another file"), tmp_path / "other.ndm")
    again = _run(pair, other, out)
    assert again.attrs["computed"] == 2
    keys = {json.loads(p.read_text())["key"]["model_sha256"] for p in (out / "results").glob("*.json")}
    assert keys == {hashlib.sha256(other.read_bytes()).hexdigest()}
    assert _run(pair, other, out, score_flagged=True).attrs["computed"] == 2
    assert _run(pair, other, out, score_flagged=True).attrs["computed"] == 0


def test_half_written_and_altered_results_are_redone(pair, model_path, tmp_path):
    out = tmp_path / "out"
    _run(pair, model_path, out)
    before = _outputs(out)
    manifest = out / MANIFEST_NAME
    lines = manifest.read_text().splitlines()
    # A kill after the result files were written but before the completion record: drop the last record,
    # and leave a cut-off line and a temporary file as a kill during a write would.
    manifest.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    (out / "results" / ".x.csv.123.tmp").write_text("partial")
    again = _run(pair, model_path, out)
    assert again.attrs["computed"] == 1
    assert _outputs(out) == before
    assert not list((out / "results").glob(".*.tmp"))
    # A result file changed after the run is not served: it is recomputed.
    victim = next((out / "results").glob("*.csv"))
    victim.write_text("start_s,end_s,predicted\n")
    assert _run(pair, model_path, out).attrs["computed"] == 1
    assert _outputs(out) == before


def test_killed_run_resumes_to_the_uninterrupted_outputs(tmp_path, dataset_dir, model_path):
    root = tmp_path / "six"
    for s in (3, 4, 5):
        for r in (4, 8):
            _link(dataset_dir("eegmmidb") / EDF.format(s=s, r=r), root / f"S{s:03d}R{r:02d}.edf")
    reference = tmp_path / "reference"
    _run(root, model_path, reference)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "neurodecode.cli", "batch", str(root), "--model", str(model_path), "--out",
               str(out), "--events", "T1=left_hand,T2=right_hand", "--step", str(STEP), "--no-report", "--no-progress"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    deadline = time.monotonic() + 180
    try:
        while not list((out / "results").glob("*.json")):
            assert process.poll() is None, f"the run ended before it could be killed: {process.communicate()}"
            assert time.monotonic() < deadline, "no result within 180 s"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    done = len(Manifest(out).completed())
    assert done < 6 and not (out / "summary.csv").exists()

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"6 recording(s) found: {done} already done (kept), {6 - done} to process" in rerun.stderr
    assert _outputs(out) == _outputs(reference)
    assert not list(out.rglob("*.tmp"))


# --------------------------------------------------------------------------- parallel and Dask
@pytest.fixture(scope="module")
def four(tmp_path_factory, dataset_dir, model_path):
    root = tmp_path_factory.mktemp("four")
    for s in (3, 4):
        for r in (8, 12):
            _link(dataset_dir("eegmmidb") / EDF.format(s=s, r=r), root / f"S{s:03d}R{r:02d}.edf")
    (root / "broken.edf").write_bytes(b"0" * 300)
    reference = tmp_path_factory.mktemp("four-reference")
    _run(root, model_path, reference)
    return root, reference


def test_two_processes_give_the_same_outputs(four, model_path, tmp_path):
    root, reference = four
    summary = _run(root, model_path, tmp_path / "out", n_jobs=2)
    assert summary.attrs["computed"] == 5
    assert _outputs(tmp_path / "out") == _outputs(reference)


def test_dask_cluster_gives_the_same_outputs(four, model_path, tmp_path):
    from distributed import LocalCluster

    root, reference = four
    # In-process workers start in a fraction of a second; host pinned to loopback (the suite blocks the
    # network, and distributed otherwise probes it to find this machine's address).
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        summary = _run(root, model_path, tmp_path / "out", scheduler=cluster.scheduler_address)
    assert summary.attrs["computed"] == 5
    assert _outputs(tmp_path / "out") == _outputs(reference)


# --------------------------------------------------------------------------- the command
def test_command_exit_status(four, model_path, tmp_path, capsys):
    from neurodecode.cli import main

    root, _ = four
    args = ["--model", str(model_path), "--no-progress", "--no-report", "--step", str(STEP)]
    assert main(["batch", str(root), "--out", str(tmp_path / "a"), *args]) == 1  # broken.edf failed
    captured = capsys.readouterr()
    assert "failed" in captured.out and "unreadable" in captured.err
    good = tmp_path / "good"
    _link(root / "S003R08.edf", good / "S003R08.edf")
    assert main(["batch", str(good), "--out", str(tmp_path / "b"), *args]) == 0
    capsys.readouterr()
    assert main(["batch", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert main(["batch", str(good), "--out", str(tmp_path / "c"), "--model", str(root / "broken.edf")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot use the model" in err and "not a zip archive" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["batch", str(empty), "--out", str(tmp_path / "c"), *args]) == 2
    assert "no recording" in capsys.readouterr().err
    assert main(["batch", str(good), "--out", str(tmp_path / "c"), "--model", str(model_path), "--events", "T1"]) == 2
    assert "events must look like" in capsys.readouterr().err
    # An unreachable scheduler is found before anything is written (5 s: the connection timeout).
    assert main(["batch", str(good), "--out", str(tmp_path / "d"), *args, "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_no_recordings_is_an_error(tmp_path, model_path):
    with pytest.raises(NoRecordingsError, match="no recording"):
        run_batch(tmp_path, model_path, tmp_path / "out", progress=False)


# --------------------------------------------------------------------------- the report
def test_report_from_stored_results(main_run, tmp_path):
    from neurodecode.batch.report import write_report

    out, summary, by_file = main_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("report"))  # the results alone, after the run
    index = write_report(copy)
    page = index.read_text()
    for rec_id in summary.index:
        assert f'href="{rec_id}.html"' in page
        assert (copy / "report" / f"{rec_id}.html").is_file()
    assert page.count(">failed</span></td>") == 6 and page.count(">flagged</span></td>") == 3
    figures = copy / "report" / "figures"
    standard = by_file["fif/standard_raw.fif"]
    for kind in ("spectrum", "map", "timeline"):
        (figure,) = figures.glob(f"{standard}_{kind}_*.png")  # named by a hash of the results drawn
        assert figure.stat().st_size > 5000 and figure.name in (copy / "report" / f"{standard}.html").read_text()
    assert "r² of log band power" in (copy / "report" / f"{standard}.html").read_text()
    edf = by_file["edf/S003R04.edf"]
    assert "no channel positions; no scalp map" in (copy / "report" / f"{edf}.html").read_text()
    assert not list(figures.glob(f"{edf}_map_*.png"))
    flagged = (copy / "report" / f"{by_file['fif/zero_raw.fif']}.html").read_text()
    assert "not scored" in flagged and "FAIL" in flagged
    assert len(list(figures.glob("summary_class_counts_*.png"))) == 1
    # Rebuilt, the same pages; a predictions file altered since the run is not drawn, and its old figure goes.
    assert write_report(copy).read_text() == page
    (copy / "results" / f"{standard}.csv").write_text("start_s,end_s,predicted\n0,3,left_hand\n")
    write_report(copy)
    assert "does not match its result record" in (copy / "report" / f"{standard}.html").read_text()
    assert not list(figures.glob(f"{standard}_timeline_*.png"))
