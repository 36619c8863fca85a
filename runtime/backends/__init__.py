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
    precision: str  # of the trunk: fp32, fp16 or int8 (decoding, NMS and the heads are always FP32)

    def infer(self, tiles: np.ndarray) -> list[Detections]:
        """`tiles`: float32 (N, tile, tile), normalised gray at the model's pixel size.

        N may be any number: the backend splits it into its static batches and
        pads the last one itself (`tiles_per_call` tiles keep its streams busy).
        """
        ...
