"""The optional [em] extra: Gatan DM3/DM4 (rosettasciio) and MRC (mrcfile), imported only when such a file is read.

Without it a folder's .dm3/.dm4/.mrc files are still found, and each fails with one line that names the
extra, so none is skipped in silence.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .image_io import ImageReadError

INSTALL = 'pip install "mitotally[em]"'
_PACKAGES = {"rsciio": "rosettasciio", "mrcfile": "mrcfile"}  # module -> the PyPI package that provides it


def import_em(module: str, suffix: str) -> ModuleType:
    """`module`, or `ImageReadError` naming the extra when its package is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = _PACKAGES.get(module.split(".")[0], module)
        raise ImageReadError(f"reading {suffix} files needs the [em] extra ({package} is not installed): {INSTALL}") from None
