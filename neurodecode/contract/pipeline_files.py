"""Pipeline files: found and named without running them, loaded, and keyed by a content hash.

The contract every application shares for pipelines (``benchmark`` runs them, ``train`` fits one
and saves it). Pipeline files are code: a ``.py`` pipeline runs when loaded and a YAML pipeline
makes MOABB import and call whatever its steps name, so files are chosen by
:func:`declared_names`, a read that executes nothing, before any is loaded.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib.util
import json
import math
import os
import re
import tempfile
import types
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

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



def on_device(specs, device):
    """The pipelines with every ``device`` parameter set to ``device`` (None: unchanged).

    ``"auto"`` is resolved here, so that the rows say where they were computed: a pipeline run on
    another device gets another hash, and its rows are never mixed with the CPU's.
    """
    if device is None:
        return specs
    from .._utils.device import DEVICE_CHOICES, resolve_device

    try:
        resolved = resolve_device(device)
    except ValueError as err:
        raise ValueError(f"--device: {err}") from None
    # "auto" and a bare "cuda" are written "cuda" (the hash and the rows say the kind of device); "cuda:1" stays.
    device = resolved.type if str(device) in DEVICE_CHOICES else str(resolved)
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


__all__ = ["PIPELINE_SUFFIXES", "PipelineSpec", "declared_names", "load_pipelines", "on_device",
           "pipeline_hash"]
