"""The `neurodecode datasets` command: a row per card, real shapes and class counts."""

import json

from neurodecode.cli import main


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
