"""Instances: label-image round trip, the painting rule, indexing, boxes, translation, concat."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ellipse_labels  # noqa: E402

from mitotally.runtime.instances import MIN_AREA_PX, Instances, paint_instances


def test_label_image_round_trip(rng):
    labels = ellipse_labels((200, 300), 40, rng)
    inst = Instances.from_label_image(labels)
    assert len(inst) == labels.max()
    assert inst.areas.tolist() == np.bincount(labels.ravel())[1:].tolist()
    back = inst.to_label_image(labels.shape)
    assert back.dtype == np.uint16
    assert np.array_equal(back, labels)


def test_round_trip_with_sparse_ids_keeps_their_order():
    labels = np.zeros((40, 40), np.int32)
    labels[2:6, 2:9] = 17
    labels[20:30, 5:8] = 3
    labels[10:12, 30:39] = 250
    inst = Instances.from_label_image(labels, scores=np.array([0.1, 0.2, 0.3]))
    assert inst.areas.tolist() == [30, 28, 18]  # ids 3, 17, 250 in ascending order
    assert inst.scores.tolist() == pytest.approx([0.1, 0.2, 0.3])
    back = inst.to_label_image(labels.shape)
    assert np.array_equal(back == 1, labels == 3) and np.array_equal(back == 2, labels == 17)
    assert np.array_equal(back == 3, labels == 250)
    assert len(Instances.from_label_image(np.zeros((5, 5), np.int32))) == 0


def test_overlap_rule_higher_score_wins_whatever_the_order():
    a = np.ones((10, 10), bool)
    for scores in ([0.9, 0.4], [0.4, 0.9]):
        inst = Instances(np.array([[0, 0], [5, 5]]), [a, a], np.array(scores))
        labels = inst.to_label_image((20, 20))
        winner = 1 + int(np.argmax(scores))
        assert (labels[5:10, 5:10] == winner).all()
        assert (labels[0:5, 0:5] == 1).all() and (labels[10:15, 10:15] == 2).all()
    tie = Instances(np.array([[0, 0], [5, 5]]), [a, a], np.array([0.5, 0.5])).to_label_image((20, 20))
    assert (tie[5:10, 5:10] == 1).all()  # ties: the earlier instance, deterministically


def test_masks_outside_the_image_are_clipped():
    inst = Instances(np.array([[-3, -4], [17, 17], [30, 30], [18, 18]]), [np.ones((6, 8), bool)] * 4, np.array([1.0, 1.0, 1.0, 0.5]))
    labels = inst.to_label_image((20, 20))
    assert (labels == 1).sum() == 3 * 4 and (labels[0:3, 0:4] == 1).all()
    assert (labels == 2).sum() == 3 * 3  # clipping by the frame is not occlusion: the visible fraction is of the part inside
    assert not (labels == 3).any()
    assert not (labels == 4).any()  # its 2x2 px inside the frame lie under instance 2


def test_indexing_boxes_translation_concat():
    m1 = np.zeros((5, 6), bool)
    m1[1:4, 2:5] = True
    m2 = np.ones((2, 2), bool)
    inst = Instances(np.array([[10, 20], [0, 0]]), [m1, m2], np.array([0.8, 0.3]))
    assert inst.boxes.tolist() == [[11, 22, 14, 25], [0, 0, 2, 2]]  # tight, end-exclusive
    kept = inst[inst.scores > 0.5]
    assert len(kept) == 1 and kept.boxes.tolist() == [[11, 22, 14, 25]]
    assert len(inst[np.array([1, 0])]) == 2 and inst[1].scores.tolist() == pytest.approx([0.3])
    assert len(inst[inst.scores > 0.9]) == 0
    moved = inst.translated(5, -20)
    assert moved.boxes.tolist() == [[16, 2, 19, 5], [5, -20, 7, -18]]
    assert inst.offsets.tolist() == [[10, 20], [0, 0]]  # the original is not changed
    both = Instances.concat([inst, Instances(), moved])
    assert len(both) == 4 and both.scores.tolist() == pytest.approx([0.8, 0.3, 0.8, 0.3])
    assert len(Instances.concat([])) == 0


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError):
        Instances(np.zeros((2, 2)), [np.ones((2, 2), bool)], np.ones(2))


def _check_painted(painted):
    """Every id's crop is exactly its pixels in the label image, and ids are 1..N."""
    labels = painted.labels
    assert sorted(np.unique(labels[labels > 0]).tolist()) == painted.ids.tolist()
    for lab, (r, c), m in zip(painted.ids, painted.visible.offsets, painted.visible.masks):
        assert np.array_equal(labels[r : r + m.shape[0], c : c + m.shape[1]] == lab, m)
        assert (labels == lab).sum() == m.sum()


