"""Pasting mask-head probabilities onto the output grid: area and location at factor 1 and 2."""
from __future__ import annotations

import numpy as np
import pytest

from mitotally.runtime.instances import Detections
from mitotally.runtime.paste import paste_detections


def _detections(boxes, probs, scores=None) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if scores is None:
        scores = np.linspace(0.9, 0.6, len(boxes))
    return Detections(boxes, np.asarray(scores, np.float32), np.asarray(probs, np.float32))


def _disk_probs(m: int = 28) -> np.ndarray:
    yy, xx = np.mgrid[:m, :m] + 0.5
    return (np.hypot(yy - m / 2, xx - m / 2) <= m / 2).astype(np.float32)


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_full_box_pastes_onto_the_box(factor):
    det = _detections([[10, 20, 30, 60]], np.ones((1, 28, 28)))  # x0 y0 x1 y1
    inst = paste_detections(det, (0, 0), factor, (200, 200))
    assert len(inst) == 1
    labels = inst.to_label_image((200, 200))
    rows, cols = np.nonzero(labels)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (20 * factor, 60 * factor, 10 * factor, 30 * factor)
    # bilinear upsampling rounds the corners of a hard-edged map once a mask cell spans > 2 px:
    # at factor 3 the four corner pixels fall below 0.5 (as with torchvision's paste_masks_in_image)
    assert 20 * 40 * factor**2 - inst.areas[0] == (0 if factor < 3 else 4)


@pytest.mark.parametrize("factor", [1, 2])
def test_tile_origin_shifts_the_mask(factor):
    det = _detections([[10, 20, 30, 60]], np.ones((1, 28, 28)))
    inst = paste_detections(det, (100, 50), factor, (500, 500))  # origin is (row, col) in model pixels
    r0, c0, r1, c1 = inst.boxes[0]
    assert (r0, c0, r1, c1) == ((100 + 20) * factor, (50 + 10) * factor, (100 + 60) * factor, (50 + 30) * factor)


@pytest.mark.parametrize("factor", [1, 2, 1.5])
def test_disk_probabilities_give_a_disk(factor):
    det = _detections([[40, 30, 96, 86]], _disk_probs()[None])  # a 56 px box: radius 28 model px
    inst = paste_detections(det, (0, 0), factor, (400, 400))
    radius = 28 * factor
    assert inst.areas[0] == pytest.approx(np.pi * radius**2, rel=0.03)
    r0, c0, r1, c1 = inst.boxes[0]
    assert (r0 + r1) / 2 == pytest.approx((30 + 86) / 2 * factor, abs=0.5)
    assert (c0 + c1) / 2 == pytest.approx((40 + 96) / 2 * factor, abs=0.5)


def test_masks_are_clipped_to_the_output_and_empty_ones_dropped():
    probs = np.stack([np.ones((28, 28)), np.ones((28, 28)), np.full((28, 28), 0.4), np.ones((28, 28))])
    boxes = [[-10, -5, 20, 15], [90, 90, 130, 120], [10, 10, 30, 30], [200, 200, 230, 230]]
    inst = paste_detections(_detections(boxes, probs, [0.9, 0.8, 0.7, 0.6]), (0, 0), 1, (100, 100))
    assert len(inst) == 2  # the 0.4 map is below threshold; the last box is outside the output
    assert inst.scores.tolist() == pytest.approx([0.9, 0.8])
    assert inst.areas.tolist() == [20 * 15, 10 * 10]
    assert inst.boxes.tolist() == [[0, 0, 15, 20], [90, 90, 100, 100]]
    assert all(m.shape[0] + o[0] <= 100 and m.shape[1] + o[1] <= 100 for o, m in zip(inst.offsets, inst.masks))


def test_threshold_and_empty_detections():
    half = np.zeros((28, 28), np.float32)
    half[:, :14] = 0.8
    half[:, 14:] = 0.3
    det = _detections([[0, 0, 28, 28]], half[None])
    assert paste_detections(det, (0, 0), 1, (50, 50), threshold=0.5).areas[0] == 28 * 14
    assert paste_detections(det, (0, 0), 1, (50, 50), threshold=0.2).areas[0] == 28 * 28
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 28, 28), np.float32))
    assert len(paste_detections(empty, (0, 0), 1, (50, 50))) == 0


def test_rows_cols_factor_stretches_each_axis():
    """Non-square input pixels: (rows, cols) output px per model px, e.g. 4 x 8 nm pixels from a 10 nm model."""
    det = _detections([[10, 20, 30, 60]], np.ones((1, 28, 28)))  # x0 y0 x1 y1 in model px
    inst = paste_detections(det, (0, 0), (1.25, 2.5), (200, 200))
    r0, c0, r1, c1 = inst.boxes[0]
    assert (r0, c0, r1, c1) == (25, 25, 75, 75)  # rows x 1.25 (8 nm), cols x 2.5 (4 nm)
