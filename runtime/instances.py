"""The result types that flow between stages.

`Detections` is what a backend returns for one tile, at the model's scale:
boxes, scores and the mask head's 28x28 probabilities (tiny, backend-agnostic).
`Instances` is a set of mitochondria as bool mask crops in image coordinates;
it can be indexed like detectron2's `Instances` (`inst[inst.scores > 0.5]`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float32, x0 y0 x1 y1 in tile pixels at model scale
    scores: np.ndarray  # (N,) float32
    mask_probs: np.ndarray  # (N, M, M) float32 mask-head probabilities

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class Instances:
    """Instance masks stored as crops: `masks[i]` covers rows `offsets[i,0]:+h`, cols `offsets[i,1]:+w`."""

    offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    masks: list[np.ndarray] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        self.offsets = np.asarray(self.offsets, dtype=np.int64).reshape(-1, 2)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not (len(self.offsets) == len(self.masks) == len(self.scores)):
            raise ValueError("offsets, masks and scores must have the same length")

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index) -> "Instances":
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Instances(self.offsets[idx], [self.masks[i] for i in idx], self.scores[idx])

    @property
    def areas(self) -> np.ndarray:
        return np.array([int(m.sum()) for m in self.masks], dtype=np.int64)

    @property
    def boxes(self) -> np.ndarray:
        """Tight integer boxes (row0, col0, row1, col1), end-exclusive."""
        out = np.zeros((len(self), 4), np.int64)
        for i, (off, m) in enumerate(zip(self.offsets, self.masks)):
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            if len(rows):
                out[i] = off[0] + rows[0], off[1] + cols[0], off[0] + rows[-1] + 1, off[1] + cols[-1] + 1
        return out

    def translated(self, drow: int, dcol: int) -> "Instances":
        return Instances(self.offsets + np.array([drow, dcol]), list(self.masks), self.scores.copy())

    @staticmethod
    def concat(parts: list["Instances"]) -> "Instances":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Instances()
        return Instances(
            np.concatenate([p.offsets for p in parts]),
            [m for p in parts for m in p.masks],
            np.concatenate([p.scores for p in parts]),
        )

    def to_label_image(self, shape: tuple[int, int], dtype=None) -> np.ndarray:
        """Paint instances 1..N; where masks overlap the higher score wins (deterministic)."""
        if dtype is None:
            dtype = np.uint16 if len(self) < 65535 else np.uint32
        labels = np.zeros(shape, dtype=dtype)
        best = np.full(shape, -1.0, dtype=np.float32)
        for i in np.argsort(-self.scores, kind="stable")[::-1]:
            (r, c), m = self.offsets[i], self.masks[i]
            r0, c0 = max(r, 0), max(c, 0)
            r1, c1 = min(r + m.shape[0], shape[0]), min(c + m.shape[1], shape[1])
            if r1 <= r0 or c1 <= c0:
                continue
            sub = m[r0 - r : r1 - r, c0 - c : c1 - c]
            region = best[r0:r1, c0:c1]
            take = sub & (self.scores[i] >= region)
            labels[r0:r1, c0:c1][take] = i + 1
            region[take] = self.scores[i]
        return labels

    @staticmethod
    def from_label_image(labels: np.ndarray, scores: np.ndarray | None = None) -> "Instances":
        """Instances from a label image (0 = background); ids are kept in ascending order."""
        from scipy import ndimage

        ids = np.unique(labels)
        ids = ids[ids != 0]
        slices = ndimage.find_objects(labels) if len(ids) else []
        offsets, masks = [], []
        for lab in ids:
            sl = slices[lab - 1]
            offsets.append((sl[0].start, sl[1].start))
            masks.append(labels[sl] == lab)
        if scores is None:
            scores = np.ones(len(ids), np.float32)
        return Instances(np.array(offsets, np.int64).reshape(-1, 2), masks, scores)


def paint_reading_order(instances: Instances, shape: tuple[int, int]) -> tuple[np.ndarray, Instances, np.ndarray]:
    """Label image with ids 1..N in reading order (top-left first), the visible part of each id, and its scores.

    Masks are painted from the lowest score up, so where they overlap the higher score wins
    (as `Instances.to_label_image`, without its full-size float buffer); an instance left with
    no visible pixel gets no id.
    """
    from scipy import ndimage

    n = len(instances)
    order = np.lexsort((instances.offsets[:, 1], instances.offsets[:, 0])) if n else np.zeros(0, np.int64)
    dtype = np.uint16 if n < 65535 else np.uint32
    labels = np.zeros(shape, dtype)
    for i in np.argsort(instances.scores[order], kind="stable"):  # id i + 1: the i-th in reading order
        (r, c), m = instances.offsets[order[i]], instances.masks[order[i]]
        r0, c0, r1, c1 = max(r, 0), max(c, 0), min(r + m.shape[0], shape[0]), min(c + m.shape[1], shape[1])
        if r1 > r0 and c1 > c0:
            labels[r0:r1, c0:c1][m[r0 - r : r1 - r, c0 - c : c1 - c]] = i + 1
    slices = ndimage.find_objects(labels, max_label=n) if n else []  # one linear pass, no sort
    present = np.array([i + 1 for i, sl in enumerate(slices) if sl is not None], np.int64)
    if len(present) != n:  # hidden instances: close the gaps so ids run 1..N
        remap = np.zeros(n + 1, dtype)
        remap[present] = np.arange(1, len(present) + 1, dtype=dtype)
        labels = remap[labels]
    offsets = [(slices[i - 1][0].start, slices[i - 1][1].start) for i in present]
    masks = [labels[slices[i - 1]] == k + 1 for k, i in enumerate(present)]
    scores = instances.scores[order][present - 1] if len(present) else np.zeros(0, np.float32)
    return labels, Instances(np.array(offsets, np.int64).reshape(-1, 2), masks, scores), scores
