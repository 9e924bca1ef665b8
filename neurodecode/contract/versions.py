"""The versions a model card records: what a fitted model was computed with."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["VERSIONED_PACKAGES", "package_versions"]

#: Packages whose versions a card records (those installed; "python" is added).
VERSIONED_PACKAGES = ("neurodecode", "numpy", "scipy", "scikit-learn", "pandas", "mne", "pyriemann", "torch",
                      "braindecode", "skops", "moabb")


def package_versions() -> dict:
    """Installed version of each of :data:`VERSIONED_PACKAGES` (absent ones left out), and Python's."""
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out
