"""Dataset cards: every file listed, checksums verified once and cached, no network by default."""

import hashlib
import json
import os
import shutil
import socket
import time

import pytest

from neurodecode.data import (ChecksumMismatchError, DataNotFoundError, DatasetCard, NeurodecodeDataError,
                              get_card, list_cards, sha256_of)
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
        status = card.status()
        if card.extra.get("partial"):  # the card lists every published file; any subset may be here
            assert on_disk and on_disk <= {f.path for f in card.files}, card.name
            assert status["verified"] == status["present"] == status["total"] == len(on_disk), card.name
            assert status["missing"] == [] and status["listed"] == len(card.files) > len(on_disk)
            continue
        assert on_disk == {f.path for f in card.files}, card.name
        assert status["verified"] == status["total"] == len(card.files), (card.name, status["mismatched"])


def test_a_partial_card_with_nothing_here_is_missing(tmp_path, monkeypatch, isolated_cache):
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path))
    card = get_card("eegmmidb")
    assert card.extra["partial"] is True
    status = card.status()
    assert status["present"] == 0 and status["total"] == status["listed"] == len(card.files)
    assert len(status["missing"]) == len(card.files)


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


# -- checksum cache key: what a user cannot set back -------------------------------------------

MEG = "meg_elekta_triux_3ch_mne_testing"
MEG_FILE = "test_elekta_3ch_raw.fif"


def _flip_byte(path, offset=1000):
    """Change one byte in place: same size, same inode."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def meg_copy(data_root, tmp_path, monkeypatch, isolated_cache):
    """A private data folder holding a copy of the MEG card's one file; NEURODECODE_DATA points at it."""
    card = get_card(MEG)
    folder = tmp_path / "data" / card.folder
    folder.mkdir(parents=True)
    shutil.copy(data_root / card.folder / MEG_FILE, folder / MEG_FILE)
    monkeypatch.setenv("NEURODECODE_DATA", str(tmp_path / "data"))
    # A file copied a moment ago is not cached at all (the racy guard); switch the guard off so
    # that what is tested is the cache key. raising=False: the test also runs on a cache without it.
    monkeypatch.setattr(cards_module, "_RACY_NS", 0, raising=False)
    return card, folder / MEG_FILE


