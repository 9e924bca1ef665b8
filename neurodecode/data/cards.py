"""Dataset cards: which files a dataset has, their checksums, licence and source.

The package's cards are TOML files in the repository's top-level ``datasets/`` folder, shipped
as package data (``neurodecode/data/dataset_cards/`` in a wheel install; :func:`cards_dir`); a
user's cards live in the user's folder and go through the same code (``list_cards(extra_dirs=...)``,
``neurodecode datasets --cards DIR``). Data are found under the folder named by the environment
variable ``NEURODECODE_DATA`` (a user's card may name its own folder); nothing is ever downloaded
unless the caller opts in explicitly. See ``docs/datasets.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
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
    """The folder holding the package's dataset cards.

    One copy: the repository's top-level ``datasets/`` folder, which a built package installs as
    ``neurodecode/data/dataset_cards/`` (pyproject's ``package-dir``). An installed package reads
    that; a source checkout or an editable install, which has no such folder, reads ``datasets/``
    beside ``pyproject.toml``.
    """
    here = Path(__file__).resolve().parent
    installed, repository = here / "dataset_cards", here.parents[1]
    if installed.is_dir():
        return installed
    if (repository / "pyproject.toml").is_file() and (repository / "datasets").is_dir():
        return repository / "datasets"
    raise NeurodecodeDataError(f"no dataset cards found in {installed} (nor in a source tree's datasets/ folder); "
                               "the installation is incomplete")


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


def cache_dir() -> Path:
    """neurodecode's cache: ``$NEURODECODE_CACHE``, else ``$XDG_CACHE_HOME/neurodecode`` or ``~/.cache/neurodecode``."""
    return Path(os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "neurodecode"))


def _cache_file() -> Path:
    return cache_dir() / "sha256.json"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(entries: dict, drop=()) -> None:
    """Merge ``entries`` into the cache file atomically, removing the keys in ``drop``.

    A read-only cache is silently skipped: it only saves time, never decides anything alone.
    """
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**_read_cache(), **entries}
        for key in drop:
            merged.pop(key, None)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sha256-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(merged, fh)
        os.replace(tmp, path)
    except OSError:
        pass


# File timestamps come from a coarse kernel clock (one tick, up to 10 ms; 2 s on FAT), so a file
# changed within the same tick as its hash keeps its ctime. Like git's "racily clean" entries, a
# file whose status changed this recently is hashed but not remembered.
_RACY_NS = 2_000_000_000


