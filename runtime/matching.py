"""Instance matching, one definition for `mito-eval` and for export's agreement gates (FP16, INT8 vs FP32).

Matching follows StarDist's `matching` / `matching_dataset` (by_image=False):
per image, a one-to-one assignment (Hungarian, IoU as tie-breaker) keeps pairs
with IoU >= threshold; TP/FP/FN and the summed IoU of matches are pooled over
all images before any ratio is taken. A ratio whose numerator TP is 0 is 0.
It lives in the runtime so that `export/` needs nothing from `trainer/`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _dense_ids(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..N when ids are sparse or huge (so bincount stays small); order kept."""
    top = int(labels.max()) if labels.size else 0
    if top < 1 << 20:
        return labels
    ids, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape) + (0 if ids[0] == 0 else 1)  # 0 stays background; no 0 means no background


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU between every GT and predicted instance of two label images (ascending ids), and their areas."""
    if gt.shape != pred.shape:
        raise ValueError(f"label images differ in shape: GT {gt.shape} vs prediction {pred.shape}")
    g, p = _dense_ids(np.asarray(gt)).ravel().astype(np.int64), _dense_ids(np.asarray(pred)).ravel().astype(np.int64)
    g_count, p_count = np.bincount(g), np.bincount(p)
    g_ids, p_ids = np.flatnonzero(g_count[1:]) + 1, np.flatnonzero(p_count[1:]) + 1
    g_area, p_area = g_count[g_ids], p_count[p_ids]
    both = (g > 0) & (p > 0)
    g_index = np.zeros(len(g_count), np.int64)
    g_index[g_ids] = np.arange(len(g_ids))
    p_index = np.zeros(len(p_count), np.int64)
    p_index[p_ids] = np.arange(len(p_ids))
    pair = g_index[g[both]] * max(len(p_ids), 1) + p_index[p[both]]
    inter = np.bincount(pair, minlength=len(g_ids) * len(p_ids)).reshape(len(g_ids), len(p_ids)).astype(np.float64)
    union = g_area[:, None] + p_area[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou, g_area, p_area


@dataclass
class ImageMatch:
    iou: np.ndarray  # (n_gt, n_pred)
    gt_area: np.ndarray
    pred_area: np.ndarray
    gt_on_border: np.ndarray | None = None  # (n_gt,) bool: the GT object touches the image border


BORDER_MARGIN_PX = 4  # polygons traced from masks (Lucchi's) stop 2-3 px short of the image edge


def gt_border_flags(gt: np.ndarray, margin: int = BORDER_MARGIN_PX) -> np.ndarray:
    """For each GT instance (ascending ids, as `iou_matrix` orders them): does it come within `margin`
    pixels of the image border (i.e. is it cut by the frame)?"""
    g = _dense_ids(np.asarray(gt))
    ids = np.flatnonzero(np.bincount(g.ravel().astype(np.int64))[1:]) + 1
    if g.ndim != 2 or not len(ids):
        return np.zeros(len(ids), bool)
    m = max(1, margin)
    edge = np.concatenate([g[:m].ravel(), g[-m:].ravel(), g[:, :m].ravel(), g[:, -m:].ravel()])
    return np.isin(ids, edge[edge > 0])


def match_image(gt: np.ndarray, pred: np.ndarray) -> ImageMatch:
    iou, ga, pa = iou_matrix(gt, pred)
    return ImageMatch(iou, ga, pa, gt_border_flags(gt))


def match_pairs(iou: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Matched (gt, pred) indices with IoU >= thr, one-to-one, as StarDist assigns them."""
    n_matched = min(iou.shape) if iou.ndim == 2 else 0
    if n_matched == 0:
        return np.zeros(0, int), np.zeros(0, int)
    from scipy.optimize import linear_sum_assignment

    # maximise the number of matches; among those, the summed IoU (StarDist's cost)
    cost = -(iou >= thr).astype(float) - iou / (2 * n_matched)
    g, p = linear_sum_assignment(cost)
    ok = iou[g, p] >= thr
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
        return self.tp / (self.tp + self.fp) if self.tp > 0 else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp > 0 else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp > 0 else 0.0

    @property
    def accuracy(self) -> float:
        return self.tp / (self.tp + self.fp + self.fn) if self.tp > 0 else 0.0

    @property
    def mean_matched_iou(self) -> float:
        return self.iou_sum / self.tp if self.tp > 0 else 0.0

    @property
    def panoptic_quality(self) -> float:
        d = self.tp + self.fp / 2 + self.fn / 2
        return self.iou_sum / d if d > 0 else 0.0


def image_stats(m: ImageMatch, thr: float) -> MatchStats:
    g, p = match_pairs(m.iou, thr)
    return MatchStats(thr, len(g), m.iou.shape[1] - len(p), m.iou.shape[0] - len(g), float(m.iou[g, p].sum()))


def pooled_stats(matches: list[ImageMatch], thr: float) -> MatchStats:
    parts = [image_stats(m, thr) for m in matches]
    return MatchStats(thr, sum(s.tp for s in parts), sum(s.fp for s in parts), sum(s.fn for s in parts), float(sum(s.iou_sum for s in parts)))
