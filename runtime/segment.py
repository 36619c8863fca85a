"""Segment one normalised image: tile -> infer -> paste -> stitch.

The caller has already read, normalised and rescaled the image to the model's
pixel size; masks come back on the grid of `out_shape` (the input's full
resolution), `factor` output pixels per model pixel.
"""
from __future__ import annotations

import numpy as np

from .backends import Backend
from .instances import Instances
from .normalize import PAD_VALUE
from .paste import paste_detections
from .stitch import merge_across_tiles, owned_by_core
from .tiling import TileGrid


def segment_scaled(
    backend: Backend,
    scaled: np.ndarray,
    out_shape: tuple[int, int],
    factor: float,
    overlap: int,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    fill: float = PAD_VALUE,
) -> Instances:
    grid = TileGrid(scaled.shape, backend.tile, overlap)
    tiles = grid.tiles
    parts: list[Instances] = []
    for start in range(0, len(tiles), backend.batch):
        chunk = tiles[start : start + backend.batch]
        batch = np.stack([grid.crop(scaled, t, fill) for t in chunk])
        if len(chunk) < backend.batch:  # static batch: pad with blank tiles
            batch = np.concatenate([batch, np.full((backend.batch - len(chunk),) + batch.shape[1:], fill, batch.dtype)])
        for tile, det in zip(chunk, backend.infer(batch)):
            keep = (det.scores >= score_threshold) & owned_by_core(det.boxes, (tile.row, tile.col), tile.core)
            det = type(det)(det.boxes[keep], det.scores[keep], det.mask_probs[keep])
            parts.append(paste_detections(det, (tile.row, tile.col), factor, out_shape, mask_threshold))
    return merge_across_tiles(parts)