def test_paint_higher_score_wins_ids_in_reading_order():
    a = np.ones((10, 10), bool)
    inst = Instances(np.array([[20, 0], [0, 5], [3, 8], [21, 1]]), [a, a, a, np.ones((2, 2), bool)], np.array([0.9, 0.6, 0.8, 0.5]))
    painted = paint_instances(inst, (40, 40))
    labels = painted.labels
    # reading order of top-left corners: (0,5) -> 1, (3,8) -> 2, (20,0) -> 3; (21,1) lies under (20,0) with a lower score
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]
    assert labels[5, 9] == 2 and labels[1, 6] == 1 and labels[21, 1] == 3
    assert np.allclose(painted.visible.scores, [0.6, 0.8, 0.9]) and painted.source.tolist() == [1, 2, 0]
    _check_painted(painted)


def test_an_instance_mostly_under_a_higher_score_is_dropped():
    a = np.ones((10, 10), bool)
    for shift, kept in ((4, True), (6, False)):  # 60% visible: kept; 40% visible: dropped
        inst = Instances(np.array([[0, 0], [0, 10 - shift]]), [a, a], np.array([0.9, 0.5]))
        painted = paint_instances(inst, (10, 30))
        assert painted.source.tolist() == ([0, 1] if kept else [0])
        assert (painted.labels > 0).sum() == (100 + 10 * (10 - shift) if kept else 100)  # a dropped one leaves background
        _check_painted(painted)


def test_a_split_instance_keeps_its_largest_piece():
    bar = np.ones((4, 30), bool)
    cut = np.ones((12, 3), bool)
    inst = Instances(np.array([[10, 0], [6, 10]]), [bar, cut], np.array([0.5, 0.9]))  # the cut leaves 10 + 17 columns
    painted = paint_instances(inst, (30, 40))
    labels = painted.labels
    assert painted.source.tolist() == [1, 0]  # reading order: the cut's top-left (6, 10) before the piece's (10, 13)
    assert (labels == 2).sum() == 4 * 17 and (labels[10:14, 13:30] == 2).all()
    assert (labels[10:14, 0:10] == 0).all()  # the smaller piece is background, not a second object
    _check_painted(painted)
    diagonal = np.zeros((8, 8), bool)
    diagonal[:4, :4] = diagonal[4:, 4:] = True  # two squares meeting at a corner: one 8-connected piece
    assert (paint_instances(Instances(np.zeros((1, 2)), [diagonal], np.ones(1)), (8, 8)).labels == 1).sum() == 32


def test_tiny_instances_are_dropped():
    tiny, ok = np.ones((1, MIN_AREA_PX - 1), bool), np.ones((1, MIN_AREA_PX), bool)
    painted = paint_instances(Instances(np.array([[0, 0], [5, 0]]), [tiny, ok], np.ones(2)), (10, 10))
    assert painted.source.tolist() == [1] and (painted.labels > 0).sum() == MIN_AREA_PX
    assert len(paint_instances(Instances(), (5, 5)).visible) == 0


def test_kept_pieces_repaint_to_the_same_labels(rng):
    labels = ellipse_labels((120, 160), 12, rng)
    inst = Instances.from_label_image(labels, rng.uniform(0.1, 1.0, labels.max()))
    shifted = Instances.concat([inst, inst.translated(3, 4)[::2]])  # overlaps, cuts and hidden copies
    shifted.scores[len(inst):] = rng.uniform(0.1, 1.0, len(shifted) - len(inst))
    painted = paint_instances(shifted, labels.shape)
    _check_painted(painted)
    assert np.array_equal(painted.visible.to_label_image(labels.shape), painted.labels)
