"""The `neurodecode datasets` command: a row per card, real shapes and class counts."""

import json
import os
import re
import shutil
import time

import pytest

from neurodecode.cli import main
from neurodecode.data import cards as cards_module
from neurodecode.data import get_card, sha256_of


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
