"""The dataset cards are package data: one copy in the repository's top-level datasets/ folder, which the
working tree (and an editable install) reads and a built wheel holds as neurodecode/data/dataset_cards/;
a non-editable install, imported from outside the working tree, finds and uses them."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE_FOLDER = "datasets"  # the one copy, at the top of the repository
CARD_FOLDER = "neurodecode/data/dataset_cards"  # where a built package puts them
CARDS = sorted(p.name for p in (REPO / SOURCE_FOLDER).glob("*.toml"))


def _run(args, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def _source_copy(dest: Path) -> Path:
    """What a build reads (pyproject.toml, setup.py, README.md, the package, the cards), copied: the build writes
    build/ and *.egg-info next to its sources, which must not appear in the shared working tree."""
    dest.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, dest / name)
    for folder in ("neurodecode", SOURCE_FOLDER):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _backend_builds_wheels() -> bool:
    # setuptools >= 70.1 has bdist_wheel itself; older ones (65.5 comes with Python 3.11's venv)
    # take it from the `wheel` package. Asked of the interpreter that pip's build will use.
    probe = ("import importlib.util as u; ok = u.find_spec('wheel') or u.find_spec('setuptools.command.bdist_wheel');"
             " raise SystemExit(0 if ok else 1)")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def _build_and_install(src: Path, tmp: Path) -> tuple[set, Path]:
    """Build the package offline and install it outside the working tree.

    Returns the paths the built distribution holds and the folder to put on ``PYTHONPATH``.
    With a backend that builds wheels: ``pip wheel`` then ``pip install --target``. Otherwise
    setuptools' ``build_py``, the step of ``bdist_wheel`` that gathers the modules and the package
    data, into the folder that is then imported: the same files, without the zip around them.
    """
    if _backend_builds_wheels():
        dist, site = tmp / "dist", tmp / "site"
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
              "-w", str(dist), str(src)])
        [wheel] = dist.glob("neurodecode-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
        _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
              str(wheel)])
        return names, site
    site = tmp / "site"
    _run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py", "--build-lib", str(site)],
         cwd=src)
    return {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}, site


@pytest.mark.slow
def test_a_non_editable_install_ships_and_reads_every_card(data_root, tmp_path):
    assert "eegmmidb.toml" in CARDS and len(CARDS) >= 9
    names, site = _build_and_install(_source_copy(tmp_path / "src"), tmp_path)
    assert f"{CARD_FOLDER}/eegmmidb.toml" in names
    assert {f"{CARD_FOLDER}/{card}" for card in CARDS} <= names, "dataset cards missing from the built package"

    elsewhere = tmp_path / "elsewhere"  # not the repository, so `import neurodecode` cannot find it by cwd
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "NEURODECODE_DATA": str(data_root),
           "NEURODECODE_CACHE": str(tmp_path / "cache")}
    probe = _run([sys.executable, "-c", "import neurodecode.data.cards as c; print(c.__file__); "
                  "print(*sorted(p.name for p in c.cards_dir().glob('*.toml'))); print(len(c.list_cards()))"],
                 cwd=elsewhere, env=env).stdout.splitlines()
    assert Path(probe[0]).resolve().is_relative_to(site.resolve()), f"imported {probe[0]}, not the installed copy"
    assert probe[1].split() == CARDS and probe[2] == str(len(CARDS))

    listing = _run([sys.executable, "-m", "neurodecode.cli", "datasets", "--no-load", "mnist_t10k"],
                   cwd=elsewhere, env=env).stdout
    assert "mnist_t10k  [image]  files 2/2 present, 2 verified: verified" in listing


def test_the_working_tree_reads_the_one_top_level_copy():
    from neurodecode.data.cards import cards_dir, list_cards

    assert cards_dir() == REPO / SOURCE_FOLDER
    assert not (REPO / CARD_FOLDER).exists(), "a second copy of the cards inside the package"
    assert sorted(card.name for card in list_cards()) == sorted(name.removesuffix(".toml") for name in CARDS)
