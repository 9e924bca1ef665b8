"""Environment variables set for a while, then restored."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def temporary_environ(values: dict):
    """Set environment variables for the duration of a ``with`` block, then restore them."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update({key: str(value) for key, value in values.items()})
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
