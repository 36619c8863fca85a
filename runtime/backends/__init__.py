"""Inference backends: one file per runtime, all behind the `Backend` protocol."""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

from ..instances import Detections

# Which of a tile's final boxes (tile-local x0 y0 x1 y1, model px) the caller will keep. A backend may
# drop the others before the mask head (they would be dropped after it anyway: the stitcher's seam rule).
BoxFilter = Callable[[np.ndarray], np.ndarray]


class Backend(Protocol):
    """Runs the model on a batch of normalised tiles; keeps no per-call state."""

    name: str
    tile: int
    batch: int
    precision: str  # of the trunk: fp32, fp16 or int8 (decoding, NMS and the heads are always FP32)

    def infer(self, tiles: np.ndarray, box_filters: Sequence[BoxFilter] | None = None) -> list[Detections]:
        """`tiles`: float32 (N, tile, tile), normalised gray at the model's pixel size.

        N may be any number: the backend splits it into its static batches and
        pads the last one itself (`tiles_per_call` tiles keep its streams busy).
        `box_filters` (one per tile) is a hint: a backend may skip the mask head for boxes a filter
        rejects, or ignore it; results for the boxes a filter accepts are the same either way.
        """
        ...
