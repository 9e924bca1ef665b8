"""The house's rules, checked on the source: stages import only from stages before them, and no dataset
is named outside its own module."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neurodecode"
#: Stages in data-flow order (design: docs/design.md). A module may import from its own stage, from
#: stages before it, and from ``_utils``.
STAGES = ["_utils", "training", "data", "geometry", "transforms", "models", "evaluation", "contract", "online",
          "benchmark", "batch", "reports", "cli"]
#: The applications: each builds on the contract stage and the library below it, never on another.
APPLICATIONS = ("online", "benchmark", "batch")


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "neurodecode":
        return None
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def _imports(path: Path):
    """Every neurodecode module a file imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, node.lineno
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield arg.value, node.lineno
            elif isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant):
                yield arg.values[0].value.rstrip("."), node.lineno


def _edges():
    """(file, source stage, imported module, line, target stage) of every import between two stages."""
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _stage(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if source in (None, "__init__"):
            continue
        for module, line in _imports(path):
            target = _stage(module)
            if target not in (None, "__init__", "_utils", source):
                yield path.relative_to(PACKAGE.parent), source, module, line, target


def _violations():
    found = []
    for where, source, module, line, target in _edges():
        if target not in STAGES or source not in STAGES:
            found.append(f"{where}:{line} imports {module}: unknown stage")
        elif STAGES.index(target) > STAGES.index(source):
            found.append(f"{where}:{line} ({source}) imports {module} ({target}), a later stage")
        elif source in APPLICATIONS and target in APPLICATIONS:
            found.append(f"{where}:{line} ({source}) imports {module} ({target}), another application")
    return found


def stage_graph() -> dict:
    """Stage -> the stages its modules import (``_utils`` and itself left out), from the source."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _stage(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if source not in (None, "__init__"):
            graph.setdefault(source, set())
    for _, source, _, _, target in _edges():
        graph[source].add(target)
    order = {s: i for i, s in enumerate(STAGES)}
    return {s: sorted(graph[s], key=lambda t: order.get(t, -1)) for s in sorted(graph, key=lambda s: order.get(s, -1))}


def test_stage_graph_points_one_way(capsys):
    # Printed with ``pytest -s tests/test_layering.py`` (or ``python tests/test_layering.py``): the graph
    # the closing notes quote, checked here to point only to earlier stages.
    graph = stage_graph()
    with capsys.disabled():
        print("\n" + format_graph(graph))
    assert set(graph) <= set(STAGES)
    for source, targets in graph.items():
        assert all(STAGES.index(t) < STAGES.index(source) for t in targets), (source, targets)
        if source in APPLICATIONS:
            assert not set(targets) & set(APPLICATIONS), (source, targets)


def format_graph(graph: dict) -> str:
    return "\n".join(f"{source:>10} -> {', '.join(targets) or '(only _utils)'}" for source, targets in graph.items())


def test_every_import_points_to_an_earlier_stage():
    assert _violations() == []


@pytest.mark.parametrize("stage, source, expected", [
    ("data", "def f():\n    from ..benchmark import runner\n", "a later stage"),  # imports in functions count
    ("batch", "from ..online import lsl\n", "another application"),
], ids=["backward", "application"])
def test_the_check_can_fail(tmp_path, monkeypatch, stage, source, expected):
    # The rules must be able to fail: a data module importing the benchmark, batch importing online.
    fake = tmp_path / "neurodecode"
    (fake / stage).mkdir(parents=True)
    (fake / stage / "bad.py").write_text(source)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert [v for v in _violations() if "bad.py" in v and expected in v]


DATASET_NAMES = re.compile(r"eegmmidb|kalunga|muse|haxby|abide|digit69|mnist|physionet|eegbci", re.IGNORECASE)


def _code_words(tree):
    """Identifiers, imported names and string constants of a module, docstrings and comments excluded."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "DEFAULT_DATASET" for t in node.targets):
            continue  # the one default of user-facing options
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or ""
            for alias in node.names:
                yield node.lineno, alias.name


def _named_datasets(path: Path) -> list:
    tree = ast.parse(path.read_text())
    skip = {n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assign)
            and any(getattr(t, "id", "") == "DEFAULT_DATASET" for t in n.targets)}
    return sorted({f"{line}: {word}" for line, word in _code_words(tree)
                   if DATASET_NAMES.search(word) and line not in skip})


# The data package's public API re-exports each dataset's loader (``neurodecode.data.load_eegmmidb``).
_REEXPORTS = {PACKAGE / "data" / "__init__.py"}


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py")
                                        if "datasets" not in p.relative_to(PACKAGE).parts and p not in _REEXPORTS),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_dataset_is_named_in_code_outside_its_module(path):
    assert _named_datasets(path) == []


def test_the_name_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""Docstrings may cite eegmmidb."""\nif name == "eegmmidb":\n    pass\n')
    assert _named_datasets(bad) == ["2: eegmmidb"]


if __name__ == "__main__":
    print(format_graph(stage_graph()))
