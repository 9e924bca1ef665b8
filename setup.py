"""Package list for setuptools (everything else is in pyproject.toml).

pyproject's ``[tool.setuptools.packages.find]`` only finds folders inside ``neurodecode/``; the
dataset cards live in the repository's top-level ``datasets/`` folder and are mapped onto the
package ``neurodecode.data.dataset_cards`` by ``[tool.setuptools.package-dir]``, so that package is
named here beside the ones found.
"""

from setuptools import find_namespace_packages, setup

setup(packages=find_namespace_packages(include=["neurodecode*"]) + ["neurodecode.data.dataset_cards"])
