"""Benchmark runs: every pipeline of a folder on offline datasets, fold by fold, resumable.

What MOABB's ``benchmark()`` does, with three differences that matter on long runs:

* **Fold granularity.** MOABB 1.7.2 splits a dataset with its evaluation's splitter
  (``_create_splitter``), builds one task per (pipeline, fold) (``_build_task_list``) and scores
  each with one pure function, ``moabb.evaluations.base._evaluate_fold``, before averaging the
  folds of a session. Here the same splitter, task list and function are used (same seed,
  ``random_state=42``), but each fold's row is written to the :class:`ResultStore` the moment
  it finishes; the mean of a session's fold scores equals MOABB's score for that session.
* **Resume and failures.** Finished folds are skipped on a rerun. Rows are keyed by what
  computed them too (a hash of the pipeline's parameters, the package version, the data
  fingerprint), so an edited pipeline is recomputed, never mixed with its old rows. A pipeline
  file that fails to load, or a pipeline that raises, is reported, the others run on, and the
  run ends with a failure status.
* **Pipeline files are code.** A ``.py`` pipeline runs when loaded and a YAML pipeline imports
  and calls whatever its steps name, so only the files selected by name are loaded; names are
  read without executing anything (:func:`declared_names`).
* **Offline datasets.** Datasets are named by a spec (a package card, a card file, a BIDS folder,
  ``moabb:ClassName``) and read by neurodecode's loaders inside
  :func:`offline_moabb`, which points MNE/MOABB at the local data and at a private scratch
  folder, never at the network or at the shared data folder.

The ``"pseudo-online"`` evaluation plugs in
:func:`~neurodecode.evaluation.pseudo_online.pseudo_online_evaluate` (sliding windows of
held-out runs, idle included) for datasets that have continuous streams.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import importlib.util
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
import traceback
import types
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .._utils.env import temporary_environ
from . import moabb_glue
from .results import ResultStore, row_key

#: The evaluations, by CLI name (MOABB's three, and ours: pseudo-online).
EVALUATIONS = tuple(moabb_glue.EVALUATION_CLASSES)
#: What ``--datasets`` runs when not given.
DEFAULT_DATASET = "eegmmidb"
#: MOABB's benchmark() seeds every evaluation with this.
RANDOM_STATE = 42
#: Folds per session of MOABB's within-session evaluation as the planner builds it (MOABB's default,
#: ``n_splits=None`` -> 5); used to count folds before any data are loaded.
WITHIN_SESSION_FOLDS = 5
#: The default run takes this many subjects of each dataset (the first present): every pipeline of
#: ``pipelines/`` on them fits in minutes on a 2-core CPU (``--full``: every subject).
DEFAULT_N_SUBJECTS = 3
#: Pseudo-online settings: 1 s windows every 0.125 s, trained on every 4th window.
PSEUDO_ONLINE = {"window_s": 1.0, "step_s": 0.125, "train_every": 4}


# -- datasets --------------------------------------------------------------------------------

def resolve_datasets(specs=None) -> list:
    """The :class:`~neurodecode.data.dataset.Dataset` of each spec (default: :data:`DEFAULT_DATASET`).

    A spec is a package dataset's name, a card file, a BIDS folder or ``moabb:ClassName``
    (see :func:`neurodecode.data.registry.get_dataset`).
    """
    from ..data.registry import get_dataset

    return [get_dataset(spec) for spec in (specs or [DEFAULT_DATASET])]


@contextlib.contextmanager
def offline_moabb(scratch, dataset=None):
    """MOABB and MNE reading local data only and writing only under ``scratch``.

    ``MNE_DATA`` and MNE's home folder (where ``mne-python.json`` lives) are redirected to
    ``scratch``, so neither MOABB's downloads nor its configuration writes can reach the user's
    folders or the shared data. A dataset that wraps a MOABB class reads MNE's real data folder
    instead, under its own network guard (``dataset.offline()``).
    """
    offline = getattr(dataset, "offline", None)
    if offline is not None:
        with offline():
            yield
        return
    scratch = Path(scratch)
    (scratch / "home").mkdir(parents=True, exist_ok=True)
    with temporary_environ({"MNE_DATA": scratch, "_MNE_FAKE_HOME_DIR": scratch / "home"}):
        yield


# -- pipelines -------------------------------------------------------------------------------

#: Suffixes of pipeline files; a file whose name starts with "_" is a helper, never a pipeline.
PIPELINE_SUFFIXES = (".yml", ".yaml", ".py")


@dataclass
class PipelineSpec:
    """One pipeline from a pipeline file: MOABB's config entry plus where it came from.

    ``hash`` is :func:`pipeline_hash` of the pipeline (and, for a ``.py`` file, of its source):
    every result row carries it, so rows of an edited pipeline are never taken for the new one's.
    """

    name: str
    paradigms: list
    pipeline: object
    source: str
    param_grid: dict | None = None
    hash: str = ""


# Memory addresses in reprs ("<function f at 0x7f...>") differ between processes.
_ADDRESS = re.compile(r" (?:object )?at 0x[0-9a-fA-F]+")


def _import_path(obj) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', None) or obj.__name__}"


def _canonical(value, depth: int = 0):
    """A JSON-ready description of ``value``, equal in every process for equal parameters.

    Estimators become their class path and :meth:`get_params` (``deep=False``, recursing into
    nested estimators, which is what ``deep=True`` flattens), classes and functions their
    import path, arrays a digest of their bytes; nothing is described by a memory address.
    """
    if depth > 40:  # a cycle, or absurd nesting: the class is all that can be said
        return {"__class__": _import_path(type(value))}
    down = depth + 1
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return _canonical(value.item(), down)
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype == object:  # bytes of an object array are pointers
            return {"__ndarray__": "object", "shape": list(value.shape),
                    "items": [_canonical(v, down) for v in value.ravel().tolist()]}
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return {"__ndarray__": value.dtype.str, "shape": list(value.shape), "sha256": digest}
    if isinstance(value, dict):
        items = [(_canonical(k, down), _canonical(v, down)) for k, v in value.items()]
        return {"__dict__": sorted(([k, v] for k, v in items), key=lambda kv: json.dumps(kv[0], sort_keys=True))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, down) for v in value]
    if isinstance(value, (set, frozenset)):
        return {"__set__": sorted((_canonical(v, down) for v in value), key=lambda v: json.dumps(v, sort_keys=True))}
    if isinstance(value, type):
        return {"__class__": _import_path(value)}
    if isinstance(value, types.ModuleType):
        return {"__module__": value.__name__}
    if isinstance(value, functools.partial):
        return {"__partial__": _canonical(value.func, down), "args": _canonical(value.args, down),
                "keywords": _canonical(value.keywords, down)}
    if hasattr(value, "get_params") and callable(value.get_params):
        try:
            params = value.get_params(deep=False)
        except Exception:  # noqa: BLE001 - an estimator-like object whose get_params needs more: use its state
            params = getattr(value, "__dict__", {})
        return {"__class__": _import_path(type(value)), "params": _canonical(params, down)}
    if isinstance(value, np.random.RandomState):
        return {"__class__": "numpy.random.RandomState", "state": _canonical(value.get_state(), down)}
    if isinstance(value, np.random.Generator):
        return {"__class__": "numpy.random.Generator", "state": _canonical(value.bit_generator.state, down)}
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)) or (
            callable(value) and hasattr(value, "__qualname__")):
        owner = getattr(value, "__self__", None)
        bound = owner is not None and not isinstance(owner, types.ModuleType)
        return {"__callable__": _import_path(value), **({"self": _canonical(owner, down)} if bound else {})}
    if isinstance(value, enum.Enum):
        return {"__enum__": _import_path(type(value)), "name": value.name}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict) and state:
        return {"__class__": _import_path(type(value)), "state": _canonical(state, down)}
    return {"__class__": _import_path(type(value)), "repr": _ADDRESS.sub("", repr(value))}


def pipeline_hash(pipeline, param_grid=None, source: bytes | None = None) -> str:
    """A short, stable hash of what a pipeline computes, for result keys.

    The same in every process and on every run for the same parameters (no memory addresses,
    no ``id``): sha256 of a canonical JSON description of ``pipeline.get_params`` (nested
    estimators replaced by their class path and parameters), the ``param_grid`` and, for a
    pipeline defined in Python, the source of its file (its classes and functions may change
    without any parameter changing).

    Parameters
    ----------
    pipeline : estimator
    param_grid : dict or None
    source : bytes or None
        The pipeline file's content, for ``.py`` pipelines.

    Returns
    -------
    str
        16 hexadecimal digits.
    """
    description = {"pipeline": _canonical(pipeline), "param_grid": _canonical(param_grid),
                   "source": None if source is None else hashlib.sha256(source).hexdigest()}
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def declared_names(path) -> list[str]:
    """The pipeline names a file declares, read without running anything in it.

    Loading a pipeline file runs code (a ``.py`` file is executed; MOABB's YAML parser imports
    and calls whatever the steps name), so files are chosen by this cheap read first.

    * YAML: the top-level ``name`` key, read with ``yaml.safe_load`` (which constructs no
      Python object).
    * ``.py``: the file stem, and every literal string bound to ``name`` (``name = "X"``) or
      given as the ``"name"`` entry of a dict literal (``{"name": "X", ...}``), found by
      parsing the source with :mod:`ast`, never executing it.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        The file cannot be read that way (not UTF-8, YAML or Python syntax error, no name).
    """
    import ast

    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read it ({err})") from None
    if path.suffix == ".py":
        try:
            tree = ast.parse(text, filename=str(path))
        except SyntaxError as err:
            raise ValueError(f"{path}: Python syntax error, line {err.lineno}: {err.msg}") from None
        names = [path.stem]
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, str) \
                    and any(isinstance(t, ast.Name) and t.id == "name" for t in node.targets):
                names.append(node.value.value)
            elif isinstance(node, ast.Dict):
                names += [v.value for k, v in zip(node.keys, node.values)
                          if isinstance(k, ast.Constant) and k.value == "name"
                          and isinstance(v, ast.Constant) and isinstance(v.value, str)]
        return list(dict.fromkeys(names))
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: cannot read its name: {str(err).splitlines()[0]}") from None
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"{path}: no top-level 'name:' key")
    return [str(config["name"])]


def _load_python_pipeline(path: Path) -> list[dict]:
    spec = importlib.util.spec_from_file_location(f"neurodecode_pipeline_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    # compile + exec rather than the import system's loader, which would write __pycache__/ into
    # the pipelines folder (read-only, or shared with other users).
    exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)  # noqa: S102 - pipeline files are code
    if not hasattr(module, "PIPELINE"):
        raise ValueError(f"{path} defines no PIPELINE dict (keys name, paradigms, pipeline)")
    configs = module.PIPELINE if isinstance(module.PIPELINE, list) else [module.PIPELINE]
    return configs


def _load_yaml_pipeline(path: Path) -> list[dict]:
    from moabb.pipelines.utils import parse_pipelines_from_directory

    # MOABB's parser takes a lock file next to the YAML it reads (mne's _open_lock) and keys on the
    # ".yml" suffix: parsing a private copy leaves the pipelines folder unwritten (it may be
    # read-only, where the lock would fail, or shared) and lets ".yaml" files through.
    with tempfile.TemporaryDirectory(prefix="neurodecode-pipeline-") as tmp:
        copy = Path(tmp) / f"{path.stem}.yml"
        copy.write_bytes(path.read_bytes())
        return parse_pipelines_from_directory(str(copy))


def _check_config(config, path: Path) -> PipelineSpec:
    from sklearn.base import BaseEstimator

    if not isinstance(config, dict):
        raise ValueError(f"{path}: a pipeline must be a dict, got {type(config).__name__}")
    missing = [k for k in ("name", "paradigms", "pipeline") if k not in config]
    if missing:
        raise ValueError(f"{path}: pipeline lacks key(s) {missing}; expected name, paradigms, pipeline")
    if not isinstance(config["pipeline"], BaseEstimator):
        raise ValueError(f"{path}: 'pipeline' must be a scikit-learn estimator, got "
                         f"{type(config['pipeline']).__name__}")
    source = path.read_bytes() if path.suffix == ".py" else None
    return PipelineSpec(str(config["name"]), list(config["paradigms"]), config["pipeline"], str(path),
                        config.get("param_grid"),
                        pipeline_hash(config["pipeline"], config.get("param_grid"), source))


def _pipeline_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in PIPELINE_SUFFIXES and not p.name.startswith("_"))
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"pipelines path {path} is neither a folder nor a file")


def load_pipelines(path="pipelines", names=None) -> tuple[list[PipelineSpec], list[tuple[str, str]]]:
    """The pipelines of a folder (or one file), each file loaded on its own; only named ones if asked.

    YAML files go through MOABB's own parser (``parse_pipelines_from_directory`` on a private
    copy of that one file, so nothing is written next to it); ``.py`` files must define
    ``PIPELINE``, a dict (or list of dicts) with keys ``name``, ``paradigms``, ``pipeline``
    and optionally ``param_grid``, as MOABB expects.

    Pipeline files are code: loading one runs it. With ``names``, a file is loaded only when
    :func:`declared_names` (a read that executes nothing) finds one of the names in it.

    Parameters
    ----------
    path : str or Path
        A folder of ``*.yml``, ``*.yaml`` and ``*.py`` files, or one such file.
    names : list of str or None
        Pipeline names to load (None: every file).

    Returns
    -------
    pipelines : list of PipelineSpec
        In file-name order (only the named ones when ``names`` is given).
    failures : list of (str, str)
        File and error message of each file that failed to load (it is skipped).

    Raises
    ------
    ValueError
        A name in ``names`` that no file declares, or that its file does not define.
    """
    path = Path(path)
    files = _pipeline_files(path)
    wanted = list(dict.fromkeys(str(n) for n in names)) if names else None
    declared, unreadable = {}, {}
    if wanted is not None:
        for file in files:
            try:
                declared[file] = declared_names(file)
            except ValueError as err:
                unreadable[file] = str(err)
        files = [f for f in files if set(declared.get(f, ())) & set(wanted)]
        known = {n for found in declared.values() for n in found}
        _raise_unknown([w for w in wanted if w not in known], path, declared, unreadable)
    pipelines, failures, seen = [], [], {}
    for file in files:
        try:
            configs = _load_python_pipeline(file) if file.suffix == ".py" else _load_yaml_pipeline(file)
            specs = [_check_config(c, file) for c in configs]
        except Exception as err:  # noqa: BLE001 - a broken pipeline file must not stop the others
            failures.append((str(file), f"{type(err).__name__}: {err}"))
            continue
        for spec in specs:
            if wanted is not None and spec.name not in wanted:
                continue  # a .py file may define several pipelines; only the named ones run
            if spec.name in seen:
                failures.append((str(file), f"pipeline name {spec.name!r} already used by {seen[spec.name]}"))
                continue
            seen[spec.name] = str(file)
            pipelines.append(spec)
    if wanted is not None:
        # A name matched (say, a .py file's stem) by a file that loaded but defines other names.
        failed = {Path(f) for f, _ in failures}
        covered = set(seen) | {n for f in failed for n in declared.get(f, ())}
        _raise_unknown([w for w in wanted if w not in covered], path, {f: [p.name for p in pipelines
                                                                           if p.source == str(f)] for f in files},
                       unreadable)
    return pipelines, failures


def _raise_unknown(unknown, path, declared, unreadable) -> None:
    if not unknown:
        return
    found = sorted({n for names in declared.values() for n in names})
    message = f"unknown pipeline(s) {unknown}; pipelines in {path}: {found}"
    if unreadable:
        message += f"; file(s) whose names could not be read: {sorted(Path(f).name for f in unreadable)}"
    raise ValueError(message)


# -- configuration ---------------------------------------------------------------------------

@dataclass
class BenchmarkConfig:
    """What a benchmark run does (written to the results folder as ``config.json``).

    Parameters
    ----------
    pipelines_dir : str
        Folder (or file) of pipelines.
    datasets : list of str
        Dataset specs: package dataset names, card files, BIDS folders or ``moabb:ClassName``
        (see :func:`neurodecode.data.registry.get_dataset`).
    subjects : list of int or None
        Subjects to run (None: the first :data:`DEFAULT_N_SUBJECTS` present, or every subject with ``full``).
    pipelines : list of str or None
        Pipeline names to run (None: every pipeline found).
    evaluation : str
        A key of :data:`EVALUATIONS`.
    out : str
        Results folder.
    n_jobs : int
        Folds evaluated in parallel (joblib; with a Dask scheduler, -1 means every worker).
    scheduler : str or None
        Dask scheduler address, ``"local"`` for a local cluster, or None (no Dask).
    full : bool
        The full study: every subject (unless ``subjects`` names some).
    device : str or None
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when torch sees it): set on every ``device``
        parameter of the pipelines (deep networks, the GPU geometry), so that their folds run
        there; part of the result key. None: each pipeline as its file says.
    """

    pipelines_dir: str = "pipelines"
    datasets: list = field(default_factory=lambda: [DEFAULT_DATASET])
    subjects: list | None = None
    pipelines: list | None = None
    evaluation: str = "within-session"
    out: str = "benchmarks/results/benchmark"
    n_jobs: int = 1
    scheduler: str | None = None
    full: bool = False
    device: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _select_subjects(dataset, subjects, full):
    present = list(dataset.subjects())
    if not present:
        raise ValueError(f"{dataset.name}: no subject's recordings are present (see `neurodecode datasets`)")
    if subjects is None:
        return present if full else present[:DEFAULT_N_SUBJECTS]
    lacking = [s for s in subjects if s not in present]
    if lacking:
        shown = present if len(present) <= 12 else f"{present[:10]}... ({len(present)} in all)"
        raise ValueError(f"{dataset.name}: subject(s) {lacking} have no recordings here; present: {shown}")
    return [int(s) for s in subjects]


# -- one fold: pure functions that run in workers -----------------------------------------

def _plain_result(res: dict, evaluation: str, dataset_name: str, fold: int, n_folds: int, n_subject_rows: int,
                  metric: str) -> dict:
    row = {"evaluation": evaluation, "dataset": dataset_name, "pipeline": res["pipeline"],
           "subject": int(res["subject"]), "session": str(res["session"]), "fold": int(fold),
           "n_folds": int(n_folds), "n_subject_rows": int(n_subject_rows), "score": float(res["score"]),
           "metric": metric,
           "fit_time": float(res["time"]), "n_train": int(res["n_samples"]),
           "n_test": int(res["n_samples_test"]), "n_channels": int(res["n_channels"]),
           "moabb_dataset": res["dataset"].code}
    row.update({k: float(v) for k, v in res.items() if k.startswith("score_")})
    return row


def score_fold(X, y, metadata, task: dict, *, evaluation: str, dataset_name: str, fold: int, n_folds: int,
               n_subject_rows: int, metric: str) -> list[dict]:
    """Fit and score one (pipeline, fold) task with MOABB's own fold function.

    Pure: it depends only on its arguments, so it runs the same in-process, under loky or on
    a Dask worker. BLAS runs on one thread (folds are the unit of parallelism).

    Parameters
    ----------
    X : ndarray of shape (n_trials, n_channels, n_times)
        One subject's (or, for cross-subject, every subject's) epochs, as the paradigm gives them.
    y : ndarray of shape (n_trials,)
    metadata : DataFrame
        The paradigm's metadata (``subject``, ``session``, ``run``), index 0..n_trials-1.
    task : dict
        One entry of MOABB's ``BaseEvaluation._build_task_list``.
    evaluation, dataset_name, metric : str
        Written into the rows.
    fold, n_folds : int
        Fold number within its subject/session and the number of such folds.
    n_subject_rows : int
        Rows the subject has once every fold is stored (how a rerun knows it is complete).

    Returns
    -------
    rows : list of dict
        One row per test session (one, except for cross-subject on multi-session data).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        results = moabb_glue.evaluate_fold(X, y, metadata, task)
    return [_plain_result(r, evaluation, dataset_name, fold, n_folds, n_subject_rows, metric) for r in results]


