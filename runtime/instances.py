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
        """Label image by the one painting rule (`paint_instances`), id i + 1 for instance i (0 if it was dropped)."""
        labels = paint_instances(self, shape, reading_order=False).labels
        return labels if dtype is None else labels.astype(dtype, copy=False)

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


MIN_VISIBLE_FRACTION = 0.5  # of an instance's predicted in-image area that must stay visible after painting
MIN_AREA_PX = 6  # the smallest object kept; mito-train drops label fragments under 6 px (`sampling.labels_to_target`)
_EIGHT = np.ones((3, 3), bool)  # pieces are 8-connected, as the importers split binary masks


@dataclass
class Painted:
    """Instances painted into one label image, and each id's pixels as a tight crop (`labels[crop] == id`)."""

    labels: np.ndarray  # HxW uint16 (uint32 above 65534 ids), 0 = background
    visible: Instances  # the kept piece of each id, with its score
    ids: np.ndarray  # (N,) the label of visible[k]: k + 1 in reading order
    source: np.ndarray  # (N,) index into the painted `Instances` of visible[k]


def paint_instances(instances: Instances, shape: tuple[int, int], reading_order: bool = True,
                    min_visible_fraction: float = MIN_VISIBLE_FRACTION, min_area_px: int = MIN_AREA_PX) -> Painted:
    """The one painting rule, so the label image, ROIs, COCO masks and objects.csv describe the same objects.

    1. Paint by descending score (ties: the earlier instance), each mask only onto pixels still free:
       where masks overlap, the higher score wins.
    2. Of what an instance got, keep its largest 8-connected piece; smaller pieces become background.
       A mitochondrion is one connected body: the pieces come from a higher-scoring mask cutting
       through it (or from the mask threshold), and measuring them as one object would give a
       centroid, perimeter and ellipse of nothing real; giving them to a neighbour would invent pixels
       its own mask did not claim.
    3. Keep the instance only if that piece has at least `min_area_px` pixels and at least
       `min_visible_fraction` of the instance's predicted area inside the image: an instance mostly
       covered by a higher-scoring one is a duplicate of it, not a second mitochondrion. Its
       remaining pixels become background.

    Ids run 1..N in reading order of each kept piece's top-left bounding-box corner (row, then
    column), or in the order of `instances` when `reading_order` is False. Pinned by
    tests/runtime/test_instances.py and, through every writer, tests/runtime/test_outputs_agree.py.
    """
    from scipy import ndimage

    n = len(instances)
    work = np.zeros(shape, np.uint16 if n < 65535 else np.uint32)  # id i + 1 = instance i while painting
    predicted = np.zeros(n, np.int64)
    for i in np.argsort(-instances.scores, kind="stable"):
        (r, c), m = instances.offsets[i], instances.masks[i]
        r0, c0, r1, c1 = max(r, 0), max(c, 0), min(r + m.shape[0], shape[0]), min(c + m.shape[1], shape[1])
        if r1 <= r0 or c1 <= c0:
            continue
        sub = m[r0 - r : r1 - r, c0 - c : c1 - c]
        predicted[i] = np.count_nonzero(sub)
        region = work[r0:r1, c0:c1]
        region[sub & (region == 0)] = i + 1
    kept = []  # (row0, col0, instance index, tight piece mask)
    for i, sl in enumerate(ndimage.find_objects(work, max_label=n) if n else []):
        if sl is None:
            continue
        piece = work[sl] == i + 1
        parts, k = ndimage.label(piece, _EIGHT)
        if k > 1:
            piece = parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))  # ties: the first in scan order
        area = int(np.count_nonzero(piece))
        if area < min_area_px or area < min_visible_fraction * predicted[i]:
            continue
        rows, cols = np.flatnonzero(piece.any(1)), np.flatnonzero(piece.any(0))
        tight = piece[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        kept.append((sl[0].start + int(rows[0]), sl[1].start + int(cols[0]), i, tight))
    del work
    if reading_order:
        kept.sort(key=lambda k: k[:3])
    source = np.array([i for _, _, i, _ in kept], np.int64)
    ids = np.arange(1, len(kept) + 1) if reading_order else source + 1
    labels = np.zeros(shape, np.uint16 if (ids.max() if len(ids) else 0) < 65535 else np.uint32)
    for lab, (r, c, _, m) in zip(ids, kept):
        labels[r : r + m.shape[0], c : c + m.shape[1]][m] = lab
    offsets = np.array([(r, c) for r, c, _, _ in kept], np.int64).reshape(-1, 2)
    visible = Instances(offsets, [m for _, _, _, m in kept], instances.scores[source])
    return Painted(labels, visible, ids, source)
