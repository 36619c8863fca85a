"""Deterministic train/validation split by image, by blocks of consecutive slices."""
from __future__ import annotations

from math import ceil

from .importers.types import LabelledImage


def split_by_block(items: list[LabelledImage], val_last: int | None, val_fraction: float) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """The last images by name form the validation block (neighbouring z-slices look alike)."""
    ordered = sorted(items, key=lambda it: it.name)
    if len(ordered) < 2:
        return ordered, []
    n_val = val_last if val_last is not None else max(1, ceil(len(ordered) * val_fraction))
    n_val = min(n_val, len(ordered) - 1)
    if n_val <= 0:
        return ordered, []
    return ordered[:-n_val], ordered[-n_val:]