def score_pseudo_online(pipeline, name: str, windows, *, dataset_name: str, train_every: int) -> list[dict]:
    """Pseudo-online evaluation of one pipeline on one subject's windows (leave one run out).

    Returns one row per fold; ``score`` is the nMCC (chance 0), the other metrics follow it.
    """
    from ..evaluation.pseudo_online import pseudo_online_evaluate

    with threadpool_limits(limits=1, user_api="blas"):
        scores = pseudo_online_evaluate({name: pipeline}, windows, train_every=train_every)
    n_folds = len(scores)
    rows = []
    for r in scores.to_dict("records"):
        rows.append({"evaluation": "pseudo-online", "dataset": dataset_name, "pipeline": name,
                     "subject": int(r["subject"]), "session": "0", "fold": int(r["fold"]), "n_folds": n_folds,
                     "n_subject_rows": n_folds,
                     "score": float(r["nmcc"]), "metric": "nmcc", "fit_time": float(r["fit_time"]),
                     "n_train": int(r["n_train"]), "n_test": int(r["n_test"]), "test_runs": r["test_runs"],
                     "itr": float(r["itr"]), "balanced_accuracy": float(r["balanced_accuracy"]),
                     "accuracy": float(r["accuracy"])})
    return rows


def _guarded(func, *args, **kwargs):
    """Run a fold function; return ("ok", rows) or ("error", message) instead of raising."""
    try:
        return "ok", func(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - one failing pipeline must not stop the run
        return "error", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"


def on_device(specs, device):
    """The pipelines with every ``device`` parameter set to ``device`` (None: unchanged).

    ``"auto"`` is resolved here, so that the rows say where they were computed: a pipeline run on
    another device gets another hash, and its rows are never mixed with the CPU's.
    """
    if device is None:
        return specs
    import torch

    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"--device must be auto, cpu or cuda; got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA device on this machine; use --device auto or cpu")
    out = []
    for spec in specs:
        keys = [k for k in spec.pipeline.get_params(deep=True) if k == "device" or k.endswith("__device")]
        if keys:
            from sklearn.base import clone

            pipeline = clone(spec.pipeline).set_params(**{k: device for k in keys})
            digest = hashlib.sha256(f"{spec.hash}|device={device}".encode()).hexdigest()[:len(spec.hash) or 16]
            spec = replace(spec, pipeline=pipeline, hash=digest)
        out.append(spec)
    return out


