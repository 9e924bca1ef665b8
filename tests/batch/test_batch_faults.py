"""The edges of ``batch`` and ``predict``: the model checked first, one output folder for one model, output-location
faults (a file, read-only, a full disk) as one line and exit 2, private modes, and a rerun after a fault that
leaves exactly the bytes of an uninterrupted run.

Recordings are real eegmmidb runs (linked, as published); the model is the shared COV+TS+LR of subjects 1-2.
"""

import errno
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import skops.io as sio

from conftest import trained_model
from neurodecode._utils import files
from neurodecode._utils.files import FolderLock, FolderLockedError
from neurodecode.batch.runner import LOCK_NAME
from neurodecode.cli import main

REPO = Path(__file__).resolve().parents[2]
EDF = "MNE-eegbci-data/files/eegmmidb/1.0.0/S{s:03d}/S{s:03d}R{r:02d}.edf"
STEP = "1.5"
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, dataset_dir):
    return trained_model(tmp_path_factory, dataset_dir)


@pytest.fixture(scope="module")
def other_model(model_path, tmp_path_factory):
    """The same weights under another card: another file, another sha256, another name."""
    from neurodecode.contract.model_file import load_model, save_model

    estimator, card = load_model(model_path)
    return save_model(estimator, replace(card, name="the other model", notes="another file"),
                      tmp_path_factory.mktemp("other-model") / "other.ndm")


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, dataset_dir):
    """Two real runs of subject 3 and one of subject 4, and a file that is not a recording (a failure)."""
    root = tmp_path_factory.mktemp("fault-inputs")
    for s, r in [(3, 4), (3, 8), (4, 4)]:
        (root / f"S{s:03d}R{r:02d}.edf").symlink_to(dataset_dir("eegmmidb") / EDF.format(s=s, r=r))
    (root / "broken.edf").write_bytes(b"0" * 300)
    return root


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _batch_args(root, model, out, *extra):
    return ["batch", str(root), "--model", str(model), "--out", str(out), "--step", STEP, "--no-progress",
            "--events", "T1=left_hand,T2=right_hand", *extra]


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def _tree(out: Path) -> dict:
    """Every file under ``out``, relative path -> bytes."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(recordings, model_path, tmp_path_factory):
    """An uninterrupted batch run (report included), and its exit status."""
    out = tmp_path_factory.mktemp("reference") / "out"
    code = main(_batch_args(recordings, model_path, out))
    return out, code


# --------------------------------------------------------------------------- the model first
class _Boom:
    """Building this object writes a file: the stand-in for code a hostile model file would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __setstate__(self, state):
        Path(state["marker"]).write_text("code from a model file ran")


def _write_model_file(path, card_bytes, model_bytes):
    """A model file as an attacker writes it: a payload of their choosing, sha256s made to match."""
    manifest = {"format": "neurodecode-model", "format_version": 1,
                "sha256": {"card.json": hashlib.sha256(card_bytes).hexdigest(),
                           "model.skops": hashlib.sha256(model_bytes).hexdigest()}}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("neurodecode-model.json", json.dumps(manifest))
        archive.writestr("card.json", card_bytes)
        archive.writestr("model.skops", model_bytes)
    return path


@pytest.fixture
def evil_model(model_path, tmp_path):
    marker = tmp_path / "marker"
    with zipfile.ZipFile(model_path) as archive:
        card = archive.read("card.json")
    return _write_model_file(tmp_path / "evil.ndm", card, sio.dumps(_Boom(marker))), marker


def _flipped_deflate(model_path, tmp_path) -> Path:
    """The model file with one byte flipped in the middle of model.skops's deflate stream (manifest untouched)."""
    data = bytearray(model_path.read_bytes())
    with zipfile.ZipFile(model_path) as archive:
        info = archive.getinfo("model.skops")
    assert info.compress_type == zipfile.ZIP_DEFLATED
    name_len, extra_len = (int.from_bytes(data[info.header_offset + k:info.header_offset + k + 2], "little")
                           for k in (26, 28))
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0xFF
    path = tmp_path / "flipped.ndm"
    path.write_bytes(bytes(data))
    return path


def _no_recording_is_read(monkeypatch):
    """Reading, or even looking for, a recording fails the test."""
    import neurodecode.batch.predict as predict
    import neurodecode.batch.runner as runner

    def touched(*args, **kwargs):
        raise AssertionError("a recording was touched before the model was checked")

    monkeypatch.setattr(runner, "find_recordings", touched)
    monkeypatch.setattr(predict, "_read", touched)


