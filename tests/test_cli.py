"""The `neurodecode datasets` command: a row per card, real shapes and class counts."""

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from neurodecode.cli import main
from neurodecode.data import cards as cards_module
from neurodecode.data import get_card, sha256_of

REPO_PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def test_datasets_command_reports_real_shapes(data_root, isolated_cache, tmp_path, capsys):
    out = tmp_path / "datasets.json"
    code = main(["datasets", "eegmmidb", "haxby2001_subj1_pymvpa", "ssvep_exo_kalunga2016", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    rows = {r["dataset"]: r for r in json.loads(out.read_text())}
    assert rows["eegmmidb"]["verified"] == rows["eegmmidb"]["files"] == 78
    left_right = rows["eegmmidb"]["loads"][0]
    assert left_right["shape"] == [900, 64, 481]
    assert left_right["classes"] == {"left_hand": 454, "right_hand": 446}
    assert rows["haxby2001_subj1_pymvpa"]["loads"][0]["shape"] == [1452, 530]
    assert rows["ssvep_exo_kalunga2016"]["loads"][0]["classes"] == {"rest": 64, "13Hz": 64, "17Hz": 64, "21Hz": 64}
    assert "shape (900, 64, 481)" in text and "verified" in text


def test_datasets_command_fails_on_missing_files(tmp_path, monkeypatch, isolated_cache, capsys):
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))
    code = main(["datasets", "mnist_t10k", "--no-load"])
    text = capsys.readouterr().out
    assert code == 1
    assert "files 0/2 present" in text and "MISSING" in text and "t10k-images-idx3-ubyte.gz" in text


MEG, MEG_FILE = "meg_elekta_triux_3ch_mne_testing", "test_elekta_3ch_raw.fif"


