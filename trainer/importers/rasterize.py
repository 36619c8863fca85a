"""Shapes to an instance label image, with one deterministic rule for overlaps.

Instances travel as `Region`s (a bool crop and its offset) so that a full
4864x3704 frame with hundreds of mitochondria never holds hundreds of
full-size masks. Polygon coordinates follow the pixel-edge convention shared
by ImageJ, COCO and YOLO: pixel (r, c) covers [c, c+1) x [r, r+1), and a pixel
belongs to a polygon when its centre lies inside. A centre exactly on an edge
is decided half-open (scanline rule), so a polygon with integer vertices
covers as many pixels as its area.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Region:
    offset: tuple[int, int]  # (row, col) of the crop's top-left pixel
    mask: np.ndarray  # bool crop

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def region_from_mask(mask: np.ndarray) -> Region | None:
    """The tight crop of a full-size bool mask (None when empty)."""
    rows = np.flatnonzero(mask.any(1))
    if not len(rows):
        return None
    cols = np.flatnonzero(mask.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Region((int(r0), int(c0)), np.ascontiguousarray(mask[r0:r1, c0:c1], dtype=bool))


def _even_odd_crop(paths: list[np.ndarray], r0: int, c0: int, h: int, w: int) -> np.ndarray:
    """Pixels of the crop whose centre is inside the paths (even-odd rule), by scanlines through pixel centres.

    Edges are half-open in y, so a vertex on a scanline is counted once; this
    is the textbook point-in-polygon test evaluated for a whole row at a time.
    """
    x0, y0, x1, y1 = [], [], [], []
    for p in paths:
        q = np.vstack([p, p[:1]])
        x0.append(q[:-1, 0]), y0.append(q[:-1, 1]), x1.append(q[1:, 0]), y1.append(q[1:, 1])
    x0, y0, x1, y1 = (np.concatenate(v) for v in (x0, y0, x1, y1))
    crop = np.zeros((h, w), bool)
    flat = y0 != y1
    x0, y0, x1, y1 = x0[flat], y0[flat], x1[flat], y1[flat]
    if not len(x0):
        return crop
    ys = (np.arange(r0, r0 + h) + 0.5)[:, None]
    cross = ((y0 <= ys) & (ys < y1)) | ((y1 <= ys) & (ys < y0))
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = np.where(cross, x0 + (ys - y0) / (y1 - y0) * (x1 - x0), np.inf)
    xs.sort(axis=1)
    centres = np.arange(c0, c0 + w) + 0.5
    for r in np.flatnonzero(cross.any(1)):
        crop[r] = np.searchsorted(xs[r], centres, side="right") % 2 == 1
    return crop


def _bbox(paths: list[np.ndarray], shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    pts = np.concatenate(paths)
    r0 = max(int(np.floor(pts[:, 1].min())), 0)
    c0 = max(int(np.floor(pts[:, 0].min())), 0)
    r1 = min(int(np.ceil(pts[:, 1].max())) + 1, shape[0])
    c1 = min(int(np.ceil(pts[:, 0].max())) + 1, shape[1])
    return (r0, c0, r1, c1) if r1 > r0 and c1 > c0 else None


def polygon_region(xy: np.ndarray, shape: tuple[int, int]) -> Region | None:
    """Rasterise one (K, 2) x/y polygon, clipped to the image; None when no pixel centre is inside."""
    return paths_region([xy], shape)


def paths_region(paths: list[np.ndarray], shape: tuple[int, int]) -> Region | None:
    """Rasterise several closed paths with the even-odd rule (an inner path cuts a hole), as ImageJ composite ROIs mean."""
    paths = [np.asarray(p, np.float64).reshape(-1, 2) for p in paths if len(p) >= 3]
    if not paths:
        return None
    box = _bbox(paths, shape)
    if box is None:
        return None
    r0, c0, r1, c1 = box
    crop = _even_odd_crop(paths, r0, c0, r1 - r0, c1 - c0)
    region = region_from_mask(crop)
    if region is None:
        return None
    return Region((region.offset[0] + r0, region.offset[1] + c0), region.mask)


@dataclass
class Painted:
    labels: np.ndarray  # HxW int32; instance i of the input has id i + 1
    overlap_px: int  # pixels claimed by more than one instance
    overlapping: int  # instances involved in an overlap
    covered: list[int]  # input indices of instances left with no pixel at all (fully inside smaller ones)


def paint_regions(regions: list[Region], shape: tuple[int, int]) -> Painted:
    """Paint instances largest first so that, where they overlap, the smaller instance keeps the pixels.

    Why smaller: a small mitochondrion drawn over a large one would otherwise
    vanish; the large one only loses a sliver. Between equal areas the
    instance listed first wins.
    """
    labels = np.zeros(shape, np.int32)
    seen = np.zeros(shape, bool)
    multi = np.zeros(shape, bool)
    order = sorted(range(len(regions)), key=lambda k: (-regions[k].area, -k))
    for i in order:
        (r, c), m = regions[i].offset, regions[i].mask
        sl = (slice(r, r + m.shape[0]), slice(c, c + m.shape[1]))
        multi[sl] |= seen[sl] & m
        seen[sl] |= m
        labels[sl][m] = i + 1
    overlapping = 0
    covered = []
    for i, reg in enumerate(regions):
        (r, c), m = reg.offset, reg.mask
        sl = (slice(r, r + m.shape[0]), slice(c, c + m.shape[1]))
        if (multi[sl] & m).any():
            overlapping += 1
        if not (labels[sl][m] == i + 1).any():
            covered.append(i)
    return Painted(labels, int(multi.sum()), overlapping, covered)


def overlap_message(p: Painted) -> str:
    text = f"{p.overlap_px} px shared by {p.overlapping} instances"
    if p.covered:
        text += f"; {len(p.covered)} instance(s) entirely covered by smaller ones were lost (instance no. {', '.join(str(i + 1) for i in p.covered[:10])})"
    return text


def polygons_to_labels(polygons: list[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Rasterise (K, 2) x/y polygons in pixel-edge coordinates; ids follow input order. Returns labels and overlapping px."""
    regions = [polygon_region(xy, shape) for xy in polygons]
    empty = Region((0, 0), np.zeros((0, 0), bool))
    p = paint_regions([r if r is not None else empty for r in regions], shape)
    return p.labels, p.overlap_px