@pytest.mark.parametrize("command", ["batch", "predict"])
def test_a_refused_model_is_one_line_before_anything_is_written(command, evil_model, recordings, tmp_path, capsys,
                                                                monkeypatch):
    # Before: batch only read the card, then failed every recording in the workers, wrote an output folder and
    # a report, and exited 1.
    path, marker = evil_model
    out = tmp_path / "out"
    _no_recording_is_read(monkeypatch)
    argv = (_batch_args(recordings, path, out) if command == "batch"
            else ["predict", str(path), str(recordings / "S003R04.edf"), "--out", str(out)])
    assert main(argv) == 2
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert "refused" in line and "_Boom" in line and captured.out == ""
    assert not out.exists() and not marker.exists()


@pytest.mark.parametrize("command", ["batch", "predict"])
def test_a_byte_flipped_in_the_deflate_stream_is_one_line(command, model_path, recordings, tmp_path, capsys,
                                                          monkeypatch):
    # Before: a zlib.error traceback (model_file.py turns it into a ModelFileError; the commands into one line).
    path = _flipped_deflate(model_path, tmp_path)
    out = tmp_path / "out"
    _no_recording_is_read(monkeypatch)
    argv = (_batch_args(recordings, path, out) if command == "batch"
            else ["predict", str(path), str(recordings / "S003R04.edf"), "--out", str(out)])
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "flipped.ndm" in _one_line(captured.err) and captured.out == ""
    assert not out.exists()


