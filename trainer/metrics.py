"""Instance-segmentation metrics with the field's definitions.

Matching follows StarDist's `matching_dataset`: pairs with IoU above a
threshold (unique for thresholds >= 0.5), pooled over all images.
accuracy = TP/(TP+FP+FN); mSA averages it over IoU 0.5:0.05:0.95;
panoptic quality = sum(matched IoU) / (TP + FP/2 + FN/2).
COCO mask AP comes from pycocotools with maxDets raised to 1000.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU between every GT and predicted instance of two label images; also returns their areas."""
    if gt.shape != pred.shape:
        raise ValueError(f"label images differ in shape: GT {gt.shape} vs prediction {pred.shape}")
    g = np.unique(gt, return_inverse=True)
    p = np.unique(pred, return_inverse=True)
    g_ids, g_inv = g[0], g[1].reshape(-1)
    p_ids, p_inv = p[0], p[1].reshape(-1)
    counts = np.bincount(g_inv * len(p_ids) + p_inv, minlength=len(g_ids) * len(p_ids)).reshape(len(g_ids), len(p_ids))
    g_area, p_area = counts.sum(1), counts.sum(0)
    gi = np.flatnonzero(g_ids != 0)
    pi = np.flatnonzero(p_ids != 0)
    inter = counts[np.ix_(gi, pi)].astype(np.float64)
    union = g_area[gi, None] + p_area[None, pi] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou, g_area[gi], p_area[pi]


@dataclass
class ImageMatch:
    iou: np.ndarray  # (n_gt, n_pred)
    gt_area: np.ndarray
    pred_area: np.ndarray


def match_image(gt: np.ndarray, pred: np.ndarray) -> ImageMatch:
    iou, ga, pa = iou_matrix(gt, pred)
    return ImageMatch(iou, ga, pa)


def _pairs(iou: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Matched (gt, pred) indices with IoU > thr; one-to-one is guaranteed for thr >= 0.5."""
    if iou.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    if thr >= 0.5:
        g, p = np.nonzero(iou > thr)
        return g, p
    from scipy.optimize import linear_sum_assignment

    cost = -(iou * (iou > thr))
    g, p = linear_sum_assignment(cost)
    ok = iou[g, p] > thr
    return g[ok], p[ok]


@dataclass
class MatchStats:
    thr: float
    tp: int
    fp: int
    fn: int
    iou_sum: float

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0

    @property
    def accuracy(self) -> float:
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else 1.0

    @property
    def panoptic_quality(self) -> float:
        d = self.tp + self.fp / 2 + self.fn / 2
        return self.iou_sum / d if d else 1.0


def pooled_stats(matches: list[ImageMatch], thr: float) -> MatchStats:
    tp = fp = fn = 0
    iou_sum = 0.0
    for m in matches:
        g, p = _pairs(m.iou, thr)
        tp += len(g)
        fp += m.iou.shape[1] - len(p)
        fn += m.iou.shape[0] - len(g)
        iou_sum += float(m.iou[g, p].sum())
    return MatchStats(thr, tp, fp, fn, iou_sum)


def median_area_error(matches: list[ImageMatch], thr: float = 0.5) -> float:
    """Median |pred - gt| / gt area over matched pairs (NaN when nothing matched)."""
    errs = []
    for m in matches:
        g, p = _pairs(m.iou, thr)
        errs.extend(np.abs(m.pred_area[p] - m.gt_area[g]) / np.maximum(m.gt_area[g], 1))
    return float(np.median(errs)) if errs else float("nan")


def coco_mask_ap(gts: list[np.ndarray], preds: list[tuple[list[np.ndarray], np.ndarray]]) -> dict[str, float]:
    """COCO mask AP, AP50, AP75 (pycocotools, maxDets 1000, area range all).

    `gts`: label images; `preds`: per image, full-size bool masks and scores.
    """
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    import contextlib
    import io

    images, anns, dets = [], [], []
    aid = 0
    for img_id, (gt, (masks, scores)) in enumerate(zip(gts, preds), 1):
        h, w = gt.shape
        images.append({"id": img_id, "height": h, "width": w})
        for lab in np.unique(gt):
            if lab == 0:
                continue
            rle = mask_utils.encode(np.asfortranarray((gt == lab).astype(np.uint8)))
            aid += 1
            area = float(mask_utils.area(rle))
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": aid, "image_id": img_id, "category_id": 1, "segmentation": rle, "area": area,
                         "bbox": list(map(float, mask_utils.toBbox(rle))), "iscrowd": 0})
        for m, s in zip(masks, scores):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            dets.append({"image_id": img_id, "category_id": 1, "segmentation": rle, "score": float(s)})
    if not anns:
        return {"mask_AP": float("nan"), "mask_AP50": float("nan"), "mask_AP75": float("nan")}
    if not dets:
        return {"mask_AP": 0.0, "mask_AP50": 0.0, "mask_AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "mitochondrion"}]}
        coco.createIndex()
        cdt = coco.loadRes(dets)
        ev = COCOeval(coco, cdt, "segm")
        ev.params.maxDets = [1, 100, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # stats[0..2]: AP, AP50, AP75 at the last maxDets entry
    return {"mask_AP": float(ev.stats[0]), "mask_AP50": float(ev.stats[1]), "mask_AP75": float(ev.stats[2])}


def foreground_iou(gts: list[np.ndarray], preds: list[np.ndarray]) -> float:
    inter = sum(int(((g > 0) & (p > 0)).sum()) for g, p in zip(gts, preds))
    union = sum(int(((g > 0) | (p > 0)).sum()) for g, p in zip(gts, preds))
    return inter / union if union else 1.0


def evaluate(gts: list[np.ndarray], pred_labels: list[np.ndarray], pred_instances: list[tuple[list[np.ndarray], np.ndarray]] | None = None) -> dict:
    """All metrics for paired GT / prediction label images (plus scored masks for AP when given)."""
    matches = [match_image(g, p) for g, p in zip(gts, pred_labels)]
    stats = {thr: pooled_stats(matches, thr) for thr in THRESHOLDS}
    s50, s75 = stats[0.5], stats[0.75]
    out = {
        "images": len(gts),
        "gt_instances": int(sum(m.iou.shape[0] for m in matches)),
        "pred_instances": int(sum(m.iou.shape[1] for m in matches)),
        "precision@0.5": s50.precision, "recall@0.5": s50.recall, "f1@0.5": s50.f1,
        "precision@0.75": s75.precision, "recall@0.75": s75.recall, "f1@0.75": s75.f1,
        "panoptic_quality@0.5": s50.panoptic_quality,
        "mSA": float(np.mean([s.accuracy for s in stats.values()])),
        "foreground_iou": foreground_iou(gts, pred_labels),
        "median_area_error": median_area_error(matches),
        "count_error": [int(m.iou.shape[1] - m.iou.shape[0]) for m in matches],
        "mean_abs_count_error": float(np.mean([abs(m.iou.shape[1] - m.iou.shape[0]) for m in matches])) if matches else 0.0,
    }
    if pred_instances is None:
        pred_instances = []
        for p in pred_labels:
            ids = [i for i in np.unique(p) if i != 0]
            pred_instances.append(([p == i for i in ids], np.ones(len(ids))))
    out.update(coco_mask_ap(gts, pred_instances))
    return out