def _bind_signal(estimator, info):
    """The estimator with parameters left to the data (``sfreq=None``...) set from the signal's info."""
    from ..transforms.signal import bind_signal_info

    return bind_signal_info(estimator, info) if info is not None else estimator


# -- planning: which folds to run ------------------------------------------------------------

@dataclass
class _Unit:
    """One schedulable piece of work and the identity of the rows it writes."""

    pipeline: str
    subject: int
    func: Callable
    args: tuple
    kwargs: dict
    keys: list = field(default_factory=list)


class _Planner:
    """Yields the units of a run lazily (data are loaded just before their folds are sent).

    :meth:`count` says beforehand how many units the iteration will yield, without loading
    data, so the progress bar has its true total from the start.
    """

    def __init__(self, config, datasets, pipelines, subjects, scratch, done, failed):
        self.config, self.datasets, self.pipelines = config, datasets, pipelines
        self.subjects, self.scratch, self.done, self.failed = subjects, scratch, done, failed
        self.n_skipped = 0
        self.n_planned = 0
        self.on_plan = None  # callback(n_new_units), called as units are planned

    def _planned(self, n):
        self.n_planned += n
        if self.on_plan is not None and n:
            self.on_plan(n)

    def _complete(self, ds, pipeline, subject, done_counts):
        """A subject whose folds are all stored for this pipeline (from the rows' n_folds)."""
        key = (self.config.evaluation, ds.name, pipeline, subject)
        count, needed = done_counts.get(key, (0, None))
        return needed is not None and count >= needed

    def _done_counts(self):
        counts = {}
        for row in self.done.values():
            key = (row["evaluation"], row["dataset"], row["pipeline"], int(row["subject"]))
            count, _ = counts.get(key, (0, None))
            # A row without n_subject_rows (written by hand or by another tool) cannot tell that its
            # subject is complete: the subject's missing folds are then looked for one by one.
            needed = row.get("n_subject_rows")
            counts[key] = (count + 1, int(needed) if isinstance(needed, (int, float)) and needed == needed else None)
        return counts

    def count(self) -> int:
        """The number of units iterating will yield (folds not stored yet), before loading any data.

        Raises
        ------
        ValueError
            The evaluation cannot run on a dataset (cross-session on one session, cross-subject
            on one subject): said before anything runs.
        """
        total = 0
        for ds in self.datasets:
            pipes = {p.name: p for p in self.pipelines[ds.name]}
            if pipes:
                total += self._count_units(ds, pipes, self.subjects[ds.name])
        return total

    @staticmethod
    def _n_sessions(ds, subject):
        """Sessions of one subject, from the dataset's description (no data read); None if unknown."""
        n = getattr(ds, "n_sessions", None)
        if callable(n):
            return int(n([subject]))
        return None if n is None else int(n)

    def _count_units(self, ds, pipes, subjects) -> int:
        """Units :meth:`__iter__` yields for one dataset: the folds each evaluation makes, less those stored.

        Per subject and pipeline the evaluation fixes the number of folds before any data are
        read: within-session, :data:`WITHIN_SESSION_FOLDS` per session; cross-session, one per
        session (each held out once); cross-subject, one per subject (held out in turn);
        pseudo-online, one unit per subject (its leave-one-run-out folds run together).
        Stored folds are subtracted the way the iteration skips them.
        """
        evaluation = self.config.evaluation
        subjects = [int(s) for s in subjects]
        if evaluation == "cross-subject" and len(subjects) < 2:
            raise ValueError(f"--evaluation cross-subject holds out one subject at a time and needs at least 2 "
                             f"subjects; {ds.name}: only {subjects} selected")
        sessions = {}
        if evaluation in ("within-session", "cross-session"):
            sessions = {s: self._n_sessions(ds, s) for s in subjects}
        if evaluation == "cross-session":
            single = [s for s, n in sessions.items() if n is not None and n < 2]
            if single and len(single) == len(subjects):
                raise ValueError(f"--evaluation cross-session needs at least 2 sessions per subject, and dataset "
                                 f"{ds.name} has one session; use within-session, cross-subject or pseudo-online")
            if single:
                raise ValueError(f"--evaluation cross-session needs at least 2 sessions per subject; in dataset "
                                 f"{ds.name}, subject(s) {single} have one session")
        counts = self._done_counts()
        stored = {}
        for key in self.done:
            ev, name, subject, session, fold = key[0], key[2], key[3], key[4], key[5]
            if ev == evaluation and key[1] == ds.name:
                fold_id = (session, fold) if evaluation == "within-session" else fold
                stored.setdefault((name, subject), set()).add(fold_id)
        total = 0
        for name in pipes:
            if name in self.failed:
                continue
            for subject in subjects:
                if self._complete(ds, name, subject, counts):
                    continue
                if evaluation == "pseudo-online":
                    total += 1
                    continue
                n_sessions = sessions.get(subject) or 1
                expected = {"within-session": WITHIN_SESSION_FOLDS * n_sessions, "cross-session": n_sessions,
                            "cross-subject": 1}[evaluation]
                total += max(expected - len(stored.get((name, subject), ())), 0)
        return total

    def __iter__(self):
        evaluation = self.config.evaluation
        counts = self._done_counts()
        for ds in self.datasets:
            pipes = {p.name: p for p in self.pipelines[ds.name]}
            if not pipes:
                continue
            subjects = self.subjects[ds.name]
            if evaluation == "pseudo-online":
                yield from self._pseudo_online(ds, pipes, subjects, counts)
            else:
                yield from self._moabb(ds, pipes, subjects, counts)

    def _moabb(self, ds, pipes, subjects, counts):
        evaluation = self.config.evaluation
        with offline_moabb(self.scratch, ds), moabb_glue.quiet():
            dataset = moabb_glue.to_moabb_dataset(ds, subjects)
            paradigm = moabb_glue.make_paradigm(ds.paradigm)
            metric = paradigm.scoring if isinstance(paradigm.scoring, str) else "score"
            param_grid = {p.name: p.param_grid for p in pipes.values() if p.param_grid}
            # Cross-subject folds need every subject at once; the others go one subject at a time,
            # which gives the same folds since MOABB's splitters reseed every subject and session.
            groups = [list(subjects)] if evaluation == "cross-subject" else [[s] for s in subjects]
            for group in groups:
                todo = {n: p for n, p in pipes.items()
                        if n not in self.failed and not all(self._complete(ds, n, s, counts) for s in group)}
                if not todo:
                    self.n_skipped += sum(counts.get((evaluation, ds.name, n, s), (0, 0))[0]
                                          for n in pipes for s in group)
                    continue
                # Data load here, under the offline settings of this process.
                X, y, metadata, tasks = moabb_glue.fold_tasks(
                    evaluation, dataset, paradigm, group, {n: p.pipeline for n, p in todo.items()}, param_grid,
                    self.scratch, RANDOM_STATE)
                # MOABB hands pipelines plain arrays: parameters left to the data (sfreq=None...) get the
                # signal's own values, recorded when MOABB read the recordings.
                info = moabb_glue.signal_info(dataset)
                for task in tasks:
                    task["pipeline"] = _bind_signal(task["pipeline"], info)
                yield from self._fold_units(ds, X, y, metadata, tasks, metric, counts)

    def _fold_units(self, ds, X, y, metadata, tasks, metric, counts):
        evaluation = self.config.evaluation
        # Number folds within the unit MOABB scores: a subject's session (within-session),
        # a subject (cross-session) or the held-out subject (cross-subject).
        def group_of(task):
            if evaluation == "within-session":
                return (task["subject"], str(task["session"]))
            return (task["subject"],)

        folds_of = {}
        for task in tasks:
            folds = folds_of.setdefault((task["pipeline_name"], group_of(task)), [])
            if task["cv_ind"] not in folds:
                folds.append(task["cv_ind"])
        # Rows a subject has once complete (cross-subject: one per session of the held-out subject).
        subject_rows = {}
        for (name, group), folds in folds_of.items():
            n = len(folds)
            if evaluation == "cross-subject":
                n = metadata.loc[metadata["subject"] == group[0], "session"].nunique()
            subject_rows[(name, group[0])] = subject_rows.get((name, group[0]), 0) + n
        units = []
        for task in tasks:
            name, subject = task["pipeline_name"], int(task["subject"])
            fold = folds_of[(name, group_of(task))].index(task["cv_ind"])
            session = str(task["session"]) if evaluation == "within-session" else None
            prefix = (evaluation, ds.name, name, subject)
            if any(k[:4] == prefix and k[5] == fold and (session is None or k[4] == session) for k in self.done):
                self.n_skipped += 1
                continue
            units.append(_Unit(name, subject, score_fold, (X, y, metadata, task),
                               {"evaluation": evaluation, "dataset_name": ds.name, "fold": fold,
                                "n_folds": len(folds_of[(name, group_of(task))]),
                                "n_subject_rows": subject_rows[(name, task["subject"])], "metric": metric}))
        self._planned(len(units))
        yield from units

    def _pseudo_online(self, ds, pipes, subjects, counts):
        from ..data.stream import sliding_windows

        for subject in subjects:
            todo = [n for n in pipes if n not in self.failed and not self._complete(ds, n, subject, counts)]
            self.n_skipped += sum(counts.get(("pseudo-online", ds.name, n, subject), (0, 0))[0]
                                  for n in pipes if n not in todo)
            if not todo:
                continue
            with parallel_config(backend="sequential"):
                windows = sliding_windows(ds.streams([subject]), PSEUDO_ONLINE["window_s"], PSEUDO_ONLINE["step_s"])
            units = [_Unit(n, subject, score_pseudo_online, (_bind_signal(pipes[n].pipeline, windows.info), n, windows),
                           {"dataset_name": ds.name, "train_every": PSEUDO_ONLINE["train_every"]}) for n in todo]
            self._planned(len(units))
            yield from units