# --------------------------------------------------------------------------- one folder, one model
def test_a_live_lock_refuses_a_second_run(recordings, model_path, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with FolderLock(out, LOCK_NAME, info={"model_sha256": "ab" * 32}):
        assert main(_batch_args(recordings, model_path, out)) == 2
        line = _one_line(capsys.readouterr().err)
        assert str(out) in line and f"pid {os.getpid()} on {socket.gethostname()}" in line and "abab" in line
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing else written
    assert not (out / LOCK_NAME).exists()


def test_a_stale_lock_of_a_dead_process_is_reclaimed(recordings, model_path, tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    assert main(_batch_args(recordings, model_path, out, "--no-report")) == 1  # broken.edf failed
    assert (out / "summary.csv").is_file() and not (out / LOCK_NAME).exists()
    # A lock of another host cannot be checked from here: it is not reclaimed.
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": "elsewhere.example"}))
    capsys.readouterr()
    assert main(_batch_args(recordings, model_path, out)) == 2
    assert "elsewhere.example" in _one_line(capsys.readouterr().err)


def test_racing_reclaimers_take_a_stale_lock_once(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "x.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    barrier, won, refused = threading.Barrier(8), [], []

    def contend(k):
        barrier.wait()
        try:
            won.append(FolderLock(tmp_path, "x.lock", info={"k": k}).acquire())
        except FolderLockedError:
            refused.append(k)

    threads = [threading.Thread(target=contend, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7
    assert json.loads((tmp_path / "x.lock").read_text())["k"] == won[0].info["k"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.lock"]


def _models_in(out: Path) -> dict:
    """Every place the folder names a model: summary rows, result files, manifest records."""
    summary = pd.read_csv(out / "summary.csv")
    results = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return {"summary": set(summary["model_sha256"]), "summary_names": set(summary["model_name"]),
            "results": {r["model_sha256"] for r in results} | {r["key"]["model_sha256"] for r in results if "key" in r},
            "manifest": {r.get("model_sha256") or r["key"]["model_sha256"] for r in records},
            "n_rows": len(summary), "n_results": len(results)}


def test_two_concurrent_runs_with_two_models_never_mix(recordings, model_path, other_model, tmp_path):
    # Before: both exited 0, one's printed summary held the other model's rows, the folder ended mixed.
    out = tmp_path / "out"
    shas = {str(model_path): _sha(model_path), str(other_model): _sha(other_model)}
    runs = {m: subprocess.Popen([sys.executable, "-m", "neurodecode.cli", *_batch_args(recordings, m, out,
                                                                                        "--no-report")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
            for m in shas}
    done = {m: (p.wait(timeout=600), *p.communicate()) for m, p in runs.items()}
    for model, (code, stdout, stderr) in done.items():
        other = next(s for m, s in shas.items() if m != model)
        if code == 2:  # refused while the other held the folder: one line naming the folder and the other run
            assert str(out) in _one_line(stderr) and "in use by another run" in stderr and other[:16] in stderr
            assert stdout == ""
        else:  # finished: its printed summary is its own model's, every row
            assert code == 1, stderr  # broken.edf failed
            assert f"sha256 {shas[model]}" in stdout and other not in stdout
            table = [line for line in stdout.splitlines() if not line.startswith("note: ")]
            assert len(table) == 2 + 4  # the model line, the header, four recordings (and notes on them)
    assert sorted(code for code, _, _ in done.values()) in ([1, 2], [1, 1])
    # The folder holds one model's results only: the one that finished last (the only one, if the other was refused).
    found = _models_in(out)
    assert len(found["summary"]) == len(found["results"]) == len(found["manifest"]) == 1
    assert found["summary"] == found["results"] == found["manifest"] and found["n_rows"] == found["n_results"] == 4
    assert not (out / LOCK_NAME).exists()


def test_a_later_run_with_another_model_replaces_every_result(recordings, model_path, other_model, tmp_path, capsys):
    out = tmp_path / "out"
    main(_batch_args(recordings, model_path, out))
    assert _models_in(out)["summary"] == {_sha(model_path)}
    capsys.readouterr()
    assert main(_batch_args(recordings, other_model, out)) == 1
    captured = capsys.readouterr()
    assert "4 result(s) of another model removed" in captured.err
    assert "0 already done (kept), 4 to process" in captured.err
    found = _models_in(out)
    assert found["summary"] == found["results"] == found["manifest"] == {_sha(other_model)}
    assert found["summary_names"] == {"the other model"} and found["n_rows"] == found["n_results"] == 4
    assert _sha(model_path) not in captured.out and f"sha256 {_sha(other_model)}" in captured.out
    report = (out / "report" / "index.html").read_text()
    assert all(rec_id in report for rec_id in pd.read_csv(out / "summary.csv")["id"])


# --------------------------------------------------------------------------- output-location faults
@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nothing can be written into: mode 0555, or a read-only tmpfs where root ignores modes."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                                 capture_output=True).returncode == 0
    else:
        folder.chmod(0o555)
    try:
        (folder / "probe").write_text("x")
    except OSError:
        pass
    else:
        pytest.skip("no read-only folder can be made here (root without mount)")
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)
    folder.chmod(0o755)


@pytest.mark.parametrize("where", ["inside", "itself"])
@pytest.mark.parametrize("command", ["batch", "predict"])
def test_a_read_only_out_is_one_line(command, where, read_only_dir, recordings, model_path, capsys):
    # Before: OSError [Errno 30] traceback, exit 1.
    out = read_only_dir / "out" if where == "inside" else read_only_dir
    argv = (_batch_args(recordings, model_path, out) if command == "batch"
            else ["predict", str(model_path), str(recordings / "S003R04.edf"), "--out", str(out)])
    code = subprocess.run([sys.executable, "-m", "neurodecode.cli", *argv], capture_output=True, text=True, env=ENV,
                          cwd=REPO, timeout=300)
    assert code.returncode == 2, code.stderr
    line = _one_line(code.stderr)
    assert line.startswith(f"neurodecode {command}: error:") and str(out) in line and "Traceback" not in line
    assert "Read-only file system" in line or "Permission denied" in line


@pytest.mark.parametrize("command", ["batch", "predict"])
def test_an_out_that_is_a_file_is_one_line(command, recordings, model_path, tmp_path, capsys):
    # Before: FileExistsError / NotADirectoryError tracebacks.
    out = tmp_path / "out.txt"
    out.write_text("mine")
    argv = (_batch_args(recordings, model_path, out) if command == "batch"
            else ["predict", str(model_path), str(recordings / "S003R04.edf"), "--out", str(out)])
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert str(out) in _one_line(captured.err) and "file" in captured.err and captured.out == ""
    assert out.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def _disk_full_after(monkeypatch, n_ok: int):
    """The atomic write helper on a disk that fills after ``n_ok`` files: the next write gets half its bytes
    into the temporary file, then ENOSPC (the helper's own clean-up runs, as on a real full disk)."""
    real = files.write_atomically
    calls = []

    def write(path, content, **kwargs):
        calls.append(Path(path).name)
        if len(calls) <= n_ok:
            return real(path, content, **kwargs)

        def half_then_full(fh):
            fh.write(content[: len(content) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real(path, half_then_full, **kwargs)

    monkeypatch.setattr(files, "write_atomically", write)
    return calls


# Batch writes per recording its CSV (when scored) then its JSON (7 files for 3 scored recordings and a failed one),
# then summary.csv (the 8th), the manifest rewritten (9th), the report's pages and figures.
@pytest.mark.parametrize("n_ok", [0, 1, 2, 6, 7, 8, 9, 12])
def test_a_full_disk_stops_the_batch_and_a_rerun_gives_the_uninterrupted_bytes(n_ok, reference, recordings,
                                                                                model_path, tmp_path, capsys,
                                                                                monkeypatch):
    # Before: an [Errno 28] traceback, exit 1, an orphan .csv left.
    out = tmp_path / "out"
    calls = _disk_full_after(monkeypatch, n_ok)
    assert main(_batch_args(recordings, model_path, out)) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]  # after the run's own progress lines
    assert line.startswith("neurodecode batch: error:") and "Traceback" not in err
    assert "No space left on device" in line and str(out) in line and len(calls) == n_ok + 1
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_NAME]
    for csv in (out / "results").glob("*.csv"):  # no half of a result: a predictions file has its record
        assert csv.with_suffix(".json").is_file()
    monkeypatch.undo()
    assert main(_batch_args(recordings, model_path, out)) == reference[1] == 1
    assert _tree(out) == _tree(reference[0])  # every file, the report and the manifest included


def test_a_full_disk_stops_predict_and_a_rerun_gives_the_uninterrupted_bytes(recordings, model_path, tmp_path, capsys,
                                                                              monkeypatch):
    runs = [str(recordings / f"S00{s}R0{r}.edf") for s, r in [(3, 4), (3, 8), (4, 4)]]
    reference = tmp_path / "reference"
    assert main(["predict", str(model_path), *runs, "--out", str(reference), "--step", STEP]) == 0
    out = tmp_path / "out"
    _disk_full_after(monkeypatch, 1)
    capsys.readouterr()
    assert main(["predict", str(model_path), *runs, "--out", str(out), "--step", STEP]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "No space left on device" in line and str(out) in line
    assert sorted(p.name for p in out.iterdir()) == ["S003R04.csv"]  # no temporary, no partial file
    monkeypatch.undo()
    assert main(["predict", str(model_path), *runs, "--out", str(out), "--step", STEP]) == 0
    assert _tree(out) == _tree(reference)


# --------------------------------------------------------------------------- permissions
def _modes(out: Path) -> set:
    return {(p.is_dir(), stat.S_IMODE(p.stat().st_mode)) for p in [out, *out.rglob("*")]}


def test_batch_outputs_are_private(reference):
    # Before: files 0644, folders 0755 (docs/batch.md said 0600).
    out, _ = reference
    assert (out / "report" / "index.html").is_file() and list((out / "report" / "figures").glob("*.png"))
    assert _modes(out) == {(True, 0o700), (False, 0o600)}


def test_batch_outputs_are_private_from_python_too(recordings, model_path, tmp_path):
    from neurodecode.batch.runner import run_batch

    previous = os.umask(0o022)
    try:
        run_batch(recordings, model_path, tmp_path / "out", step_s=1.5, progress=False, keep_names=True)
    finally:
        os.umask(previous)
    assert _modes(tmp_path / "out") == {(True, 0o700), (False, 0o600)}


def test_predict_outputs_are_private(recordings, model_path, tmp_path):
    assert main(["predict", str(model_path), str(recordings / "S003R04.edf"), "--out", str(tmp_path / "p" / "q"),
                 "--step", STEP]) == 0
    assert _modes(tmp_path / "p" / "q") == {(True, 0o700), (False, 0o600)}
    assert stat.S_IMODE((tmp_path / "p").stat().st_mode) == 0o700


def test_a_killed_runs_lock_does_not_block_the_rerun(recordings, model_path, tmp_path):
    # SIGKILL leaves the lock file of a dead process; the same command goes on.
    out = tmp_path / "out"
    command = [sys.executable, "-m", "neurodecode.cli", *_batch_args(recordings, model_path, out, "--no-report")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO)
    deadline = time.monotonic() + 180
    try:
        while not (out / LOCK_NAME).exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        process.kill()
    finally:
        process.wait(timeout=60)
    assert (out / LOCK_NAME).exists()
    rerun = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert rerun.returncode == 1 and (out / "summary.csv").is_file() and not (out / LOCK_NAME).exists()
