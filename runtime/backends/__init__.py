"""Inference backends: one file per runtime, all behind the `Backend` protocol."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ..instances import Detections


class Backend(Protocol):
    """Runs the model on a batch of normalised tiles; keeps no per-call state."""

    name: str
    tile: int
    batch: int

    def infer(self, tiles: np.ndarray) -> list[Detections]:
        """`tiles`: float32 (B, tile, tile), normalised gray at the model's pixel size."""
        ...
