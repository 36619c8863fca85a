"""Segment one normalised image: tile -> infer -> paste -> stitch.

The caller has already read, normalised and rescaled the image to the model's
pixel size; masks come back on the grid of `out_shape` (the input's full
resolution), `factor` output pixels per model pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends import Backend
from .instances import Detections, Instances
from .paste import paste_detections
from .scale import Factor, axis_factors
from .stitch import keep_in_tile, merge_across_tiles
from .tiling import Tile, TileGrid

# How far (as a fraction of the overlap) a box centre may sit outside a tile's core and still be kept:
# two tiles see an object on a seam from different crops, so their boxes differ by a pixel or two;
# without slack both could place the centre in the other's core and drop it. Duplicates are merged.
CENTRE_MARGIN = 1 / 8
# A detection whose box ends this close (model px) to a seam-side tile edge counts as cut by it: a
# real box regressor stops a pixel or two short of the edge for an object that runs past it.
EDGE_TOLERANCE = 3.0


def segment_scaled(
    backend: Backend,
    scaled: np.ndarray,
    out_shape: tuple[int, int],
    factor: Factor,
    overlap: int,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    fill: float | None = None,
) -> Instances:
    """Instances of `scaled` (model pixels) on the `out_shape` grid, `factor` output px per model px (or
    (rows, cols) of them for non-square input pixels); see `stitch` for the seam rule.

    An image smaller than a tile is padded by mirroring unless a constant `fill` is given (see `TileGrid.crop`).
    """
    tiles = infer_tiles(backend, scaled, overlap, fill)
    return assemble(tiles, out_shape, factor, score_threshold, mask_threshold)


@dataclass(frozen=True)
class TileDetections:
    """The raw detections of every tile of one image, before any threshold: so thresholds can be
    chosen (validation) or changed without running the network again."""

    grid: TileGrid
    detections: list[tuple[Tile, Detections]]


def infer_tiles(backend: Backend, scaled: np.ndarray, overlap: int, fill: float | None = None) -> TileDetections:
    """Every tile's detections. The backend is told which boxes the seam rule will keep (`owned_by`), so it
    can skip the mask head for the others (about 40% of the detections on a 4864x3704 frame); `assemble` applies
    the same rule, so the result does not depend on whether the backend uses the hint."""
    grid = TileGrid(scaled.shape, backend.tile, overlap)
    tiles = grid.tiles
    out: list[tuple[Tile, Detections]] = []
    per_call = getattr(backend, "tiles_per_call", backend.batch)  # enough tiles to keep CUDA streams busy
    for start in range(0, len(tiles), per_call):
        chunk = tiles[start : start + per_call]
        batch = np.stack([grid.crop(scaled, t, fill) for t in chunk])  # backends pad a short last batch
        out.extend(zip(chunk, backend.infer(batch, [owned_by(t, grid) for t in chunk])))
    return TileDetections(grid, out)


def owned_by(tile: Tile, grid: TileGrid):
    """The seam rule of `assemble` for one tile, as a box filter (tile-local boxes -> which it keeps)."""
    margin = grid.overlap * CENTRE_MARGIN
    return lambda boxes: keep_in_tile(boxes, tile, grid, margin, EDGE_TOLERANCE)


def assemble(tiles: TileDetections, out_shape: tuple[int, int], factor: Factor,
             score_threshold: float = 0.5, mask_threshold: float = 0.5) -> Instances:
    """Threshold, paste at `factor` output px per model px, and stitch across seams."""
    grid = tiles.grid
    parts: list[Instances] = []
    windows: list[tuple[int, int, int, int]] = []
    for tile, det in tiles.detections:
        keep = (det.scores >= score_threshold) & owned_by(tile, grid)(det.boxes)
        det = type(det)(det.boxes[keep], det.scores[keep], det.mask_probs[keep])
        parts.append(paste_detections(det, (tile.row, tile.col), factor, out_shape, mask_threshold))
        windows.append(_output_window(grid.window(tile), factor, out_shape))
    return merge_across_tiles(parts, windows=windows)


def _output_window(window: tuple[int, int, int, int], factor: Factor, out_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """A tile's window (model pixels) on the output grid."""
    fy, fx = axis_factors(factor)
    r0, c0, r1, c1 = (int(round(v * f)) for v, f in zip(window, (fy, fx, fy, fx)))
    return r0, c0, min(r1, out_shape[0]), min(c1, out_shape[1])