def _stamp(stat: os.stat_result) -> list:
    """What the cache compares: size and mtime (set by writers, and settable back with ``touch -r``),
    plus ctime, inode and device, which the kernel sets and no user can restore."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def sha256_of(path: Path, *, use_cache: bool = True, rehash: bool = False) -> str:
    """sha256 of a file, remembered across processes while the file's status is unchanged.

    Parameters
    ----------
    path : path-like
        The file.
    use_cache : bool
        Read and write the cache. False hashes and leaves the cache untouched.
    rehash : bool
        Hash the file even when the cache holds its digest, then store the fresh digest (and
        drop a stale one). What ``DatasetCard.verify_all`` and ``neurodecode datasets --verify`` do.

    Returns
    -------
    digest : str
        The lowercase hexadecimal sha256.

    Notes
    -----
    The cache lives in ``$NEURODECODE_CACHE`` (default ``~/.cache/neurodecode``), never next to
    the data, which may be read-only. It is keyed by the resolved path and each entry is
    ``[size, mtime_ns, sha256, ctime_ns, inode, device]``: the digest stays third so that older
    neurodecode versions sharing the file still read it, and entries they wrote
    (``[size, mtime_ns, sha256]``) are never trusted here, since a same-size change with its mtime
    restored (``touch -r``) passes that check. ctime, inode and device change on any write,
    ``utime`` or replacement by a copy, and cannot be set back by a user.
    """
    path = Path(path).resolve()
    key = str(path)
    before = path.stat()
    stamp = _stamp(before)
    if use_cache and not rehash:
        hit = _read_cache().get(key)
        if isinstance(hit, list) and len(hit) == 6 and hit[:2] + hit[3:] == stamp:
            return hit[2]
    started = time.time_ns()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    if use_cache:
        # Remember the digest only if the file did not change while it was read and its last
        # change is older than the timestamp granularity; otherwise forget any older entry.
        settled = _stamp(path.stat()) == stamp and started - before.st_ctime_ns > _RACY_NS
        if settled:
            _write_cache({key: stamp[:2] + [value] + stamp[2:]})
        elif key in _read_cache():
            _write_cache({}, drop=[key])
    return value


def _files_from(spec: dict | None, card_path: Path) -> tuple:
    """File entries from a checksum list that a package ships (``relpath  sha256`` per line).

    A card's ``[files_from]`` table names it: ``package``, ``resource`` (path inside the
    package), ``prefix`` (put before each listed path) and ``include`` (a regular expression
    the listed path must match). This lets a card cover every file its source publishes, not
    only those at hand: files that are absent are simply not present.
    """
    if spec is None:
        return ()
    import importlib.resources
    import re

    try:
        text = (importlib.resources.files(spec["package"]) / spec["resource"]).read_text()
    except KeyError as err:
        raise NeurodecodeDataError(f"dataset card {card_path}: [files_from] lacks {err}") from None
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise NeurodecodeDataError(f"dataset card {card_path}: cannot read the checksum list "
                                   f"{spec['package']}/{spec['resource']}: {err}") from None
    include = re.compile(spec.get("include", ".*"))
    entries = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and include.search(parts[0]):
            entries.append(CardFile(spec.get("prefix", "") + parts[0], parts[1].lower()))
    return tuple(sorted(entries, key=lambda f: f.path))


@dataclass(frozen=True)
class CardFile:
    """One file of a card: its path inside the dataset folder, its sha256 and its size.

    ``sha256`` is None only in a user's card, for a file that is then reported as unverified.
    """

    path: str
    sha256: str | None
    bytes: int | None = None


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _card_file(raw, card_path: Path, user: bool) -> CardFile:
    """One ``[[files]]`` entry, checked: a path, and a sha256 of 64 hex digits (optional in user cards)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        raise NeurodecodeDataError(f"dataset card {card_path}: a [[files]] entry {raw!r} lacks its path; "
                                   "expected path = \"relative/path\" and sha256 = \"<64 hex digits>\"")
    sha = raw.get("sha256")
    if sha is None and not user:
        raise NeurodecodeDataError(f"dataset card {card_path}: file {raw['path']!r} has no sha256; every file "
                                   "of a package card must have one (only a user's card may omit it)")
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        raise NeurodecodeDataError(f"dataset card {card_path}: file {raw['path']!r} has sha256 {sha!r}; "
                                   "expected 64 hexadecimal digits")
    return CardFile(raw["path"], sha.lower() if sha else None, raw.get("bytes"))


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
    card_file: Path | None = field(default=None, compare=False)
    user: bool = False

    @classmethod
    def from_toml(cls, path: Path, *, user: bool = False) -> "DatasetCard":
        """Read a card.

        Parameters
        ----------
        path : path-like
            The TOML file.
        user : bool
            A user's card rather than one of the package's: its files may omit ``sha256``
            (reported as unverified) and its ``folder`` is absolute or relative to the card
            file's own folder, instead of under ``NEURODECODE_DATA``.

        Returns
        -------
        card : DatasetCard
            Tables and keys the schema does not know (``[paradigm]``, ...) are kept in ``extra``.
        """
        path = Path(os.path.abspath(Path(path).expanduser()))
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise NeurodecodeDataError(f"dataset card {path} is not valid TOML: {err}") from None
        try:
            files = tuple(_card_file(f, path, user) for f in raw.pop("files", []))
            files += _files_from(raw.pop("files_from", None), path)
            # A user's own recordings need a name and a folder; provenance fields are the package's duty.
            required = ("name", "folder") if user else ("name", "title", "modality", "folder", "licence", "source",
                                                       "citation", "obtain")
            known = {k: raw.pop(k) for k in required}
            for key, default in (("title", ""), ("modality", "eeg"), ("licence", "unknown"), ("source", "the user"),
                                 ("citation", ""), ("obtain", "the user's own recordings")):
                known.setdefault(key, raw.pop(key, default))
        except KeyError as err:
            raise NeurodecodeDataError(f"dataset card {path} lacks the field {err}") from None
        return cls(**known, classes=tuple(raw.pop("classes", ())), files=files,
                   download_url=raw.pop("download_url", None),
                   download_strip=raw.pop("download_strip", ""), notes=raw.pop("notes", ""), extra=raw,
                   card_file=path, user=user)

    # -- where the files are ------------------------------------------------------------
    def root(self) -> Path:
        """The dataset's folder.

        ``$NEURODECODE_DATA/<folder>`` for a package card. For a user's card, ``folder`` itself
        when absolute, else relative to the folder of the card file (``NEURODECODE_DATA`` is
        not needed).
        """
        if not self.user:
            return data_root() / self.folder
        folder = Path(self.folder).expanduser()
        if not folder.is_absolute():  # a card built in code, without a file, is relative to the cwd
            folder = (Path(self.card_file).parent if self.card_file else Path.cwd()) / folder
        return Path(os.path.normpath(folder))

    def entry(self, relpath: str) -> CardFile:
        for f in self.files:
            if f.path == relpath:
                return f
        raise NeurodecodeDataError(f"{relpath!r} is not a file of dataset {self.name!r} "
                                   f"(card {self.card_file or self.name + '.toml'})")

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

    def subjects_present(self, pattern) -> tuple:
        """Subjects whose every file matching ``pattern`` (see :meth:`files_by_subject`) is present."""
        root = self.root()
        return tuple(s for s, paths in self.files_by_subject(pattern).items()
                     if all((root / p).is_file() for p in paths))

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
        where = (f"the folder {self.root()} (folder {self.folder!r} of the card {self.card_file})" if self.user
                 else f"the dataset folder {self.folder!r} under ${DATA_ENV}")
        return (f"dataset {self.name!r}: file {relpath!r} not found at {expected}. "
                f"Expected {where}. "
                f"Get it from {self.source} ({self.obtain}){hint}.")

    def path(self, relpath: str, *, verify: bool = True, download: bool | None = None) -> Path:
        """Absolute path of one of the card's files, checked against its sha256.

        Parameters
        ----------
        relpath : str
            The file's path inside the dataset folder, as the card lists it.
        verify : bool
            Check the sha256 (cached: a second call does not re-hash). A file of a user's card
            without a sha256 is returned unchecked.
        download : bool or None
            Fetch a missing file from the card's public source. None reads the opt-in from
            ``NEURODECODE_ALLOW_DOWNLOAD=1``; the default is never to touch the network.
        """
        entry = self.entry(relpath)
        target = self.root() / relpath
        if not target.is_file():
            if download is None:
                download = os.environ.get("NEURODECODE_ALLOW_DOWNLOAD") == "1"
            if not (download and self.download_url):
                raise DataNotFoundError(self.missing_message(relpath, target))
            self._download(relpath, target, entry)
        if verify and entry.sha256 is not None:
            found = sha256_of(target)
            if found != entry.sha256:
                raise ChecksumMismatchError(
                    f"dataset {self.name!r}: {target} has sha256 {found}, but the card expects {entry.sha256}. "
                    "The file is damaged, truncated or a different version; replace it from "
                    f"{self.source}.")
        return target

    def _download(self, relpath: str, target: Path, entry: CardFile) -> None:
        url = self.url(relpath)
        if entry.sha256 is None:  # never put unchecked bytes from the network where a loader reads
            raise NeurodecodeDataError(f"dataset {self.name!r}: will not download {url}: the card {self.card_file} "
                                       f"gives no sha256 for {relpath!r} to verify it against")
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

    def status(self, *, rehash: bool = False) -> dict:
        """Which files are present, which verify, which are missing or damaged.

        Parameters
        ----------
        rehash : bool
            Hash every present file even when the checksum cache knows it (see `verify_all`).

        Returns
        -------
        status : dict
            ``{"present": int, "verified": int, "unverified": int, "missing": [paths],
            "mismatched": [paths], "total": int, "listed": int, "root": Path or None,
            "error": str or None}``. ``unverified`` counts present files without a sha256 (user
            cards only), so ``present == verified + unverified + len(mismatched)``. ``listed`` is
            the number of files the card lists and ``total`` the number expected here: the same,
            except for a card marked ``partial = true`` (it lists every file its source publishes
            and any subset may be here), where ``total`` is the number present and the absent
            files are not missing (unless none at all is here).
        """
        out = {"present": 0, "verified": 0, "unverified": 0, "missing": [], "mismatched": [],
               "total": len(self.files), "listed": len(self.files), "root": None, "error": None}
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
            if f.sha256 is None:
                out["unverified"] += 1
            elif sha256_of(target, rehash=rehash) == f.sha256:
                out["verified"] += 1
            else:
                out["mismatched"].append(f.path)
        if self.extra.get("partial") and out["present"]:
            out["missing"], out["total"] = [], out["present"]
        return out

    def verify_all(self) -> dict:
        """Hash every present file again, ignoring the checksum cache, and refresh the cache.

        For when the cache may be stale or from an older neurodecode; what
        ``neurodecode datasets --verify`` runs.

        Returns
        -------
        status : dict
            The same dictionary as `status`.
        """
        return self.status(rehash=True)