# -- the run -------------------------------------------------------------------------------

def _first_line(message) -> str:
    return (str(message).strip().splitlines() or [""])[0]


def _describe(config, datasets, pipelines, subjects, failures, stream):
    lines = [f"neurodecode benchmark: evaluation {config.evaluation}, results in {config.out}",
             f"  pipelines from {config.pipelines_dir}:"]
    for ds in datasets:
        kind = moabb_glue.paradigm_name(ds.paradigm)
        lines.append(f"  dataset {ds.name} ({kind}: {', '.join(ds.paradigm.classes)}), subjects {subjects[ds.name]}")
        lines.append(f"    pipelines: {[p.name for p in pipelines[ds.name]] or 'none listing ' + kind}")
    if config.subjects is None and not config.full:
        lines.append("  default subjects: add --full for every subject, or --subjects 1-20")
    for failure in failures:
        lines.append(f"  FAILED to load pipeline file {failure['file']}: {failure['error']}")
    where = config.scheduler or ("this process" if config.n_jobs == 1 else f"{config.n_jobs} local processes")
    lines.append(f"  folds run on: {where}")
    print("\n".join(lines), file=stream, flush=True)


def _check_out(out: Path) -> None:
    """Refuse, in one line and before any work, a results folder that cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Write permission is what matters (a folder may exist and be read-only).
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        where = f": {err.filename}" if err.filename and str(err.filename) != str(out) else ""
        raise ValueError(f"--out {out}: cannot create or write the results folder "
                         f"({err.strerror or type(err).__name__}{where})") from None


def _data_keys(ds, subjects, evaluation) -> dict:
    """The data fingerprint each subject's rows are keyed by ("" when the dataset has none).

    A subject's folds depend on its own recordings, except cross-subject folds, which are
    trained on every selected subject: those rows are keyed by all of them.
    """
    import inspect

    fingerprint = getattr(ds, "fingerprint", None)
    if fingerprint is None:
        return {s: "" for s in subjects}
    try:
        takes_subjects = bool(inspect.signature(fingerprint).parameters)
    except (TypeError, ValueError):
        takes_subjects = False
    if not takes_subjects:
        key = str(fingerprint())
        return {s: key for s in subjects}
    if evaluation == "cross-subject":
        key = str(fingerprint(list(subjects)))
        return {s: key for s in subjects}
    return {s: str(fingerprint([s])) for s in subjects}


def run_benchmark(config: BenchmarkConfig, *, progress: bool = True, stream=None) -> pd.DataFrame:
    """Run a benchmark, appending each finished fold to ``config.out``; skip stored folds.

    Every row carries ``pipeline_hash`` (:func:`pipeline_hash`), ``neurodecode_version`` and
    ``data_key`` (the dataset's ``fingerprint()``, when it has one), which are part of its key:
    a stored fold is reused only if the same pipeline computed it on the same data with the same
    package version. Rows of other versions stay in the file, untouched and unused.

    Parameters
    ----------
    config : BenchmarkConfig
    progress : bool
        Show a tqdm bar over folds (on stderr), its total counted before the first fold.
    stream : file-like or None
        Where the configuration and the summary are printed (default: stdout).

    Returns
    -------
    results : DataFrame
        Every row stored in ``config.out`` for this run's evaluation, datasets, pipelines (their
        current version) and subjects, rows of earlier runs included, one per fold and session.
        ``attrs["failures"]`` lists the pipeline files that failed to load and the pipelines that
        failed (dicts with ``stage``, ``pipeline``, ``file``, ``subject``, ``error``).

    Raises
    ------
    ValueError
        A mistake in the configuration, found before any fold runs: an unknown evaluation,
        dataset or pipeline name, an unwritable ``out``, a line of ``results.jsonl`` that is
        not a result row, an evaluation the dataset cannot support, an unreachable scheduler.
    """
    import neurodecode

    from .results import content_key
    from .scaleout import joblib_backend

    stream = stream or sys.stdout
    if config.evaluation not in EVALUATIONS:
        raise ValueError(f"unknown evaluation {config.evaluation!r}; choose one of {list(EVALUATIONS)}")
    out = Path(config.out)
    _check_out(out)
    store = ResultStore(out)
    stored_rows = store.rows()  # a foreign line in results.jsonl is reported now, not after hours of folds
    datasets = resolve_datasets(config.datasets)
    chosen, load_failures = load_pipelines(config.pipelines_dir, config.pipelines)
    chosen = on_device(chosen, config.device)
    pipelines = {ds.name: [p for p in chosen if moabb_glue.paradigm_name(ds.paradigm) in p.paradigms]
                 for ds in datasets}
    subjects = {ds.name: _select_subjects(ds, config.subjects, config.full) for ds in datasets}
    failures = [_load_failure(file, message) for file, message in load_failures]
    _describe(config, datasets, pipelines, subjects, failures, stream)

    version = str(neurodecode.__version__)
    data_keys = {ds.name: _data_keys(ds, subjects[ds.name], config.evaluation) for ds in datasets}
    hashes = {p.name: p.hash for p in chosen}
    current = {(ds.name, p.name, s): (p.hash, version, data_keys[ds.name][s])
               for ds in datasets for p in pipelines[ds.name] for s in subjects[ds.name]}

    def is_current(row) -> bool:
        return (str(row["evaluation"]) == config.evaluation
                and current.get((str(row["dataset"]), str(row["pipeline"]), int(row["subject"]))) == content_key(row))

    def stamped(row) -> dict:
        return {**row, "pipeline_hash": hashes[row["pipeline"]], "neurodecode_version": version,
                "data_key": data_keys[row["dataset"]][int(row["subject"])]}

    done = {row_key(r): r for r in stored_rows if is_current(r)}
    failed: dict[str, str] = {}
    failed_where: dict[str, int] = {}
    n_written = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="moabb-scratch-", dir=out) as scratch, \
            joblib_backend(config.scheduler) as n_jobs_default:
        planner = _Planner(config, datasets, pipelines, subjects, Path(scratch), done, failed)
        # Counted before any data are loaded, so the bar's total (and its ETA) is right from the first fold.
        total = planner.count()
        store.record_run({"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(),
                          "host": platform.node(), **config.to_dict(), "subjects_run": subjects,
                          "pipelines_run": {k: [p.name for p in v] for k, v in pipelines.items()},
                          "pipeline_files": {p.name: p.source for p in chosen}, "pipeline_hashes": hashes,
                          "neurodecode_version": version, "data_keys": data_keys, "folds_planned": total,
                          "pipeline_load_failures": load_failures})
        bar = tqdm(total=total, desc="folds", unit="fold", disable=not progress, file=sys.stderr)
        units = (u for u in planner if u.pipeline not in failed)
        n_jobs = config.n_jobs if config.scheduler is None else (n_jobs_default if config.n_jobs in (1, -1)
                                                                 else config.n_jobs)
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", pre_dispatch="2*n_jobs")
        calls = ((delayed(_tagged)(u.pipeline, u.subject, u.func, *u.args, **u.kwargs)) for u in units)
        for pipeline, subject, (status, payload) in parallel(calls):
            bar.update(1)
            if status == "ok":
                n_written += store.append([stamped(row) for row in payload])
            else:
                if pipeline not in failed:
                    failed[pipeline], failed_where[pipeline] = _first_line(payload), subject
                    tqdm.write(f"pipeline {pipeline!r} failed on subject {subject}: {failed[pipeline]}; "
                               "skipping its remaining folds", file=stream)
                store.append_error({"pipeline": pipeline, "subject": subject, "error": payload,
                                    "evaluation": config.evaluation, "pipeline_hash": hashes.get(pipeline),
                                    "time": time.time()})
        if not failed and planner.n_planned != total:
            # The count and the plan disagree (a dataset whose folds differ from its evaluation's
            # rule): end the bar at what really ran rather than short of, or past, 100 %.
            bar.total = planner.n_planned
            bar.refresh()
        bar.close()
    elapsed = time.perf_counter() - t0
    results = _select_rows(store.rows(), is_current)
    failures += [{"stage": "run", "pipeline": name, "file": next(p.source for p in chosen if p.name == name),
                  "subject": failed_where[name], "error": message} for name, message in failed.items()]
    print(f"{n_written} fold row(s) written, {planner.n_skipped} already stored (skipped), "
          f"{len(failed)} pipeline(s) failed, in {elapsed:.1f} s", file=stream, flush=True)
    for failure in failures:
        what = (f"pipeline file {failure['file']}" if failure["stage"] == "load"
                else f"{failure['pipeline']} (subject {failure['subject']})")
        print(f"  FAILED {what}: {failure['error']}", file=stream)
    if not results.empty:
        summary = results.groupby(["dataset", "pipeline"])["score"].agg(["mean", "std", "count"])
        print(summary.round(3).to_string(), file=stream, flush=True)
    results.attrs.update({"failed": failed, "load_failures": load_failures, "failures": failures,
                          "written": n_written, "skipped": planner.n_skipped, "seconds": elapsed})
    return results


def _load_failure(file, message) -> dict:
    """A pipeline file that failed to load, as a row of the report's failure table."""
    try:
        names = ", ".join(declared_names(file))
    except ValueError:
        names = ""
    return {"stage": "load", "pipeline": names, "file": str(file), "subject": None, "error": _first_line(message)}


