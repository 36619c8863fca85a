"""The seam test, as empanada does it: synthetic instances are cut into tiles, each tile's
instances are found, kept by the ownership rule, translated back and stitched: every object
must come back once, whole (F1 = 1), whatever the tile size and overlap.

Instances sit exactly on core borders (the seams), on core corners, on tile edges, and some are
larger than the overlap (they can only be recovered by merging pieces). Two paths:
- exact: each tile's pieces are its exact masks (tile-local `Instances`), so stitching must
  return every object with IoU 1;
- model-like: a test double backend reads instance ids from the tile's pixels and answers like a
  perfect Mask R-CNN (tight boxes, 28x28 mask probabilities from `roi_align`), so the full
  `segment_scaled` path (tile, infer, paste at scale, stitch) must give F1 = 1 at IoU 0.5.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.draw import ellipse
from torchvision.ops import roi_align

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ellipse_labels  # noqa: E402

from mitotally.runtime.instances import Detections, Instances
from mitotally.runtime.scale import rescale_labels
from mitotally.runtime.segment import CENTRE_MARGIN, EDGE_TOLERANCE, segment_scaled
from mitotally.runtime.stitch import keep_in_tile, merge_across_tiles, owned_by_core
from mitotally.runtime.tiling import TileGrid

# (image shape, tile, overlap): several sizes, overlaps, aspect ratios, a grid of one tile
CASES = [
    ((300, 410), 64, 16),
    ((300, 410), 96, 32),
    ((333, 287), 128, 48),
    ((257, 500), 100, 30),
    ((200, 260), 128, 60),
    ((90, 120), 128, 32),
]


def seam_labels(grid: TileGrid, rng: np.random.Generator) -> np.ndarray:
    """Non-overlapping ellipses on seams, core corners, tile edges, some longer than the overlap, and random ones."""
    shape, overlap = grid.shape, grid.overlap
    row_seams = sorted({t.core[0] for t in grid.tiles if t.core[0] > 0})
    col_seams = sorted({t.core[1] for t in grid.tiles if t.core[1] > 0})
    row_edges = sorted({e for t in grid.tiles for e in (t.row, t.row + grid.tile) if 0 < e < shape[0]})
    col_edges = sorted({e for t in grid.tiles for e in (t.col, t.col + grid.tile) if 0 < e < shape[1]})
    small = max(3, overlap // 2 - 2)  # seen whole by the owning tile
    centres: list[tuple[float, float, float, float, float]] = []  # (row, col, semi-axis a, semi-axis b, rotation)
    # larger than the overlap: only merging pieces across tiles can recover them
    long_axis = min(2.5 * overlap, 0.45 * min(shape))  # placed first so they exist
    for s in row_seams[:2]:
        centres.append((s + rng.uniform(-3, 3), rng.uniform(0.3, 0.7) * shape[1], long_axis, small, rng.uniform(-0.3, 0.3)))
    for s in col_seams[:2]:
        centres.append((rng.uniform(0.3, 0.7) * shape[0], s + rng.uniform(-3, 3), long_axis, small, np.pi / 2 + rng.uniform(-0.3, 0.3)))
    for rs in row_seams[:1]:
        for cs in col_seams[:1]:
            centres.append((rs, cs, long_axis, long_axis * 0.6, rng.uniform(0, np.pi)))
    # A box centre exactly on a seam: pixels symmetric about row s - 0.5 give the box [s-k, s+k), centre s.
    for s in row_seams:
        for c in rng.uniform(0, shape[1], 3):
            centres.append((s - 0.5, float(c), small, small * rng.uniform(0.5, 1), 0.0))
    for s in col_seams:
        for r in rng.uniform(0, shape[0], 3):
            centres.append((float(r), s - 0.5, small * rng.uniform(0.5, 1), small, 0.0))
    for rs in row_seams:
        for cs in col_seams:
            centres.append((rs - 0.5, cs - 0.5, small, small, 0.0))
    for e in row_edges:
        centres.append((e + rng.uniform(-small, small), rng.uniform(0, shape[1]), small, small, rng.uniform(0, np.pi)))
    for e in col_edges:
        centres.append((rng.uniform(0, shape[0]), e + rng.uniform(-small, small), small, small, rng.uniform(0, np.pi)))
    for _ in range(40):
        centres.append((rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(3, small + 1), rng.uniform(3, small + 1), rng.uniform(0, np.pi)))

    labels = np.zeros(shape, np.int32)
    for r, c, a, b, rot in centres:
        rr, cc = ellipse(r, c, a, b, shape=shape, rotation=rot)
        if len(rr) < 5 or labels[rr, cc].any():
            continue
        labels[rr, cc] = labels.max() + 1
    return labels


def boxes_xyxy(inst: Instances) -> np.ndarray:
    return inst.boxes[:, [1, 0, 3, 2]].astype(np.float32)


def stitch_exact(
    labels: np.ndarray, grid: TileGrid, margin: float = 0.0, tolerance: float = 1.0, jitter: np.random.Generator | None = None
) -> Instances:
    """Each tile's exact instances (crop of the label image), kept by the rule, translated, merged.

    `jitter` moves each box edge by up to 1.5 px before the keep decision, as two tiles' box
    regressions disagree about the same object; the masks stay exact.
    """
    parts, windows = [], []
    for tile in grid.tiles:
        inst = Instances.from_label_image(grid.crop(labels, tile, fill=0))
        boxes = boxes_xyxy(inst)
        if jitter is not None:
            boxes = boxes + jitter.uniform(-1.5, 1.5, boxes.shape).astype(np.float32)
        keep = keep_in_tile(boxes, tile, grid, margin, tolerance)
        parts.append(inst[keep].translated(tile.row, tile.col))
        windows.append(grid.window(tile))
    return merge_across_tiles(parts, windows=windows)


def instance_ious(gt: np.ndarray, inst: Instances) -> tuple[np.ndarray, np.ndarray]:
    """For each instance: the GT id it overlaps most and their IoU (computed on crops, so duplicates count)."""
    gt_area = np.bincount(gt.ravel())
    best_id, best_iou = np.zeros(len(inst), int), np.zeros(len(inst))
    for k, ((r, c), m) in enumerate(zip(inst.offsets, inst.masks)):
        sub = gt[r : r + m.shape[0], c : c + m.shape[1]]
        ids, counts = np.unique(sub[m[: sub.shape[0], : sub.shape[1]]], return_counts=True)
        counts, ids = counts[ids > 0], ids[ids > 0]
        if len(ids):
            j = int(np.argmax(counts))
            best_id[k] = ids[j]
            best_iou[k] = counts[j] / (gt_area[ids[j]] + m.sum() - counts[j])
    return best_id, best_iou


def f1_at(gt: np.ndarray, inst: Instances, thr: float) -> tuple[float, np.ndarray, np.ndarray]:
    best_id, best_iou = instance_ious(gt, inst)
    matched = best_iou > thr
    tp = len(set(best_id[matched].tolist()))  # one GT matched twice counts once: the other is a false positive
    fp = len(inst) - tp
    fn = int(gt.max()) - tp
    return 2 * tp / (2 * tp + fp + fn), best_id, best_iou


@pytest.mark.parametrize("shape,tile,overlap", CASES)
@pytest.mark.parametrize("margin", [0.0, 4.0])
def test_exact_round_trip(shape, tile, overlap, margin, rng):
    grid = TileGrid(shape, tile, overlap)
    labels = seam_labels(grid, rng)
    n = int(labels.max())
    assert n > 12
    if len(grid.tiles) > 1:  # the case means something only if some objects are longer than the overlap
        extents = Instances.from_label_image(labels).boxes
        assert (np.maximum(extents[:, 2] - extents[:, 0], extents[:, 3] - extents[:, 1]) > overlap).any()
    out = stitch_exact(labels, grid, margin)
    f1, best_id, best_iou = f1_at(labels, out, 0.5)
    assert len(out) == n, f"{len(out)} instances for {n} objects (duplicated, split or dropped)"
    assert sorted(best_id.tolist()) == list(range(1, n + 1))
    assert f1 == 1.0
    assert best_iou.min() == 1.0  # exact pieces must stitch back exactly


@pytest.mark.parametrize("shape,tile,overlap", CASES[:4])
def test_box_jitter_between_tiles_drops_nothing(shape, tile, overlap, rng):
    """With the slack `segment_scaled` uses, boxes that differ by a pixel or two between tiles still
    stitch every object back exactly once; without it, objects on seams can be lost."""
    grid = TileGrid(shape, tile, overlap)
    labels = seam_labels(grid, rng)
    n = int(labels.max())
    out = stitch_exact(labels, grid, overlap * CENTRE_MARGIN, EDGE_TOLERANCE, jitter=np.random.default_rng(7))
    f1, best_id, best_iou = f1_at(labels, out, 0.5)
    assert len(out) == n and f1 == 1.0 and best_iou.min() == 1.0
    strict = [stitch_exact(labels, grid, 0.0, 0.0, jitter=np.random.default_rng(seed)) for seed in range(3)]
    assert any(f1_at(labels, o, 0.5)[0] < 1.0 for o in strict)  # the slack is what makes this pass


def test_objects_larger_than_overlap_are_merged(rng):
    grid = TileGrid((200, 300), 96, 16)
    labels = np.zeros(grid.shape, np.int32)
    rr, cc = ellipse(100, 150, 90, 20, shape=grid.shape, rotation=np.pi / 2 - 0.2)  # crosses several tiles
    labels[rr, cc] = 1
    rr, cc = ellipse(50, 60, 40, 45, shape=grid.shape)
    labels[rr, cc] = 2
    pieces = sum(len(Instances.from_label_image(grid.crop(labels, t, 0))) for t in grid.tiles)
    assert pieces > 6  # the test means something only if the objects are cut into many pieces
    out = stitch_exact(labels, grid)
    assert len(out) == 2
    assert np.array_equal(out.to_label_image(grid.shape) > 0, labels > 0)


def test_touching_objects_stay_apart():
    grid = TileGrid((120, 120), 64, 16)
    labels = np.zeros(grid.shape, np.int32)
    labels[20:100, 40:60] = 1  # two bars that touch along a column, both cut by the seams
    labels[20:100, 60:80] = 2
    out = stitch_exact(labels, grid)
    assert len(out) == 2
    assert np.array_equal(out.to_label_image(grid.shape), labels)


def test_owned_by_core_boundaries():
    core = (10, 20, 30, 40)
    # box centres (row, col): (10, 20) top-left corner: owned; (22, 40) right border and (30, 20) bottom
    # border: not owned (cores are end-exclusive); (29.5, 39.5) just inside; (52, 52) far outside
    boxes = np.array([[18, 8, 22, 12], [38, 20, 42, 24], [18, 28, 22, 32], [37, 27, 42, 32], [50, 50, 54, 54]], np.float32)
    assert owned_by_core(boxes, (0, 0), core).tolist() == [True, False, False, True, False]
    assert owned_by_core(boxes, (0, 0), core, margin=2.0).tolist() == [True, True, True, True, False]
    shifted = boxes - np.array([5, 5, 5, 5], np.float32)
    assert owned_by_core(shifted, (5, 5), core).tolist() == [True, False, False, True, False]


def test_keep_in_tile_keeps_cut_pieces_meeting_the_core():
    grid = TileGrid((200, 200), 128, 32)
    left = next(t for t in grid.tiles if t.row == 0 and t.col == 0)
    # a piece cut by the tile's right edge (an interior edge) whose centre is outside the core, reaching into it
    assert left.core[3] == 100  # the seam between the two columns of tiles
    cut = np.array([[90, 10, 128, 20]], np.float32)
    assert not owned_by_core(cut, (left.row, left.col), left.core)[0]
    assert keep_in_tile(cut, left, grid)[0]
    # the same box on the image border side is not cut: the left edge of the image is not a seam
    whole = np.array([[0, 10, 4, 20]], np.float32)
    assert keep_in_tile(whole, left, grid)[0]  # its centre is in the core
    far = np.array([[118, 10, 128, 20]], np.float32)  # cut, but entirely outside the core: another tile owns it
    assert not keep_in_tile(far, left, grid)[0]


def test_merge_ignores_instances_from_the_same_tile():
    a = Instances(np.array([[0, 0]]), [np.ones((10, 10), bool)], np.array([0.9]))
    b = Instances(np.array([[2, 2]]), [np.ones((10, 10), bool)], np.array([0.8]))
    assert len(merge_across_tiles([Instances.concat([a, b])])) == 2
    merged = merge_across_tiles([a, b])
    assert len(merged) == 1 and merged.scores[0] == pytest.approx(0.9) and merged.areas[0] == 100 + 100 - 64


def test_merge_needs_enough_overlap_in_the_shared_window():
    # two tiles side by side sharing columns 50..60; a and b agree inside the shared window -> merged
    windows = [(0, 0, 100, 60), (0, 50, 100, 110)]
    a = Instances(np.array([[10, 20]]), [np.ones((20, 40), bool)], np.array([0.9]))  # cols 20..60
    b = Instances(np.array([[10, 50]]), [np.ones((20, 50), bool)], np.array([0.9]))  # cols 50..100
    assert len(merge_across_tiles([a, b], windows=windows)) == 1
    assert len(merge_across_tiles([a, b])) == 2  # without windows: 200 px shared of 800 px, below half
    # c only grazes b inside the shared window: a different object
    c = Instances(np.array([[29, 50]]), [np.ones((20, 10), bool)], np.array([0.9]))
    assert len(merge_across_tiles([c, b], windows=windows)) == 2


def test_full_frame_round_trip(rng):
    """A 4864x3704 frame cut into 512 px tiles, 1000 instances: stitched back exactly (about a second)."""
    grid = TileGrid((3704, 4864), 512, 128)
    labels = ellipse_labels(grid.shape, 1000, rng, axes=(8, 60))
    out = stitch_exact(labels, grid, margin=8.0)
    f1, best_id, best_iou = f1_at(labels, out, 0.5)
    assert labels.max() == 1000
    assert len(out) == 1000 and f1 == 1.0 and best_iou.min() == 1.0


class LabelReadingBackend:
    """Test double standing in for a perfect Mask R-CNN: the tiles hold instance ids, not an image.

    For each id visible in a tile it returns the tight box and the 28x28 mask target Mask R-CNN is
    trained on (`roi_align` of the mask on the box), so only tiling, pasting and stitching are tested.
    """

    name = "label-reading test double"

    def __init__(self, tile: int, batch: int, resolution: int = 28):
        self.tile, self.batch, self.resolution = tile, batch, resolution

    def infer(self, tiles: np.ndarray, box_filters=None) -> list[Detections]:
        assert tiles.ndim == 3 and tiles.shape[1:] == (self.tile, self.tile) and tiles.dtype == np.float32
        out = []
        for t in tiles:
            inst = Instances.from_label_image(np.rint(t).astype(np.int32))
            boxes = boxes_xyxy(inst)
            probs = np.zeros((len(inst), self.resolution, self.resolution), np.float32)
            for k in range(len(inst)):
                full = torch.zeros(1, 1, self.tile, self.tile)
                (r, c), m = inst.offsets[k], inst.masks[k]
                full[0, 0, r : r + m.shape[0], c : c + m.shape[1]] = torch.from_numpy(m.astype(np.float32))
                roi = torch.tensor([[0, *boxes[k]]], dtype=torch.float32)
                probs[k] = roi_align(full, roi, (self.resolution, self.resolution), 1.0, aligned=False)[0, 0].numpy()
            out.append(Detections(boxes, np.full(len(inst), 0.9, np.float32), probs))
        return out


@pytest.mark.parametrize("shape,tile,overlap", [((300, 410), 96, 32), ((333, 287), 128, 48), ((90, 120), 128, 32)])
@pytest.mark.parametrize("factor", [1, 2])
def test_segment_scaled_with_perfect_detector(shape, tile, overlap, factor, rng):
    """Full path through `segment_scaled`: at the model's scale, then pasted at `factor` x resolution."""
    grid = TileGrid(shape, tile, overlap)
    labels = seam_labels(grid, rng)
    backend = LabelReadingBackend(tile, batch=3)
    full = labels if factor == 1 else rescale_labels(labels, factor)
    out = segment_scaled(backend, labels.astype(np.float32), full.shape, factor, overlap, fill=0.0)
    f1, best_id, best_iou = f1_at(full, out, 0.5)
    assert len(out) == full.max(), f"{len(out)} instances for {full.max()} objects"
    assert f1 == 1.0
    assert np.median(best_iou) > 0.85
