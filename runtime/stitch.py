"""Stitch per-tile instances into one set per image.

The rule, in two steps (tested by the seam round trip in tests/runtime/test_stitch.py):

1. keep: a tile keeps a detection whose box centre lies in the tile's core
   (grown by `margin` px, so that box jitter between two tiles never drops an
   object lying on a seam). An object no larger than the overlap is then seen
   whole by the tile that keeps it. A tile also keeps a *piece*: a detection
   cut by one of its interior edges (a seam side, not the image border) whose
   box reaches into its core; that is how objects larger than the overlap,
   which no tile sees whole, are recovered.
2. merge: kept instances from *different* tiles are the same mitochondrion
   when, inside the part of the image both tiles see (their shared window),
   their masks overlap by at least `merge_overlap` (50%) of the smaller of the
   two masks there. They are merged by union, keeping the higher score.
   Comparing inside the shared window is what lets two long pieces that share
   only the overlap strip merge; whole-mask overlap would keep them apart.

Instances from the same tile are never merged with each other (the model has
already separated them), even through a chain of other pieces. Only instances
whose boxes intersect are compared (a sweep over boxes sorted by row), so the
cost grows with the number of neighbours, not with the square of the count.
"""
from __future__ import annotations

import numpy as np

from .instances import Instances
from .tiling import Tile, TileGrid

Window = tuple[int, int, int, int]  # row0, col0, row1, col1 (end-exclusive), image coordinates


def owned_by_core(
    boxes: np.ndarray, origin: tuple[int, int], core: tuple[int, int, int, int], margin: float = 0.0
) -> np.ndarray:
    """Which tile-local boxes (x0 y0 x1 y1) have their centre inside the tile's core (image coords) grown by `margin`."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + origin[0]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + origin[1]
    r0, c0, r1, c1 = core
    return (cy >= r0 - margin) & (cy < r1 + margin) & (cx >= c0 - margin) & (cx < c1 + margin)


def cut_by_seam(boxes: np.ndarray, tile: Tile, grid: TileGrid, tolerance: float = 1.0) -> np.ndarray:
    """Which tile-local boxes touch (within `tolerance` px) an edge of the tile that lies inside the image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = boxes.T
    size, (height, width) = grid.tile, grid.shape
    return (
        ((x0 <= tolerance) & (tile.col > 0))
        | ((y0 <= tolerance) & (tile.row > 0))
        | ((x1 >= size - tolerance) & (tile.col + size < width))
        | ((y1 >= size - tolerance) & (tile.row + size < height))
    )


def keep_in_tile(boxes: np.ndarray, tile: Tile, grid: TileGrid, margin: float = 0.0, tolerance: float = 1.0) -> np.ndarray:
    """Step 1 of the rule: detections this tile keeps (box centre in its core, or a seam-cut piece reaching into it)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    r0, c0, r1, c1 = tile.core
    x0, y0, x1, y1 = (boxes + np.array([tile.col, tile.row, tile.col, tile.row])).T
    meets_core = (y0 < r1) & (y1 > r0) & (x0 < c1) & (x1 > c0)
    owned = owned_by_core(boxes, (tile.row, tile.col), tile.core, margin)
    return owned | (cut_by_seam(boxes, tile, grid, tolerance) & meets_core)


def _count_in(offset: np.ndarray, mask: np.ndarray, window: Window) -> int:
    """Pixels of a mask crop that fall inside `window`."""
    r0, c0 = max(offset[0], window[0]), max(offset[1], window[1])
    r1, c1 = min(offset[0] + mask.shape[0], window[2]), min(offset[1] + mask.shape[1], window[3])
    if r1 <= r0 or c1 <= c0:
        return 0
    return int(np.count_nonzero(mask[r0 - offset[0] : r1 - offset[0], c0 - offset[1] : c1 - offset[1]]))


def _overlap_in(a_off, a_mask, b_off, b_mask, window: Window) -> int:
    """Pixels set in both masks inside `window`."""
    r0 = max(a_off[0], b_off[0], window[0])
    c0 = max(a_off[1], b_off[1], window[1])
    r1 = min(a_off[0] + a_mask.shape[0], b_off[0] + b_mask.shape[0], window[2])
    c1 = min(a_off[1] + a_mask.shape[1], b_off[1] + b_mask.shape[1], window[3])
    if r1 <= r0 or c1 <= c0:
        return 0
    a = a_mask[r0 - a_off[0] : r1 - a_off[0], c0 - a_off[1] : c1 - a_off[1]]
    b = b_mask[r0 - b_off[0] : r1 - b_off[0], c0 - b_off[1] : c1 - b_off[1]]
    return int(np.count_nonzero(a & b))


def _intersect(a: Window, b: Window) -> Window:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def _touching_pairs(boxes: np.ndarray, tile_of: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (i < j) from different tiles whose boxes (r0 c0 r1 c1) intersect: a sweep along rows."""
    order = np.argsort(boxes[:, 0], kind="stable")
    r0_sorted = boxes[order, 0]
    stops = np.searchsorted(r0_sorted, boxes[order, 2], side="left")
    pairs = []
    for a, i in enumerate(order):
        js = order[a + 1 : stops[a]]
        if not len(js):
            continue
        js = js[(boxes[js, 1] < boxes[i, 3]) & (boxes[js, 3] > boxes[i, 1]) & (tile_of[js] != tile_of[i])]
        pairs.extend((min(i, j), max(i, j)) for j in js.tolist())
    return pairs