def _tagged(pipeline, subject, func, *args, **kwargs):
    return pipeline, subject, _guarded(func, *args, **kwargs)


def _select_rows(rows, keep) -> pd.DataFrame:
    """The rows ``keep`` accepts (this run's selection, current versions), as a sorted DataFrame."""
    frame = pd.DataFrame([r for r in rows if keep(r)])
    if frame.empty:
        return frame
    order = ["dataset", "pipeline", "subject", "session", "fold"]
    return frame.sort_values(order).reset_index(drop=True)


def session_scores(results: pd.DataFrame) -> pd.DataFrame:
    """Fold rows averaged per (dataset, pipeline, subject, session), as MOABB reports them.

    For within-session results this is MOABB's score: the mean of the session's folds.
    """
    cols = ["evaluation", "dataset", "pipeline", "subject", "session"]
    ordered = results.sort_values(cols + ["fold"])
    return ordered.groupby(cols, sort=True).agg(score=("score", "mean"), fit_time=("fit_time", "mean"),
                                                n_folds=("fold", "count")).reset_index()


def load_results(out) -> pd.DataFrame:
    """Every result row stored in a results folder."""
    return ResultStore(out).to_frame()


__all__ = ["BenchmarkConfig", "DEFAULT_N_SUBJECTS", "EVALUATIONS", "PipelineSpec", "WITHIN_SESSION_FOLDS",
           "declared_names", "load_pipelines", "load_results", "offline_moabb", "pipeline_hash", "resolve_datasets",
           "run_benchmark", "score_fold", "score_pseudo_online", "session_scores"]