def _change_keeping_size_and_mtime(path):
    before = os.stat(path)
    # File timestamps come from a coarse clock (one kernel tick); let one pass so that the
    # change moves ctime (a change within the same tick is what the racy guard covers).
    time.sleep(0.05)
    _flip_byte(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # what `touch -r` does
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns
    return before


def test_same_size_change_with_restored_mtime_is_caught(meg_copy, isolated_cache):
    card, target = meg_copy
    assert card.status()["verified"] == 1
    cached = json.loads((isolated_cache / "sha256.json").read_text())
    assert cached[str(target.resolve())][2] == card.files[0].sha256, "the first check must be remembered"

    _change_keeping_size_and_mtime(target)
    status = card.status()
    assert status["mismatched"] == [MEG_FILE] and status["verified"] == 0
    with pytest.raises(ChecksumMismatchError, match=MEG_FILE):
        card.path(MEG_FILE)


def test_cache_entry_holds_ctime_inode_and_device(meg_copy, isolated_cache):
    card, target = meg_copy
    digest = sha256_of(target)
    st = os.stat(target)
    entry = json.loads((isolated_cache / "sha256.json").read_text())[str(target.resolve())]
    # the digest stays third, where older versions sharing the cache file read it
    assert entry == [st.st_size, st.st_mtime_ns, digest, st.st_ctime_ns, st.st_ino, st.st_dev]


def test_a_copy_in_place_of_the_file_is_rehashed(meg_copy, tmp_path):
    """Replacing the file by another of the same size and mtime changes its inode."""
    card, target = meg_copy
    assert sha256_of(target) == card.files[0].sha256
    other = tmp_path / "other.fif"
    shutil.copy(target, other)
    _flip_byte(other)
    shutil.copystat(target, other)
    os.replace(other, target)
    assert sha256_of(target) == hashlib.sha256(target.read_bytes()).hexdigest() != card.files[0].sha256


def test_old_style_cache_entries_are_not_trusted(meg_copy, isolated_cache):
    """An entry as older versions wrote it, [size, mtime_ns, sha256], could be stale: rehash."""
    card, target = meg_copy
    _flip_byte(target)
    st = os.stat(target)
    isolated_cache.mkdir(parents=True, exist_ok=True)
    (isolated_cache / "sha256.json").write_text(
        json.dumps({str(target.resolve()): [st.st_size, st.st_mtime_ns, card.files[0].sha256]}))
    assert card.status()["mismatched"] == [MEG_FILE]


def test_a_file_changed_this_instant_is_hashed_but_not_remembered(meg_copy, isolated_cache, monkeypatch):
    card, target = meg_copy
    monkeypatch.setattr(cards_module, "_RACY_NS", 60 * 10**9)  # the copy is seconds old: "racy"
    assert sha256_of(target) == card.files[0].sha256
    cache = isolated_cache / "sha256.json"
    assert not cache.exists() or str(target.resolve()) not in json.loads(cache.read_text())
    monkeypatch.setattr(cards_module, "_RACY_NS", 0)
    sha256_of(target)
    assert str(target.resolve()) in json.loads(cache.read_text())


def test_verify_all_ignores_and_refreshes_the_cache(meg_copy, isolated_cache):
    """A cache entry that matches the file's status but not its bytes: status() trusts it,
    verify_all() does not, and replaces it."""
    card, target = meg_copy
    _flip_byte(target)
    forged = sha256_of(target)  # a genuine entry for the damaged bytes ...
    cache = isolated_cache / "sha256.json"
    entries = json.loads(cache.read_text())
    entries[str(target.resolve())][2] = card.files[0].sha256  # ... claiming the good digest
    cache.write_text(json.dumps(entries))
    assert card.status()["verified"] == 1, "status() is expected to trust a matching cache entry"

    status = card.verify_all()
    assert status["mismatched"] == [MEG_FILE] and status["verified"] == 0
    assert set(status) == set(card.status())
    assert json.loads(cache.read_text())[str(target.resolve())][2] == forged
    assert card.status()["mismatched"] == [MEG_FILE], "verify_all() must refresh the cache"


# -- a user's own cards ---------------------------------------------------------------------------

MUSE = "eegnotebooks_muse_visual_p300"
MUSE_RUNS = "visual/P300/subject1/session1"
RUN_A, RUN_B = "data_2017-02-04-15_45_13.csv", "data_2017-02-04-15_47_49.csv"
WRONG_SHA = "0" * 64


def _write_user_card(path, folder, files, name="my_muse"):
    """A card in the package's schema; ``files`` maps a path to its sha256 (None: omitted)."""
    lines = [f'name = "{name}"', 'title = "My Muse P300 runs"', 'modality = "eeg"',
             f"folder = {json.dumps(str(folder))}", 'licence = "mine"', 'source = "my lab"', 'citation = "-"',
             'obtain = "ask me"', 'classes = ["non_target", "target"]']
    for relpath, sha in files.items():
        lines += ["", "[[files]]", f'path = "{relpath}"'] + ([f'sha256 = "{sha}"'] if sha else [])
    lines += ["", "[paradigm]", 'name = "p300"', 'classes = ["non_target", "target"]']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def muse_runs(dataset_dir, tmp_path, monkeypatch, isolated_cache):
    """``tmp_path/recordings``: a symlink to real Muse runs; NEURODECODE_DATA unset (user cards need none)."""
    (tmp_path / "recordings").symlink_to(dataset_dir(MUSE) / MUSE_RUNS, target_is_directory=True)
    monkeypatch.delenv("NEURODECODE_DATA", raising=False)
    package = get_card(MUSE)
    return {name: package.entry(f"{MUSE_RUNS}/{name}").sha256 for name in (RUN_A, RUN_B)}


def test_user_card_is_listed_with_the_package_cards(muse_runs, tmp_path):
    cards_folder = tmp_path / "cards"
    _write_user_card(cards_folder / "my_muse.toml", "../recordings", {RUN_A: muse_runs[RUN_A], RUN_B: None})
    cards = {c.name: c for c in list_cards(extra_dirs=[cards_folder])}
    assert REQUIRED_DATASETS | {"my_muse"} <= set(cards)
    card = cards["my_muse"]
    assert card.user and not cards[MUSE].user
    assert card.root() == tmp_path / "recordings"  # relative to the card's own folder
    assert card.files[1].sha256 is None
    assert card.extra["paradigm"] == {"name": "p300", "classes": ["non_target", "target"]}
    status = card.status()
    assert (status["present"], status["verified"], status["unverified"]) == (2, 1, 1)
    assert status["missing"] == status["mismatched"] == [] and status["error"] is None
    assert card.verify_all() == status
    assert card.path(RUN_B) == tmp_path / "recordings" / RUN_B  # no sha256: returned unchecked
    assert card.path(RUN_A).read_bytes()[:9] == b"timestamp"
    # the same card by path, or by name among extra folders
    assert get_card(cards_folder / "my_muse.toml").files == card.files
    assert get_card(str(cards_folder / "my_muse.toml")).user
    assert get_card("my_muse", extra_dirs=cards_folder).root() == card.root()
    assert get_card(MUSE, extra_dirs=cards_folder).folder == MUSE


def test_user_card_with_an_absolute_folder(muse_runs, dataset_dir, tmp_path):
    folder = dataset_dir(MUSE) / MUSE_RUNS
    path = _write_user_card(tmp_path / "elsewhere" / "abs.toml", folder, muse_runs)
    card = get_card(path)
    assert card.root() == folder
    assert card.status()["verified"] == 2


def test_user_card_wrong_sha256_is_a_mismatch_naming_the_file(muse_runs, tmp_path):
    path = _write_user_card(tmp_path / "cards" / "my_muse.toml", "../recordings",
                            {RUN_A: muse_runs[RUN_A], RUN_B: WRONG_SHA})
    card = get_card(path)
    status = card.status()
    assert status["mismatched"] == [RUN_B] and status["verified"] == 1 and status["unverified"] == 0
    with pytest.raises(ChecksumMismatchError) as err:
        card.path(RUN_B)
    message = str(err.value)
    assert str(tmp_path / "recordings" / RUN_B) in message and WRONG_SHA in message and muse_runs[RUN_B] in message


def test_user_card_missing_file_names_the_card(muse_runs, tmp_path):
    path = _write_user_card(tmp_path / "cards" / "my_muse.toml", "../recordings", {"absent.csv": None})
    card = get_card(path)
    assert card.status()["missing"] == ["absent.csv"]
    with pytest.raises(DataNotFoundError) as err:
        card.path("absent.csv")
    assert "absent.csv" in str(err.value) and str(path) in str(err.value)


def test_bad_cards_are_refused_in_one_line(muse_runs, tmp_path):
    bad = _write_user_card(tmp_path / "bad" / "bad.toml", ".", {RUN_A: "abc123"})
    with pytest.raises(NeurodecodeDataError, match=r"bad\.toml: file '.*15_45_13\.csv' has sha256 'abc123'; "
                                                   r"expected 64 hexadecimal digits"):
        get_card(bad)
    unsigned = _write_user_card(tmp_path / "unsigned" / "unsigned.toml", ".", {RUN_A: None})
    with pytest.raises(NeurodecodeDataError, match="has no sha256; every file of a package card must have one"):
        DatasetCard.from_toml(unsigned, user=False)
    twin = _write_user_card(tmp_path / "twin" / "twin.toml", ".", {RUN_A: None}, name=MUSE)
    with pytest.raises(NeurodecodeDataError, match=f"two dataset cards are named '{MUSE}'.*twin.toml"):
        list_cards(extra_dirs=[twin.parent])
    with pytest.raises(NeurodecodeDataError, match="does not exist"):
        list_cards(extra_dirs=[tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(NeurodecodeDataError, match="holds no .toml file"):
        list_cards(extra_dirs=tmp_path / "empty")
    with pytest.raises(NeurodecodeDataError, match="no dataset card 'my_muse'"):
        get_card("my_muse")
