"""Dataset cards: every file listed, checksums verified once and cached, no network by default."""

import hashlib
import os
import shutil
import socket

import pytest

from neurodecode.data import (ChecksumMismatchError, DataNotFoundError, get_card, list_cards, sha256_of)
from neurodecode.data import cards as cards_module

REQUIRED_DATASETS = {
    "eegmmidb", "ssvep_exo_kalunga2016", "eegnotebooks_muse_visual_p300", "meg_elekta_triux_3ch_mne_testing",
    "abide_pcp_aal116_100subj", "abide_pcp_atlases", "haxby2001_subj1_pymvpa", "fmri_digit69_vangerven",
    "mnist_t10k",
}


def test_every_shared_dataset_has_a_complete_card():
    cards = {c.name: c for c in list_cards()}
    assert REQUIRED_DATASETS <= set(cards)
    for card in cards.values():
        assert card.files, card.name
        assert card.licence and card.source and card.obtain and card.citation, card.name
        assert all(len(f.sha256) == 64 for f in card.files), card.name


def test_cards_match_the_real_folders(data_root, isolated_cache):
    for card in list_cards():
        folder = data_root / card.folder
        on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and p.name != "PROVENANCE.md"}
        assert on_disk == {f.path for f in card.files}, card.name
        status = card.status()
        assert status["verified"] == status["total"] == len(card.files), (card.name, status["mismatched"])


def test_checksum_is_cached_across_calls(dataset_dir, isolated_cache, monkeypatch):
    path = dataset_dir("eegmmidb") / "MNE-eegbci-data/files/eegmmidb/1.0.0/S001/S001R04.edf"
    first = sha256_of(path)
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(cards_module.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    assert sha256_of(path) == first
    assert calls == [], "a second checksum of an unchanged file must come from the cache"
    assert (isolated_cache / "sha256.json").is_file()


def test_checksum_mismatch_names_file_and_both_hashes(data_root, tmp_path, monkeypatch, isolated_cache):
    card = get_card("meg_elekta_triux_3ch_mne_testing")
    copy = tmp_path / card.folder
    copy.mkdir()
    target = copy / "test_elekta_3ch_raw.fif"
    shutil.copy(data_root / card.folder / "test_elekta_3ch_raw.fif", target)
    with open(target, "r+b") as fh:  # flip one byte in the middle
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))
    with pytest.raises(ChecksumMismatchError) as err:
        card.path("test_elekta_3ch_raw.fif")
    message = str(err.value)
    assert str(target) in message and card.files[0].sha256 in message
    assert hashlib.sha256(target.read_bytes()).hexdigest() in message


def test_missing_file_is_clear_and_never_touches_network(tmp_path, monkeypatch, isolated_cache):
    def no_network(*args, **kwargs):
        raise AssertionError("a loader opened a network connection")
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))
    monkeypatch.delenv("NEURODECODE_ALLOW_DOWNLOAD", raising=False)
    card = get_card("eegmmidb")
    rel = "MNE-eegbci-data/files/eegmmidb/1.0.0/S001/S001R04.edf"
    with pytest.raises(DataNotFoundError) as err:
        card.path(rel)
    message = str(err.value)
    assert rel in message and str(tmp_path / "eegmmidb" / rel) in message
    assert "https://physionet.org/files/eegmmidb/1.0.0/S001/S001R04.edf" in message
    assert "download=True" in message


def test_unset_data_variable_is_explained(monkeypatch):
    monkeypatch.delenv("NEURODECODE_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="NEURODECODE_DATA is not set"):
        get_card("eegmmidb").path("MNE-eegbci-data/files/eegmmidb/1.0.0/S001/S001R04.edf")


def test_opt_in_download_fetches_and_verifies(tmp_path, monkeypatch, data_root, isolated_cache):
    """The download path is real code: feed it the genuine bytes through a stubbed urlopen."""
    card = get_card("meg_elekta_triux_3ch_mne_testing")
    source = data_root / card.folder / "test_elekta_3ch_raw.fif"
    seen = []

    def fake_urlopen(url, timeout):
        seen.append(url)
        return open(source, "rb")
    monkeypatch.setattr(cards_module.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))
    path = card.path("test_elekta_3ch_raw.fif", download=True)
    assert path.read_bytes() == source.read_bytes()
    assert seen == [card.url("test_elekta_3ch_raw.fif")] and seen[0].startswith("https://")
    assert not [p for p in os.listdir(path.parent) if p.startswith(".part-")]
