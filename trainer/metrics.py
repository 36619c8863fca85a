"""Instance-segmentation metrics with the field's definitions.

Matching follows StarDist's `matching` / `matching_dataset` (by_image=False):
per image, a one-to-one assignment (Hungarian, IoU as tie-breaker) keeps pairs
with IoU >= threshold; TP/FP/FN and the summed IoU of matches are pooled over
all images before any ratio is taken. As in StarDist, a ratio whose numerator
TP is 0 is 0 (also for an empty ground truth with empty predictions).
  precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN),
  accuracy = TP/(TP+FP+FN); mSA = mean accuracy over IoU 0.5:0.05:0.95,
  panoptic quality = sum(matched IoU) / (TP + FP/2 + FN/2).
COCO mask AP comes from pycocotools, read from its precision array at the
largest maxDets (>= 1000): `COCOeval.stats[0]` would silently use maxDets=100.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from ..runtime.instances import Instances
from ..runtime.matching import (BORDER_MARGIN_PX, ImageMatch, MatchStats, _dense_ids, gt_border_flags, image_stats,  # noqa: F401
                               iou_matrix, match_image, match_pairs, pooled_stats)

THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.5, 0.951, 0.05), 2))
MIN_MAX_DETS = 1000


def _relative_area_differences(matches: list[ImageMatch], thr: float) -> list[float]:
    out: list[float] = []
    for m in matches:
        g, p = match_pairs(m.iou, thr)
        out.extend((m.pred_area[p] - m.gt_area[g]) / np.maximum(m.gt_area[g], 1))
    return out


def median_area_error(matches: list[ImageMatch], thr: float = 0.5) -> float:
    """Median |pred - gt| / gt area over pairs matched at `thr` (NaN when nothing matched)."""
    diffs = _relative_area_differences(matches, thr)
    return float(np.median(np.abs(diffs))) if diffs else float("nan")


def median_area_bias(matches: list[ImageMatch], thr: float = 0.5) -> float:
    """Median signed (pred - gt) / gt area over pairs matched at `thr`: > 0 when masks run large.

    What a published mean area inherits: an error of 8% that is +8% on every object shifts every mean,
    one that is +-8% at random mostly averages out."""
    diffs = _relative_area_differences(matches, thr)
    return float(np.median(diffs)) if diffs else float("nan")


def rle_from_crop(offset: tuple[int, int], mask: np.ndarray, shape: tuple[int, int]) -> dict:
    """Compressed COCO RLE of a mask crop at `offset`, clipped to an image of `shape` (no full-size array).

    The encoding itself is the one `mito-run` writes predictions with (`runtime.writers.coco.crop_rle`).
    """
    from ..runtime.writers.coco import crop_rle

    H, W = shape
    r, c = int(offset[0]), int(offset[1])
    r0, c0 = max(r, 0), max(c, 0)
    r1, c1 = min(r + mask.shape[0], H), min(c + mask.shape[1], W)
    if r1 <= r0 or c1 <= c0:
        return crop_rle((0, 0), np.zeros((0, 0), bool), shape)
    return crop_rle((r0, c0), mask[r0 - r : r1 - r, c0 - c : c1 - c], shape)


def label_instances(labels: np.ndarray) -> Instances:
    """Every id of a label image as an instance crop (score 1), ids ascending."""
    from scipy import ndimage

    labels = _dense_ids(np.asarray(labels))
    offsets, masks = [], []
    for k, sl in enumerate(ndimage.find_objects(labels) if labels.size and labels.max() > 0 else [], 1):
        if sl is not None:
            offsets.append((sl[0].start, sl[1].start))
            masks.append(labels[sl] == k)
    return Instances(np.array(offsets, np.int64).reshape(-1, 2), masks, np.ones(len(masks), np.float32))


def _as_instances(pred) -> Instances:
    """Accept Instances, or the older (list of full-size masks, scores) form."""
    if isinstance(pred, Instances):
        return pred
    masks, scores = pred
    offsets, crops = [], []
    for m in masks:
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if not len(rows):
            offsets.append((0, 0))
            crops.append(np.zeros((0, 0), bool))
            continue
        offsets.append((rows[0], cols[0]))
        crops.append(m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(bool))
    return Instances(np.array(offsets, np.int64).reshape(-1, 2), crops, np.asarray(scores, np.float32))


def coco_mask_ap(gts: list[np.ndarray], preds: list) -> dict[str, float]:
    """COCO mask AP (IoU .50:.95), AP50, AP75 over all images, area range all, maxDets >= 1000.

    `gts`: label images; `preds`: per image, `Instances` with scores (or the
    older (full-size masks, scores) tuples). NaN when there is no GT instance.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    max_dets = MIN_MAX_DETS
    for img_id, (gt, pred) in enumerate(zip(gts, preds), 1):
        shape = gt.shape
        images.append({"id": img_id, "height": shape[0], "width": shape[1]})
        g = label_instances(gt)
        for off, m in zip(g.offsets, g.masks):
            rle = rle_from_crop(off, m, shape)
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": 1, "segmentation": rle, "area": float(m.sum()),
                         "bbox": [float(off[1]), float(off[0]), float(m.shape[1]), float(m.shape[0])], "iscrowd": 0})
        inst = _as_instances(pred)
        max_dets = max(max_dets, len(inst))
        for off, m, s in zip(inst.offsets, inst.masks, inst.scores):
            if m.size and m.any():
                dets.append({"image_id": img_id, "category_id": 1, "segmentation": rle_from_crop(off, m, shape), "score": float(s)})
    if not anns:
        return {"mask_AP": float("nan"), "mask_AP50": float("nan"), "mask_AP75": float("nan")}
    if not dets:
        return {"mask_AP": 0.0, "mask_AP50": 0.0, "mask_AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "mitochondrion"}]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "segm")
        ev.params.maxDets = [1, 100, max_dets]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, 0, ev.params.areaRngLbl.index("all"), -1]  # [iou, recall] at the last maxDets

    def ap(rows: np.ndarray) -> float:
        valid = rows[rows > -1]
        return float(valid.mean()) if valid.size else float("nan")

    thr = np.asarray(ev.params.iouThrs)
    return {"mask_AP": ap(precision), "mask_AP50": ap(precision[np.isclose(thr, 0.5)]), "mask_AP75": ap(precision[np.isclose(thr, 0.75)])}


