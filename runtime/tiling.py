"""A tile grid built once per image shape: where tiles start and which core each owns.

Tiles have a fixed size (static shapes for ONNX/TensorRT) and overlap by at
least `overlap` pixels; an image smaller than a tile gets one padded tile.
Each tile owns a *core*: the cores partition the image, with borders in the
middle of each overlap. A detection belongs to the tile whose core holds the
centre of its box, so an object no larger than the overlap is always seen
whole by its owning tile.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np


def _axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = ceil((length - overlap) / stride)
    n = max(n, 2)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _axis_cores(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    bounds = [0] + [(starts[i + 1] + starts[i] + tile) // 2 for i in range(len(starts) - 1)] + [length]
    return [(bounds[i], bounds[i + 1]) for i in range(len(starts))]


@dataclass(frozen=True)
class Tile:
    row: int  # top-left corner in the (scaled) image
    col: int
    core: tuple[int, int, int, int]  # row0, col0, row1, col1 (end-exclusive), image coordinates


@dataclass(frozen=True)
class TileGrid:
    shape: tuple[int, int]
    tile: int
    overlap: int

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"overlap ({self.overlap}) must be in [0, tile={self.tile})")

    @property
    def tiles(self) -> list[Tile]:
        rs = _axis_starts(self.shape[0], self.tile, self.overlap)
        cs = _axis_starts(self.shape[1], self.tile, self.overlap)
        rcores = _axis_cores(rs, self.tile, self.shape[0])
        ccores = _axis_cores(cs, self.tile, self.shape[1])
        return [Tile(r, c, (rc[0], cc[0], rc[1], cc[1])) for r, rc in zip(rs, rcores) for c, cc in zip(cs, ccores)]

    def crop(self, image: np.ndarray, tile: Tile, fill: float = 0.0) -> np.ndarray:
        """The tile's pixels, padded with `fill` where it runs past the image."""
        out = np.full((self.tile, self.tile), fill, dtype=image.dtype)
        sub = image[tile.row : tile.row + self.tile, tile.col : tile.col + self.tile]
        out[: sub.shape[0], : sub.shape[1]] = sub
        return out