def _damaged_meg_copy(data_root, tmp_path, monkeypatch):
    """A private copy of the MEG file, changed in one byte with its size and mtime kept.

    Returns the file, its stat before the change and the card's sha256.
    """
    target = tmp_path / "data" / MEG / MEG_FILE
    target.parent.mkdir(parents=True)
    shutil.copy(data_root / MEG / MEG_FILE, target)
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path / "data"))
    before = os.stat(target)
    time.sleep(0.05)  # one tick of the coarse file clock, so the change moves ctime
    with open(target, "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    return target, before, get_card(MEG).files[0].sha256


def test_datasets_verify_catches_a_change_behind_an_old_style_cache_entry(data_root, tmp_path, monkeypatch,
                                                                           isolated_cache, capsys):
    target, before, good = _damaged_meg_copy(data_root, tmp_path, monkeypatch)
    # what an older neurodecode wrote when it hashed the file before the change: [size, mtime_ns, sha256]
    isolated_cache.mkdir()
    cache = isolated_cache / "sha256.json"
    cache.write_text(json.dumps({str(target.resolve()): [before.st_size, before.st_mtime_ns, good]}))
    out = tmp_path / "rows.json"
    code = main(["datasets", MEG, "--no-load", "--verify", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 1
    assert "CHECKSUM MISMATCH" in text and f"checksum mismatch: ['{MEG_FILE}']" in text
    [row] = json.loads(out.read_text())
    assert (row["verified"], row["mismatched"]) == (0, [MEG_FILE])
    # the file changed a moment ago, so its fresh digest may not be remembered yet, but the stale one must go
    left = json.loads(cache.read_text()).get(str(target.resolve()))
    assert left is None or left[2] != good, "--verify must not leave the stale entry behind"


def test_datasets_verify_rehashes_what_the_cache_vouches_for(data_root, tmp_path, monkeypatch, isolated_cache,
                                                             capsys):
    """An entry that matches the file's status but not its bytes: only --verify looks past it."""
    target, _, good = _damaged_meg_copy(data_root, tmp_path, monkeypatch)
    monkeypatch.setattr(cards_module, "_RACY_NS", 0)  # remember the just-copied file
    sha256_of(target)
    cache = isolated_cache / "sha256.json"
    entries = json.loads(cache.read_text())
    entries[str(target.resolve())][2] = good
    cache.write_text(json.dumps(entries))
    assert main(["datasets", MEG, "--no-load"]) == 0
    assert main(["datasets", MEG, "--no-load", "--verify"]) == 1
    assert main(["datasets", MEG, "--no-load"]) == 1, "the refreshed cache now holds the true digest"
    assert "CHECKSUM MISMATCH" in capsys.readouterr().out


def _user_card(folder, card_dir, sha_b):
    runs = "visual/P300/subject1/session1"
    muse = get_card("eegnotebooks_muse_visual_p300")
    a, b = "data_2017-02-04-15_45_13.csv", "data_2017-02-04-15_47_49.csv"
    card_dir.mkdir(parents=True, exist_ok=True)
    (card_dir / "my_muse.toml").write_text("\n".join([
        'name = "my_muse"', 'title = "My Muse runs"', 'modality = "eeg"', f"folder = {json.dumps(str(folder))}",
        'licence = "mine"', 'source = "my lab"', 'citation = "-"', 'obtain = "ask me"',
        "", "[[files]]", f'path = "{a}"', f'sha256 = "{muse.entry(f"{runs}/{a}").sha256}"',
        "", "[[files]]", f'path = "{b}"'] + ([f'sha256 = "{sha_b}"'] if sha_b else [])) + "\n")
    return b


def test_datasets_cards_lists_a_user_card(data_root, tmp_path, isolated_cache, capsys):
    folder = data_root / "eegnotebooks_muse_visual_p300" / "visual/P300/subject1/session1"
    _user_card(folder, tmp_path / "cards", None)
    out = tmp_path / "rows.json"
    code = main(["datasets", "my_muse", "--cards", str(tmp_path / "cards"), "--no-load", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "my_muse  [eeg]  files 2/2 present, 1 verified, 1 unverified (no sha256)" in text
    [row] = json.loads(out.read_text())
    assert (row["dataset"], row["verified"], row["unverified"]) == ("my_muse", 1, 1)

    wrong = _user_card(folder, tmp_path / "wrong", "0" * 64)
    assert main(["datasets", "my_muse", "--cards", str(tmp_path / "wrong" / "my_muse.toml"), "--no-load"]) == 1
    assert f"checksum mismatch: ['{wrong}']" in capsys.readouterr().out


def test_datasets_cards_names_a_bad_location(tmp_path, isolated_cache):
    with pytest.raises(SystemExit, match=re.escape(f"{tmp_path / 'nowhere'} does not exist")):
        main(["datasets", "--cards", str(tmp_path / "nowhere"), "--no-load"])


# -- the top-level command and operator mistakes (one line on stderr, exit status 2) ---------

def test_version_and_help_speak_to_users(capsys):
    from neurodecode import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"neurodecode {__version__}"
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for words in ("Decode brain signals", "datasets", "benchmark", "NEURODECODE_DATA", "examples:",
                  "neurodecode benchmark pipelines"):
        assert words in text
    assert "Thin" not in text and "stages" not in text  # nothing about the code's layout
    assert main(["benchmark", "--help"]) == 0
    assert "Pipeline files are code and run when loaded" in " ".join(capsys.readouterr().out.split())


_PIPELINE = """name: BP+LDA
paradigms: [LeftRightImagery]
pipeline:
  - name: BandPower
    from: neurodecode.transforms.spectral
    parameters: {bands: {mu: [8, 13]}, method: welch}
  - name: LinearDiscriminantAnalysis
    from: sklearn.discriminant_analysis
"""


def _one_line_error(capsys, code, *expected):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


@pytest.fixture
def one_pipeline(tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "bp_lda.yml").write_text(_PIPELINE)
    return folder


def _bench(folder, out, *extra):
    return main(["benchmark", str(folder), "--subjects", "1", "--out", str(out), "--no-report", "--no-progress",
                 *extra])


def test_benchmark_out_that_cannot_be_created(one_pipeline, tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    # Under a regular file: no folder can be made there, even by root (who ignores read-only modes).
    _one_line_error(capsys, _bench(one_pipeline, tmp_path / "a_file" / "sub"), "--out", "a_file")


@pytest.mark.parametrize("junk", ['{"a": 1}', "[]"])
def test_benchmark_junk_row_names_file_and_line(one_pipeline, tmp_path, capsys, junk):
    out = tmp_path / "out"
    out.mkdir()
    good = {"evaluation": "within-session", "dataset": "eegmmidb", "pipeline": "BP+LDA", "subject": 1,
            "session": "0", "fold": 0, "score": 0.5}
    (out / "results.jsonl").write_text(json.dumps(good) + "\n" + junk + "\n")
    _one_line_error(capsys, _bench(one_pipeline, out), str(out / "results.jsonl"), "line 2")


def test_benchmark_cross_session_on_one_session(data_root, one_pipeline, tmp_path, capsys):
    code = _bench(one_pipeline, tmp_path / "out", "--evaluation", "cross-session")
    _one_line_error(capsys, code, "cross-session", "eegmmidb has one session")


def test_benchmark_unreachable_scheduler(data_root, one_pipeline, tmp_path, capsys):
    start = time.perf_counter()
    code = _bench(one_pipeline, tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9")
    _one_line_error(capsys, code, "tcp://127.0.0.1:9")
    assert time.perf_counter() - start < 25  # distributed's default wait alone is 30 s


def test_dask_client_gives_up_in_seconds():
    from neurodecode._utils.scaleout import SchedulerUnreachableError, dask_client

    start = time.perf_counter()
    with pytest.raises(SchedulerUnreachableError, match="127.0.0.1:9"):
        with dask_client("tcp://127.0.0.1:9", timeout=2):
            pass
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("subjects, message", [("3-1", "reversed"), ("1,,3", "1-3,7"), ("", "1-3,7")])
def test_benchmark_bad_subjects_are_refused(one_pipeline, tmp_path, capsys, subjects, message):
    code = main(["benchmark", str(one_pipeline), "--subjects", subjects, "--out", str(tmp_path / "out")])
    _one_line_error(capsys, code, "--subjects", message)


def test_benchmark_data_errors_are_one_line(one_pipeline, tmp_path, capsys, monkeypatch):
    import neurodecode.benchmark.runner as runner
    from neurodecode.data.errors import CorruptFileError

    def broken(specs=None):
        raise CorruptFileError("/data/eegmmidb/S001R04.edf is truncated\n  (12 of 20 records)")

    monkeypatch.setattr(runner, "resolve_datasets", broken)
    _one_line_error(capsys, _bench(one_pipeline, tmp_path / "out"), "S001R04.edf is truncated (12 of 20 records)")


def test_benchmark_missing_data_folder_is_one_line(one_pipeline, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path / "nowhere"))
    _one_line_error(capsys, _bench(one_pipeline, tmp_path / "out"), "NEURODECODE_DATA")


def test_load_recording_names_a_file_that_is_not_a_recording(tmp_path):
    from neurodecode.data.errors import CorruptFileError
    from neurodecode.data.io.recordings import load_recording

    path = tmp_path / "notes.txt"  # MNE hands .txt to its BOXY reader, which only asserts
    path.write_text("subject 1 looked tired\n")
    with pytest.raises(CorruptFileError) as info:
        load_recording(path)
    message = str(info.value)
    assert str(path) in message and "not a recording" in message and "AssertionError" in message
    assert not message.rstrip().endswith(":")


def test_benchmark_device_flag(data_root, tmp_path, capsys):
    import torch

    from neurodecode.contract.pipeline_files import load_pipelines, on_device

    specs, _ = load_pipelines(REPO_PIPELINES / "EEGNet.py")
    (cpu,) = on_device(specs, "cpu")
    assert cpu.pipeline.get_params()["deepclassifier__device"] == "cpu" and cpu.hash != specs[0].hash
    (same,) = on_device(specs, None)
    assert same is specs[0]
    if not torch.cuda.is_available():
        code = main(["benchmark", str(REPO_PIPELINES / "COV_TS_LR.yml"), "--device", "cuda", "--subjects", "1",
                     "--out", str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and "torch sees no CUDA device" in err and "Traceback" not in err