def _user_card_files(location) -> list[Path]:
    """The TOML files that one ``--cards`` argument names: the file itself, or a folder's ``*.toml``."""
    path = Path(location).expanduser()
    if path.is_file() and path.suffix == ".toml":
        return [path]
    if path.is_dir():
        found = sorted(path.glob("*.toml"))
        if not found:
            raise NeurodecodeDataError(f"the card folder {path} holds no .toml file; expected one dataset card "
                                       "(TOML) per dataset")
        return found
    what = "does not exist" if not path.exists() else "is neither a .toml file nor a folder"
    raise NeurodecodeDataError(f"dataset cards {str(location)!r}: {path} {what}; expected a .toml card or a "
                               "folder of them")


def _is_package_card(path: Path) -> bool:
    return path.resolve().parent == cards_dir()


def list_cards(extra_dirs=()) -> list[DatasetCard]:
    """Every dataset card, the package's and the user's, sorted by name.

    Parameters
    ----------
    extra_dirs : path-like or iterable of path-like
        A user's cards: each a ``.toml`` card or a folder of them (same schema as the
        package's; see `DatasetCard.from_toml` with ``user=True``).

    Returns
    -------
    cards : list of DatasetCard

    Raises
    ------
    NeurodecodeDataError
        For a location that is not a card or a folder of cards, or two cards of one name.
    """
    if isinstance(extra_dirs, (str, os.PathLike)):
        extra_dirs = [extra_dirs]
    package = sorted(cards_dir().glob("*.toml"))
    cards = [DatasetCard.from_toml(p) for p in package]
    seen_files = {p.resolve() for p in package}
    for location in extra_dirs:
        for path in _user_card_files(location):
            if path.resolve() not in seen_files:  # the same card named twice is read once
                seen_files.add(path.resolve())
                cards.append(DatasetCard.from_toml(path, user=not _is_package_card(path)))
    by_name: dict[str, DatasetCard] = {}
    for card in cards:
        if card.name in by_name:
            raise NeurodecodeDataError(f"two dataset cards are named {card.name!r}: {by_name[card.name].card_file} "
                                       f"and {card.card_file}; expected one card per name (rename one)")
        by_name[card.name] = card
    return sorted(cards, key=lambda c: c.name)


