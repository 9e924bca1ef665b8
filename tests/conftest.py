"""Shared fixtures.

Real-data tests read ``$NEURODECODE_DATA``. When it is missing they skip on a developer's
machine, but fail under CI (``CI=true``): a green CI must mean the real data were used.
"""

import os
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


@pytest.fixture
def dataset_dir(data_root):
    """``dataset_dir("eegmmidb")``: a dataset's folder, required to exist."""
    def get(name: str) -> Path:
        path = data_root / name
        _require(path, f"dataset folder {name!r}")
        return path
    return get


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A private checksum cache, so tests never read or pollute the user's."""
    monkeypatch.setenv("NEURODECODE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