SIZE_BINS_PX = (500, 2000)  # px^2 at the GT's resolution: where release 2 lost small mitochondria (at 5 nm)
SIZE_BINS_UM2 = (0.0125, 0.05)  # the same bins in um^2 at 5 nm pixels


def _bin_names(edges: tuple[float, float], unit: str) -> list[str]:
    return [f"<{edges[0]:g} {unit}", f"{edges[0]:g}-{edges[1]:g} {unit}", f">={edges[1]:g} {unit}"]


def recall_breakdown(matches: list[ImageMatch], pixel_size_nm: float | None = None, thr: float = 0.5) -> dict:
    """Recall at IoU `thr` of GT objects by size (px^2, and um^2 when the pixel size is known) and of
    objects touching the image border vs interior ones: the failure modes pooled F1 hides."""
    areas, found, border = [], [], []
    for m in matches:
        g, _ = match_pairs(m.iou, thr)
        hit = np.zeros(m.iou.shape[0], bool)
        hit[g] = True
        areas.append(m.gt_area.astype(float))
        found.append(hit)
        border.append(m.gt_on_border if m.gt_on_border is not None else np.zeros(len(hit), bool))
    area, hit, on_border = (np.concatenate(a) if a else np.zeros(0) for a in (areas, found, border))
    hit, on_border = hit.astype(bool), on_border.astype(bool)

    def cell(sel: np.ndarray) -> dict:
        n = int(sel.sum())
        return {"gt": n, "recall": float(hit[sel].mean()) if n else float("nan")}

    def by_size(values: np.ndarray, edges: tuple[float, float], unit: str) -> dict:
        names = _bin_names(edges, unit)
        sels = [values < edges[0], (values >= edges[0]) & (values < edges[1]), values >= edges[1]]
        return {name: cell(sel) for name, sel in zip(names, sels)}

    out = {"recall_by_size_px": by_size(area, SIZE_BINS_PX, "px2"),
           "recall_border": cell(on_border), "recall_interior": cell(~on_border)}
    if pixel_size_nm:
        out["recall_by_size_um2"] = by_size(area * (pixel_size_nm / 1000.0) ** 2, SIZE_BINS_UM2, "um2")
    return out


def foreground_iou(gts: list[np.ndarray], preds: list[np.ndarray]) -> float:
    """Pixel IoU of foreground (any instance) pooled over images; 1.0 when both are empty everywhere."""
    inter = sum(int(((g > 0) & (p > 0)).sum()) for g, p in zip(gts, preds))
    union = sum(int(((g > 0) | (p > 0)).sum()) for g, p in zip(gts, preds))
    return inter / union if union else 1.0


def evaluate(gts: list[np.ndarray], pred_labels: list[np.ndarray], pred_instances: list | None = None, with_ap: bool = True,
             matches: list[ImageMatch] | None = None, pixel_size_nm: float | None = None) -> dict:
    """All metrics for paired GT / prediction label images.

    `pred_instances` (per image, scored `Instances`) feeds COCO AP; without it,
    the label images' instances are used with equal scores (AP then depends
    on their order: prefer scored predictions). `matches` skips recomputing
    IoUs a caller already has.
    """
    if matches is None:
        matches = [match_image(g, p) for g, p in zip(gts, pred_labels)]
    stats = {thr: pooled_stats(matches, thr) for thr in THRESHOLDS}
    s50, s75 = stats[0.5], stats[0.75]
    counts = [int(m.iou.shape[1] - m.iou.shape[0]) for m in matches]
    out = {
        "images": len(gts),
        "gt_instances": int(sum(m.iou.shape[0] for m in matches)),
        "pred_instances": int(sum(m.iou.shape[1] for m in matches)),
        "tp@0.5": s50.tp, "fp@0.5": s50.fp, "fn@0.5": s50.fn,
        "precision@0.5": s50.precision, "recall@0.5": s50.recall, "f1@0.5": s50.f1,
        "precision@0.75": s75.precision, "recall@0.75": s75.recall, "f1@0.75": s75.f1,
        "panoptic_quality@0.5": s50.panoptic_quality,
        "mean_matched_iou@0.5": s50.mean_matched_iou,
        "mSA": float(np.mean([s.accuracy for s in stats.values()])),
        "foreground_iou": foreground_iou(gts, pred_labels),
        "median_area_error": median_area_error(matches),
        "median_area_bias": median_area_bias(matches),
        "count_error": counts,
        "mean_abs_count_error": float(np.mean(np.abs(counts))) if counts else 0.0,
        **recall_breakdown(matches, pixel_size_nm),
    }
    if with_ap:
        if pred_instances is None:
            pred_instances = [label_instances(p) for p in pred_labels]
        out.update(coco_mask_ap(gts, pred_instances))
    return out
