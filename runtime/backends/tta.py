"""Test-time augmentation: every tile also seen flipped, the views' detections fused into one set.

A backend wrapper, so the data flow stays read -> scale -> tile -> infer -> stitch: `FlipTTA.infer`
runs the wrapped backend on each tile and on its flips, maps the flipped detections back, and fuses
the views per tile (`fuse_views`). Stitching and painting then see one detection set per tile, as
without TTA. Fusing: detections of different views whose boxes overlap by `iou` form a cluster (at
most one per view); its score is the *mean over all views* (a view that missed it counts 0: an object
found in one view of four scores a quarter), its box the score-weighted mean, its mask probabilities
the score-weighted mean of the members' probabilities resampled onto that box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.ndimage import map_coordinates
from torchvision.ops import box_iou, nms

from ..instances import Detections
from . import Backend, BoxFilter

# flips of a (row, col) tile: (flip rows, flip cols)
VIEWS = {"none": (False, False), "h": (False, True), "v": (True, False), "hv": (True, True)}
FLIPS = ("none", "h", "v", "hv")


def flip_tiles(tiles: np.ndarray, view: str) -> np.ndarray:
    """(N, T, T) tiles as `view` sees them (a flip is its own inverse)."""
    rows, cols = VIEWS[view]
    out = tiles[:, ::-1] if rows else tiles
    out = out[:, :, ::-1] if cols else out
    return np.ascontiguousarray(out)


def unflip(det: Detections, view: str, tile: int) -> Detections:
    """Detections made on a `view`-flipped tile, in the unflipped tile's coordinates."""
    rows, cols = VIEWS[view]
    boxes, probs = det.boxes.copy(), det.mask_probs
    if cols:
        boxes[:, [0, 2]] = tile - det.boxes[:, [2, 0]]
        probs = probs[:, :, ::-1]
    if rows:
        boxes[:, [1, 3]] = tile - det.boxes[:, [3, 1]]
        probs = probs[:, ::-1, :]
    return Detections(boxes, det.scores.copy(), np.ascontiguousarray(probs))


def resample_mask(probs: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """An (M, M) mask over box `src` (x0 y0 x1 y1), sampled at the M x M cell centres of box `dst`; 0 outside `src`."""
    m = probs.shape[0]
    centres = (np.arange(m) + 0.5) / m
    xs, ys = dst[0] + centres * (dst[2] - dst[0]), dst[1] + centres * (dst[3] - dst[1])
    u = (xs - src[0]) / max(src[2] - src[0], 1e-6) * m - 0.5  # fractional cell index in src
    v = (ys - src[1]) / max(src[3] - src[1], 1e-6) * m - 0.5
    vv, uu = np.meshgrid(v, u, indexing="ij")
    out = map_coordinates(probs, [vv, uu], order=1, mode="nearest")
    out[(vv < -0.5) | (vv > m - 0.5) | (uu < -0.5) | (uu > m - 0.5)] = 0.0
    return out.astype(np.float32)


def fuse_views(views: list[Detections], iou: float = 0.55, nms_iou: float = 0.5) -> Detections:
    """One detection set from the same tile's views (all in the tile's own coordinates); see the module doc."""
    n_views = len(views)
    m = next((v.mask_probs.shape[1] for v in views if len(v)), 28)
    if not any(len(v) for v in views):
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, m, m), np.float32))
    boxes = np.concatenate([v.boxes for v in views]).astype(np.float32)
    scores = np.concatenate([v.scores for v in views]).astype(np.float32)
    probs = np.concatenate([v.mask_probs for v in views]).astype(np.float32)
    view_of = np.concatenate([np.full(len(v), k) for k, v in enumerate(views)])
    overlap = box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes)).numpy()
    taken = np.zeros(len(scores), bool)
    out_boxes, out_scores, out_probs = [], [], []
    for i in np.argsort(-scores, kind="stable"):
        if taken[i]:
            continue
        members = [i]
        for k in range(n_views):
            if k == view_of[i]:
                continue
            cand = np.flatnonzero(~taken & (view_of == k) & (overlap[i] >= iou))
            if len(cand):
                members.append(cand[np.argmax(scores[cand])])
        taken[members] = True
        w = scores[members]
        box = (boxes[members] * w[:, None]).sum(0) / w.sum()
        mask = sum(wj * resample_mask(probs[j], boxes[j], box) for j, wj in zip(members, w)) / w.sum()
        out_boxes.append(box)
        out_scores.append(w.sum() / n_views)
        out_probs.append(mask)
    b, s = torch.from_numpy(np.stack(out_boxes)), torch.from_numpy(np.array(out_scores, np.float32))
    keep = nms(b, s, nms_iou).numpy()  # clusters left over from a view's second-best match
    return Detections(np.stack(out_boxes)[keep], np.array(out_scores, np.float32)[keep], np.stack(out_probs)[keep])


@dataclass
class FlipTTA:
    """A `Backend` that runs `inner` on every tile in each of `views` and fuses them (`fuse_views`).

    `inner` should report detections well below the final score threshold (a fused score is a mean over
    views, so a member left out counts 0): `Segmenter` gives it `member_threshold`."""

    inner: Backend
    views: tuple[str, ...] = FLIPS
    iou: float = 0.55

    def __post_init__(self) -> None:
        unknown = set(self.views) - set(VIEWS)
        if unknown or not self.views:
            raise ValueError(f"TTA views must be some of {', '.join(VIEWS)}, got {self.views}")
        self.name, self.tile, self.batch = self.inner.name, self.inner.tile, self.inner.batch
        self.precision = self.inner.precision
        self.tiles_per_call = getattr(self.inner, "tiles_per_call", self.inner.batch)
        if hasattr(self.inner, "device"):
            self.device = self.inner.device

    def infer(self, tiles: np.ndarray, box_filters: Sequence[BoxFilter] | None = None) -> list[Detections]:
        # `box_filters` are not passed on: a view's box is not the fused box, so filtering views would not be exact
        per_view = [[unflip(d, v, self.tile) for d in self.inner.infer(flip_tiles(tiles, v))] for v in self.views]
        return [fuse_views([dets[i] for dets in per_view], self.iou) for i in range(len(tiles))]
