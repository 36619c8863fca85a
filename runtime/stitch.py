"""Stitch per-tile instances into one set per image.

The rule, in two steps:
1. ownership: a detection is kept only by the tile whose core holds its box
   centre (see `tiling`), so an object seen whole by two tiles counts once;
2. merge: kept instances from *different* tiles whose masks overlap by at least
   `merge_overlap` of the smaller one are the same mitochondrion (cut by a seam
   or seen twice with slightly different centres) and are merged by union,
   keeping the higher score.
"""
from __future__ import annotations

import numpy as np

from .instances import Instances


def owned_by_core(boxes: np.ndarray, origin: tuple[int, int], core: tuple[int, int, int, int]) -> np.ndarray:
    """Which tile-local boxes (x0 y0 x1 y1) have their centre inside the tile's core (image coords)."""
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + origin[0]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + origin[1]
    r0, c0, r1, c1 = core
    return (cy >= r0) & (cy < r1) & (cx >= c0) & (cx < c1)


def _overlap(a_off, a_mask, b_off, b_mask) -> int:
    r0, c0 = max(a_off[0], b_off[0]), max(a_off[1], b_off[1])
    r1 = min(a_off[0] + a_mask.shape[0], b_off[0] + b_mask.shape[0])
    c1 = min(a_off[1] + a_mask.shape[1], b_off[1] + b_mask.shape[1])
    if r1 <= r0 or c1 <= c0:
        return 0
    a = a_mask[r0 - a_off[0] : r1 - a_off[0], c0 - a_off[1] : c1 - a_off[1]]
    b = b_mask[r0 - b_off[0] : r1 - b_off[0], c0 - b_off[1] : c1 - b_off[1]]
    return int(np.count_nonzero(a & b))


def _union(a_off, a_mask, b_off, b_mask):
    r0, c0 = min(a_off[0], b_off[0]), min(a_off[1], b_off[1])
    r1 = max(a_off[0] + a_mask.shape[0], b_off[0] + b_mask.shape[0])
    c1 = max(a_off[1] + a_mask.shape[1], b_off[1] + b_mask.shape[1])
    out = np.zeros((r1 - r0, c1 - c0), bool)
    out[a_off[0] - r0 : a_off[0] - r0 + a_mask.shape[0], a_off[1] - c0 : a_off[1] - c0 + a_mask.shape[1]] |= a_mask
    out[b_off[0] - r0 : b_off[0] - r0 + b_mask.shape[0], b_off[1] - c0 : b_off[1] - c0 + b_mask.shape[1]] |= b_mask
    return np.array([r0, c0]), out


def merge_across_tiles(parts: list[Instances], merge_overlap: float = 0.5) -> Instances:
    """Union instances from different tiles that overlap >= `merge_overlap` of the smaller mask."""
    offsets, masks, scores, tile_ids = [], [], [], []
    for t, part in enumerate(parts):
        for off, m, s in zip(part.offsets, part.masks, part.scores):
            offsets.append(np.array(off)), masks.append(m), scores.append(float(s)), tile_ids.append({t})
    areas = [int(m.sum()) for m in masks]
    alive = [True] * len(masks)
    changed = True
    while changed:  # repeat until no pair merges: a merge can create new overlaps
        changed = False
        order = sorted(range(len(masks)), key=lambda i: -scores[i])
        for ii, i in enumerate(order):
            if not alive[i]:
                continue
            for j in order[ii + 1 :]:
                if not alive[j] or tile_ids[i] & tile_ids[j]:
                    continue
                inter = _overlap(offsets[i], masks[i], offsets[j], masks[j])
                if inter and inter >= merge_overlap * min(areas[i], areas[j]):
                    offsets[i], masks[i] = _union(offsets[i], masks[i], offsets[j], masks[j])
                    areas[i] = int(masks[i].sum())
                    tile_ids[i] |= tile_ids[j]
                    alive[j] = False
                    changed = True
    keep = [i for i in range(len(masks)) if alive[i]]
    return Instances(np.array([offsets[i] for i in keep], np.int64).reshape(-1, 2), [masks[i] for i in keep], np.array([scores[i] for i in keep], np.float32))
