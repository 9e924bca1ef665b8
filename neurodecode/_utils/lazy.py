"""Names a package exports, imported on first use (PEP 562), so that importing a stage stays cheap."""

from __future__ import annotations

import importlib

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict):
    """A package's module-level ``__getattr__`` and ``__dir__`` for ``exports``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict of str to str
        Exported name -> the module that defines it: a submodule's name relative to ``package``
        (``"model_file"``) or an absolute one (``"neurodecode.data.container"``).

    Returns
    -------
    __getattr__, __dir__ : callable
        Bind them at the package's top level: ``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)``.
    """
    def __getattr__(name):
        if name in exports:
            module = exports[name]
            where = module if module.startswith("neurodecode.") else f"{package}.{module}"
            return getattr(importlib.import_module(where), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(exports) | {"__version__"} & set(vars(importlib.import_module(package))))

    return __getattr__, __dir__
