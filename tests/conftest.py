"""Shared fixtures.

Real-data tests read ``$NEURODECODE_DATA``. When it is missing they skip on a developer's
machine, but fail under CI (``CI=true``): a green CI must mean the real data were used.
"""

import ipaddress
import os
import socket
from pathlib import Path

import pytest

# Small-matrix linear algebra is far slower with several BLAS threads on 2 cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def _require(path: Path, what: str) -> None:
    if path.exists():
        return
    message = f"{what} not found at {path} (set NEURODECODE_DATA to the shared data folder)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class NetworkBlocked(RuntimeError):
    pass


def _is_local(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", "", None) or isinstance(host, bytes) or str(host).startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="session", autouse=True)
def offline_and_private(tmp_path_factory):
    """The whole suite runs as a user without internet would, with its own checksum cache.

    Connections beyond loopback raise (the notebook kernel talks over loopback), downloads are
    not opted in, and the checksum cache is a fresh folder rather than the user's.
    """
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
            raise NetworkBlocked(f"network access attempted: {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local((host,)):
            raise NetworkBlocked(f"name lookup attempted: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setenv("NEURODECODE_CACHE", str(tmp_path_factory.mktemp("checksum-cache")))
        patch.delenv("NEURODECODE_ALLOW_DOWNLOAD", raising=False)
        yield


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real-data folder; fails under CI, skips elsewhere, when it is absent."""
    value = os.environ.get("NEURODECODE_DATA")
    if not value:
        if os.environ.get("CI") == "true":
            pytest.fail("NEURODECODE_DATA is not set under CI")
        pytest.skip("NEURODECODE_DATA is not set")
    root = Path(value)
    _require(root, "the data folder")
    return root


@pytest.fixture(scope="session")
def dataset_dir(data_root):
    """``dataset_dir("eegmmidb")``: a dataset's folder, required to exist."""
    def get(name: str) -> Path:
        path = data_root / name
        _require(path, f"dataset folder {name!r}")
        return path
    return get


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """An empty checksum cache of the test's own, for tests that count or inspect hashing."""
    monkeypatch.setenv("NEURODECODE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def eegmmidb_two_subjects(dataset_dir):
    """eegmmidb subjects 1 and 2, left/right imagery as MOABB gives it: (90, 64, 481), loaded once."""
    from neurodecode.data.datasets.eegmmidb import load_eegmmidb

    dataset_dir("eegmmidb")
    return load_eegmmidb([1, 2], progress=False)


EEGMMIDB_RUN = "eegmmidb/MNE-eegbci-data/files/eegmmidb/1.0.0/S{s:03d}/S{s:03d}R{r:02d}.edf"


def write_eegmmidb_bids(data_root: Path, bids_root: Path, subjects, runs=(4, 8, 12), label=None) -> Path:
    """Real eegmmidb runs written as a BIDS dataset with mne-bids (the original EDF bytes, not re-encoded).

    Annotations T0/T1/T2 become the trial types rest/left_hand/right_hand in ``events.tsv``.
    ``label(subject)`` gives the BIDS subject label (default: two digits).
    """
    import mne
    import mne_bids

    for subject in subjects:
        for run in runs:
            raw = mne.io.read_raw_edf(data_root / EEGMMIDB_RUN.format(s=subject, r=run), verbose="error")
            raw.annotations.rename({"T0": "rest", "T1": "left_hand", "T2": "right_hand"})
            raw.info["line_freq"] = 60.0
            path = mne_bids.BIDSPath(subject=label(subject) if label else f"{subject:02d}", task="imagery", run=run,
                                     datatype="eeg", root=bids_root)
            mne_bids.write_raw_bids(raw, path, overwrite=True, verbose="error")
    return bids_root


def trained_model(tmp_path_factory, dataset_dir) -> Path:
    """COV+TS+LR on eegmmidb subjects 1-2, trained once per test session and shared by the batch tests."""
    dataset_dir("eegmmidb")
    path = tmp_path_factory.getbasetemp() / "batch-model" / "cov_ts_lr.ndm"
    if not path.is_file():
        from neurodecode.batch.train import train_model
        from neurodecode.contract.pipeline_files import load_pipelines

        (spec,), failures = load_pipelines(Path(__file__).resolve().parents[1] / "pipelines" / "COV_TS_LR.yml")
        assert not failures
        path.parent.mkdir(parents=True, exist_ok=True)  # train refuses a folder that does not exist
        # Two folds: the card's cross-validated score is not under test there, and each fold costs seconds.
        train_model(spec, "eegmmidb", subjects=[1, 2], cv=2, out=path)
    return path
