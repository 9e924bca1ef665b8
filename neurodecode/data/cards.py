"""Dataset cards: which files a dataset has, their checksums, licence and source.

The package's cards are TOML files in ``neurodecode/data/dataset_cards/`` (package data, so a
wheel install has them too); a user's cards live in the user's folder and go through the same code. Data are found under the folder named by the environment variable
``NEURODECODE_DATA``; nothing is ever downloaded unless the caller opts in explicitly.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import tomllib
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .._utils.env import temporary_environ  # noqa: F401 - re-exported for loaders
from .errors import ChecksumMismatchError, DataNotFoundError, NeurodecodeDataError

DATA_ENV = "NEURODECODE_DATA"
CACHE_ENV = "NEURODECODE_CACHE"


def cards_dir() -> Path:
    """The folder holding the package's dataset cards (package data: present in a wheel install too)."""
    folder = Path(__file__).resolve().parent / "dataset_cards"
    if not folder.is_dir():
        raise NeurodecodeDataError(f"no dataset cards found in {folder}; the installation is incomplete")
    return folder


def data_root() -> Path:
    """The folder named by ``NEURODECODE_DATA``.

    Raises
    ------
    DataNotFoundError
        When the variable is unset or names a folder that does not exist.
    """
    value = os.environ.get(DATA_ENV)
    if not value:
        raise DataNotFoundError(
            f"the environment variable {DATA_ENV} is not set: point it at the folder that holds the "
            f"dataset folders (e.g. export {DATA_ENV}=../shared/data); see `neurodecode datasets`")
    root = Path(value).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"{DATA_ENV}={value!r} is not an existing folder")
    return root.resolve()


def _cache_file() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "neurodecode")
    return Path(base) / "sha256.json"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(entries: dict) -> None:
    """Merge ``entries`` into the cache file atomically; a read-only cache is silently skipped."""
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**_read_cache(), **entries}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sha256-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(merged, fh)
        os.replace(tmp, path)
    except OSError:
        pass