def merge_across_tiles(
    parts: list[Instances], merge_overlap: float = 0.5, windows: list[Window] | None = None
) -> Instances:
    """Step 2 of the rule: union instances of different tiles (`parts[t]` from tile t, image coordinates).

    `windows[t]` is the region tile t saw (output coordinates); overlap is judged inside the shared
    window of each pair. Without windows the whole masks are compared.
    """
    if windows is not None and len(windows) != len(parts):
        raise ValueError(f"{len(windows)} windows for {len(parts)} parts")
    everywhere: Window = (-(2**62), -(2**62), 2**62, 2**62)
    offsets, masks, scores, tile_of = [], [], [], []
    for t, part in enumerate(parts):
        for off, m, s in zip(part.offsets, part.masks, part.scores):
            offsets.append(np.asarray(off, np.int64)), masks.append(m), scores.append(float(s)), tile_of.append(t)
    n = len(masks)
    if n == 0:
        return Instances()
    off_arr = np.array(offsets, np.int64).reshape(-1, 2)
    sizes = np.array([m.shape for m in masks], np.int64).reshape(-1, 2)
    boxes = np.concatenate([off_arr, off_arr + sizes], axis=1)
    tile_arr = np.array(tile_of)

    candidates = []
    for i, j in _touching_pairs(boxes, tile_arr):
        shared = everywhere if windows is None else _intersect(windows[tile_of[i]], windows[tile_of[j]])
        inter = _overlap_in(offsets[i], masks[i], offsets[j], masks[j], shared)
        if inter == 0:
            continue
        smaller = min(_count_in(offsets[i], masks[i], shared), _count_in(offsets[j], masks[j], shared))
        if inter >= merge_overlap * smaller:
            candidates.append((-inter / smaller, i, j))
    candidates.sort()  # best-agreeing pairs first; deterministic

    parent = list(range(n))
    tiles_in = [1 << t for t in tile_of]  # bit set of the tiles each group holds

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for _, i, j in candidates:
        ri, rj = root(i), root(j)
        if ri == rj or tiles_in[ri] & tiles_in[rj]:
            continue
        ri, rj = min(ri, rj), max(ri, rj)
        parent[rj] = ri
        tiles_in[ri] |= tiles_in[rj]

    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    out_offsets, out_masks, out_scores = [], [], []
    for members in groups.values():  # ordered by first member: parts order, then order within a part
        if len(members) == 1:
            i = members[0]
            out_offsets.append(off_arr[i]), out_masks.append(masks[i]), out_scores.append(scores[i])
            continue
        lo, hi = boxes[members, :2].min(0), boxes[members, 2:].max(0)
        union = np.zeros(tuple(hi - lo), bool)
        for i in members:
            r, c = off_arr[i] - lo
            union[r : r + sizes[i, 0], c : c + sizes[i, 1]] |= masks[i]
        out_offsets.append(lo), out_masks.append(union), out_scores.append(max(scores[i] for i in members))
    return Instances(np.array(out_offsets, np.int64).reshape(-1, 2), out_masks, np.array(out_scores, np.float32))