def get_card(name_or_path, *, extra_dirs=()) -> DatasetCard:
    """The card of one dataset.

    Parameters
    ----------
    name_or_path : str or path-like
        A dataset's name (a package card's file stem, or the ``name`` of a card in
        ``extra_dirs``), or the path of a ``.toml`` card (a user's card unless it is one of
        the package's files).
    extra_dirs : path-like or iterable of path-like
        User cards to search by name, as in `list_cards`.

    Returns
    -------
    card : DatasetCard
    """
    if isinstance(extra_dirs, (str, os.PathLike)):
        extra_dirs = [extra_dirs]
    extra_dirs = list(extra_dirs)
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or text.endswith(".toml") or os.sep in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise NeurodecodeDataError(f"dataset card {text!r}: no such file {path}; expected a .toml card")
        return DatasetCard.from_toml(path, user=not _is_package_card(path))
    path = cards_dir() / f"{text}.toml"
    if path.is_file() and not extra_dirs:
        return DatasetCard.from_toml(path)
    cards = list_cards(extra_dirs)
    for card in cards:
        if card.name == text:
            return card
    where = f"{cards_dir()}" + "".join(f" or {os.fspath(d)}" for d in extra_dirs)
    raise NeurodecodeDataError(f"no dataset card {text!r} in {where}; known datasets: {[c.name for c in cards]}")
