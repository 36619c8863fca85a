"""Metrics against hand-made cases whose answers are worked out in the comments."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mitotally.runtime.instances import Instances
from mitotally.trainer.metrics import (
    coco_mask_ap, evaluate, foreground_iou, iou_matrix, match_image, match_pairs, median_area_bias, median_area_error, pooled_stats, rle_from_crop,
)


def labels_of(*boxes, shape=(40, 40)):
    """Label image with box k (r0, c0, r1, c1) painted as id k+1."""
    lab = np.zeros(shape, np.int32)
    for k, (r0, c0, r1, c1) in enumerate(boxes, 1):
        lab[r0:r1, c0:c1] = k
    return lab


def scored(labels: np.ndarray, scores) -> Instances:
    inst = Instances.from_label_image(labels)
    return Instances(inst.offsets, inst.masks, np.asarray(scores, np.float32))


GT = labels_of((0, 0, 10, 10), (20, 20, 30, 30))


def test_two_squares_one_shifted():
    # second square shifted 2 px right: intersection 80, union 120 -> IoU 2/3
    pred = labels_of((0, 0, 10, 10), (20, 22, 30, 32))
    m = evaluate([GT], [pred])
    assert (m["tp@0.5"], m["fp@0.5"], m["fn@0.5"]) == (2, 0, 0)
    assert m["precision@0.5"] == m["recall@0.5"] == m["f1@0.5"] == 1.0
    assert m["precision@0.75"] == m["recall@0.75"] == m["f1@0.75"] == 0.5  # TP 1, FP 1, FN 1
    assert m["panoptic_quality@0.5"] == pytest.approx((1 + 2 / 3) / 2)
    # accuracy 1 at IoU 0.5..0.65 (4 thresholds), 1/3 at 0.7..0.95 (6 thresholds)
    assert m["mSA"] == pytest.approx((4 * 1 + 6 / 3) / 10)
    assert m["foreground_iou"] == pytest.approx(180 / 220)
    assert m["median_area_error"] == 0.0 and m["count_error"] == [0]
    # AP: IoU .50-.65 -> 1; .70-.95 -> the perfect match ranks first, recall 0.5 at precision 1: 51 of 101 recall points
    assert m["mask_AP50"] == 1.0
    assert m["mask_AP75"] == pytest.approx(51 / 101)
    assert m["mask_AP"] == pytest.approx((4 + 6 * 51 / 101) / 10)


def test_miss_and_false_positive():
    # one GT found exactly, one missed; two spurious predictions
    pred = labels_of((0, 0, 10, 10), (12, 0, 15, 3), (35, 35, 40, 40))
    m = evaluate([GT], [pred])
    assert (m["tp@0.5"], m["fp@0.5"], m["fn@0.5"]) == (1, 2, 1)
    assert m["precision@0.5"] == pytest.approx(1 / 3)
    assert m["recall@0.5"] == pytest.approx(1 / 2)
    assert m["f1@0.5"] == pytest.approx(2 / (2 + 2 + 1))
    assert m["panoptic_quality@0.5"] == pytest.approx(1 / (1 + 1 + 0.5))
    assert m["mSA"] == pytest.approx(1 / 4)
    assert m["count_error"] == [1] and m["mean_abs_count_error"] == 1.0


def test_iou_exactly_at_threshold_matches_and_stays_one_to_one():
    gt = labels_of((0, 0, 10, 10))
    halves = labels_of((0, 0, 5, 10), (5, 0, 10, 10))  # each half: IoU exactly 0.5 with the GT
    iou, _, _ = iou_matrix(gt, halves)
    assert np.allclose(iou, [[0.5, 0.5]])
    g, p = match_pairs(iou, 0.5)
    assert len(g) == 1, "IoU >= 0.5 matches (StarDist), but only once"
    s = pooled_stats([match_image(gt, halves)], 0.5)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert pooled_stats([match_image(gt, halves)], 0.55).tp == 0


def test_assignment_maximises_matches_below_half():
    # at IoU 0.3 a greedy pairing could take pred 1 for GT 1 and strand GT 2; the assignment finds two matches
    iou = np.array([[0.45, 0.35], [0.40, 0.0]])
    g, p = match_pairs(iou, 0.3)
    assert sorted(zip(g.tolist(), p.tolist())) == [(0, 1), (1, 0)]


def test_pooled_not_averaged_over_images():
    # image A: 1 GT found; image B: 3 GT, none found. Pooled recall 1/4, not the mean of 1 and 0
    a_gt, a_pred = labels_of((0, 0, 10, 10)), labels_of((0, 0, 10, 10))
    b_gt, b_pred = labels_of((0, 0, 5, 5), (10, 10, 15, 15), (20, 20, 25, 25)), np.zeros((40, 40), np.int32)
    m = evaluate([a_gt, b_gt], [a_pred, b_pred])
    assert m["recall@0.5"] == 0.25 and m["precision@0.5"] == 1.0
    assert m["count_error"] == [0, -3]


def test_empty_everything_follows_stardist():
    empty = np.zeros((10, 10), np.int32)
    m = evaluate([empty], [empty])
    assert m["f1@0.5"] == 0.0 and m["precision@0.5"] == 0.0 and m["panoptic_quality@0.5"] == 0.0  # StarDist: 0 when TP = 0
    assert m["foreground_iou"] == 1.0
    assert np.isnan(m["mask_AP"]) and np.isnan(m["median_area_error"])


def test_median_area_error():
    pred = labels_of((0, 0, 10, 11), (20, 20, 30, 32))  # areas 110 and 120 vs 100: errors 0.1 and 0.2
    assert median_area_error([match_image(GT, pred)]) == pytest.approx(0.15)


def test_median_area_bias_keeps_the_sign():
    # areas 80, 90, 110 against 100 each: -0.2, -0.1, +0.1
    gt = labels_of((0, 0, 10, 10), (20, 20, 30, 30), (40, 40, 50, 50), shape=(60, 60))
    pred = labels_of((0, 0, 10, 8), (20, 20, 30, 29), (40, 40, 50, 51), shape=(60, 60))
    matches = [match_image(gt, pred)]
    assert median_area_bias(matches) == pytest.approx(-0.1)
    assert median_area_error(matches) == pytest.approx(0.1)


def test_sparse_large_ids():
    gt = GT.copy()
    gt[gt == 2] = 2**30
    pred = labels_of((0, 0, 10, 10), (20, 20, 30, 30)).astype(np.uint32)
    pred[pred == 2], pred[pred == 1] = 4_000_000_000, 3_000_000_000
    iou, ga, pa = iou_matrix(gt, pred)
    assert np.allclose(iou, np.eye(2)) and ga.tolist() == pa.tolist() == [100, 100]


def test_ap_perfect_and_with_a_high_scoring_false_positive():
    perfect = scored(GT, [0.5, 0.5])
    assert coco_mask_ap([GT], [perfect]) == {"mask_AP": 1.0, "mask_AP50": 1.0, "mask_AP75": 1.0}
    # add a FP scored 0.9: ranks FP, TP, TP -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1;
    # interpolated precision is 2/3 at every recall level, at every IoU threshold
    fp = Instances(np.array([[35, 35]]), [np.ones((4, 4), bool)], np.array([0.9], np.float32))
    ap = coco_mask_ap([GT], [Instances.concat([perfect, fp])])
    assert ap["mask_AP"] == pytest.approx(2 / 3) and ap["mask_AP50"] == pytest.approx(2 / 3)
    # the same FP scored lowest costs nothing
    low = Instances(fp.offsets, fp.masks, np.array([0.1], np.float32))
    assert coco_mask_ap([GT], [Instances.concat([perfect, low])])["mask_AP"] == 1.0


def test_ap_counts_more_than_100_detections_per_image():
    # 150 GT squares found exactly; the lowest 50 scores would be cut at pycocotools' default maxDets=100
    boxes = [(r * 4, c * 4, r * 4 + 3, c * 4 + 3) for r in range(10) for c in range(15)]
    gt = labels_of(*boxes, shape=(40, 60))
    pred = scored(gt, np.linspace(1.0, 0.2, 150))
    assert coco_mask_ap([gt], [pred])["mask_AP"] == 1.0


def test_ap_accepts_full_masks_with_scores():
    masks = [GT == 1, GT == 2]
    assert coco_mask_ap([GT], [(masks, np.array([0.9, 0.8]))])["mask_AP"] == 1.0
    assert coco_mask_ap([GT], [([], np.zeros(0))])["mask_AP"] == 0.0


def test_rle_from_crop_equals_pycocotools(rng):
    for _ in range(200):
        H, W = rng.integers(1, 30, 2)
        h, w = rng.integers(1, 12, 2)
        r, c = rng.integers(-6, 34, 2)
        crop = rng.random((h, w)) > 0.5
        full = np.zeros((H, W), np.uint8)
        r0, c0, r1, c1 = max(r, 0), max(c, 0), min(r + h, H), min(c + w, W)
        if r1 > r0 and c1 > c0:
            full[r0:r1, c0:c1] = crop[r0 - r : r1 - r, c0 - c : c1 - c]
        assert rle_from_crop((r, c), crop, (H, W))["counts"] == mask_utils.encode(np.asfortranarray(full))["counts"].decode()


def test_foreground_iou():
    assert foreground_iou([GT], [labels_of((0, 0, 10, 20))]) == pytest.approx(100 / 300)


def test_recall_by_size_and_border():
    gt = np.zeros((100, 100), np.int32)
    gt[10:20, 10:20] = 1  # 100 px2, interior, found
    gt[30:40, 30:40] = 2  # 100 px2, interior, missed
    gt[5:15, 40:50] = 5  # 100 px2, 5 px from the border: interior, found
    gt[2:32, 60:90] = 3  # 900 px2, 2 px from the top border (within the margin), missed
    gt[50:100, 50:100] = 4  # 2,500 px2, touches bottom and right, found
    pred = np.zeros_like(gt)
    pred[10:20, 10:20] = 1
    pred[50:100, 50:100] = 2
    pred[5:15, 40:50] = 3
    m = evaluate([gt], [pred], with_ap=False, pixel_size_nm=5.0)
    px = m["recall_by_size_px"]
    assert px["<500 px2"] == {"gt": 3, "recall": 2 / 3}
    assert px["500-2000 px2"] == {"gt": 1, "recall": 0.0}
    assert px[">=2000 px2"] == {"gt": 1, "recall": 1.0}
    assert m["recall_border"] == {"gt": 2, "recall": 0.5} and m["recall_interior"] == {"gt": 3, "recall": 2 / 3}
    assert m["recall_by_size_um2"]["<0.0125 um2"]["gt"] == 3  # 100 px2 at 5 nm = 0.0025 um2
    assert "recall_by_size_um2" not in evaluate([gt], [pred], with_ap=False)  # no pixel size, no um2 bins
