"""Instances: label-image round trip, the overlap rule, indexing, boxes, translation, concat."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ellipse_labels  # noqa: E402

from mitotally.runtime.instances import Instances, paint_reading_order


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
    inst = Instances(np.array([[-3, -4], [18, 18], [30, 30]]), [np.ones((6, 8), bool)] * 3, np.ones(3))
    labels = inst.to_label_image((20, 20))
    assert (labels == 1).sum() == 3 * 4 and (labels[0:3, 0:4] == 1).all()
    assert (labels == 2).sum() == 2 * 2
    assert not (labels == 3).any()


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


def test_paint_higher_score_wins_ids_in_reading_order():
    a = np.ones((10, 10), bool)
    inst = Instances(np.array([[20, 0], [0, 5], [3, 8], [21, 1]]), [a, a, a, np.ones((2, 2), bool)], np.array([0.9, 0.6, 0.8, 0.5]))
    labels, visible, scores = paint_reading_order(inst, (40, 40))
    # reading order of top-left corners: (0,5) -> 1, (3,8) -> 2, (20,0) -> 3; (21,1) lies under (20,0) with a lower score
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]
    assert labels[5, 9] == 2 and labels[1, 6] == 1 and labels[21, 1] == 3
    assert np.allclose(scores, [0.6, 0.8, 0.9]) and len(visible) == 3
    for k, ((r, c), m) in enumerate(zip(visible.offsets, visible.masks)):
        assert np.array_equal(labels[r : r + m.shape[0], c : c + m.shape[1]] == k + 1, m)
        assert (labels == k + 1).sum() == m.sum()