def sha256_of(path: Path, *, use_cache: bool = True) -> str:
    """sha256 of a file, remembered across processes by (path, size, mtime).

    The cache lives in ``$NEURODECODE_CACHE`` (default ``~/.cache/neurodecode``), never next
    to the data, which may be read-only.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = str(path)
    stamp = [stat.st_size, stat.st_mtime_ns]
    if use_cache:
        hit = _read_cache().get(key)
        if hit and hit[:2] == stamp:
            return hit[2]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    if use_cache:
        _write_cache({key: stamp + [value]})
    return value


@dataclass(frozen=True)
class CardFile:
    path: str
    sha256: str
    bytes: int | None = None


@dataclass(frozen=True)
class DatasetCard:
    """A dataset's card: its files with checksums, licence, source and classes."""

    name: str
    title: str
    modality: str
    folder: str
    licence: str
    source: str
    citation: str
    obtain: str
    classes: tuple = ()
    files: tuple = ()
    download_url: str | None = None
    download_strip: str = ""
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_toml(cls, path: Path) -> "DatasetCard":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        try:
            files = tuple(CardFile(f["path"], f["sha256"].lower(), f.get("bytes")) for f in raw.pop("files", []))
            known = {k: raw.pop(k) for k in ("name", "title", "modality", "folder", "licence", "source",
                                             "citation", "obtain")}
        except KeyError as err:
            raise NeurodecodeDataError(f"dataset card {path} lacks the field {err}") from None
        return cls(**known, classes=tuple(raw.pop("classes", ())), files=files,
                   download_url=raw.pop("download_url", None),
                   download_strip=raw.pop("download_strip", ""), notes=raw.pop("notes", ""), extra=raw)

    # -- where the files are ------------------------------------------------------------
    def root(self) -> Path:
        """The dataset's folder under ``NEURODECODE_DATA``."""
        return data_root() / self.folder

    def entry(self, relpath: str) -> CardFile:
        for f in self.files:
            if f.path == relpath:
                return f
        raise NeurodecodeDataError(f"{relpath!r} is not a file of dataset {self.name!r} (card {self.name}.toml)")

    def files_by_subject(self, pattern) -> dict:
        """The card's files whose path matches ``pattern``, grouped by subject.

        Parameters
        ----------
        pattern : re.Pattern
            Its first group is the subject number.

        Returns
        -------
        files : dict of int to list of str
            ``{subject: [relpath, ...]}``, subjects ascending, paths sorted (the datasets name
            their files by date and time, so sorted is chronological).
        """
        by_subject: dict[int, list[str]] = {}
        for entry in self.files:
            match = pattern.match(entry.path)
            if match:
                by_subject.setdefault(int(match.group(1)), []).append(entry.path)
        return {subject: sorted(paths) for subject, paths in sorted(by_subject.items())}

    def url(self, relpath: str) -> str | None:
        """Public address of one file, when the card names a per-file source."""
        if not self.download_url:
            return None
        if self.download_strip and relpath.startswith(self.download_strip):
            relpath = relpath[len(self.download_strip):]
        return self.download_url.format(path=urllib.parse.quote(relpath))

    def missing_message(self, relpath: str, expected: Path) -> str:
        hint = (f", or let neurodecode download it: pass download=True (or set NEURODECODE_ALLOW_DOWNLOAD=1) "
                f"to fetch {self.url(relpath)}" if self.download_url else "")
        return (f"dataset {self.name!r}: file {relpath!r} not found at {expected}. "
                f"Expected the dataset folder {self.folder!r} under ${DATA_ENV}. "
                f"Get it from {self.source} ({self.obtain}){hint}.")

    def path(self, relpath: str, *, verify: bool = True, download: bool | None = None) -> Path:
        """Absolute path of one of the card's files, checked against its sha256.

        Parameters
        ----------
        relpath : str
            The file's path inside the dataset folder, as the card lists it.
        verify : bool
            Check the sha256 (cached: a second call does not re-hash).
        download : bool or None
            Fetch a missing file from the card's public source. None reads the opt-in from
            ``NEURODECODE_ALLOW_DOWNLOAD=1``; the default is never to touch the network.
        """
        entry = self.entry(relpath)
        target = data_root() / self.folder / relpath
        if not target.is_file():
            if download is None:
                download = os.environ.get("NEURODECODE_ALLOW_DOWNLOAD") == "1"
            if not (download and self.download_url):
                raise DataNotFoundError(self.missing_message(relpath, target))
            self._download(relpath, target, entry)
        if verify:
            found = sha256_of(target)
            if found != entry.sha256:
                raise ChecksumMismatchError(
                    f"dataset {self.name!r}: {target} has sha256 {found}, but the card expects {entry.sha256}. "
                    "The file is damaged, truncated or a different version; replace it from "
                    f"{self.source}.")
        return target

    def _download(self, relpath: str, target: Path, entry: CardFile) -> None:
        url = self.url(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(fd, "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
            if sha256_of(Path(tmp), use_cache=False) != entry.sha256:
                raise ChecksumMismatchError(f"download of {url} does not match the card's sha256 {entry.sha256}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def status(self) -> dict:
        """Which files are present, which verify, which are missing or damaged.

        Returns
        -------
        status : dict
            ``{"present": int, "verified": int, "missing": [paths], "mismatched": [paths],
            "total": int, "root": Path or None, "error": str or None}``.
        """
        out = {"present": 0, "verified": 0, "missing": [], "mismatched": [], "total": len(self.files),
               "root": None, "error": None}
        try:
            root = self.root()
        except DataNotFoundError as err:
            out["error"] = str(err)
            out["missing"] = [f.path for f in self.files]
            return out
        out["root"] = root
        for f in self.files:
            target = root / f.path
            if not target.is_file():
                out["missing"].append(f.path)
                continue
            out["present"] += 1
            if sha256_of(target) == f.sha256:
                out["verified"] += 1
            else:
                out["mismatched"].append(f.path)
        return out


def list_cards() -> list[DatasetCard]:
    """Every dataset card, sorted by name."""
    return [DatasetCard.from_toml(p) for p in sorted(cards_dir().glob("*.toml"))]


def get_card(name: str) -> DatasetCard:
    """The card of one dataset, by name (the TOML file's stem)."""
    path = cards_dir() / f"{name}.toml"
    if not path.is_file():
        known = [p.stem for p in sorted(cards_dir().glob("*.toml"))]
        raise NeurodecodeDataError(f"no dataset card {name!r} in {cards_dir()}; known datasets: {known}")
    return DatasetCard.from_toml(path)
