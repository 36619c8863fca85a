"""Validation through `mito-run`'s own inference path: tiles, per-tile thresholds, paste, stitch.

The network runs once per image at a low score; each candidate threshold is then applied the way
`runtime.segment.assemble` applies it at run time (per tile, before stitching), so the chosen
thresholds describe the pipeline users run, not a neighbouring one.
"""
from __future__ import annotations

import numpy as np
import torch

from ..runtime.backends.torch_backend import TorchBackend
from ..runtime.segment import assemble, infer_tiles
from .importers.types import LabelledImage
from .metrics import coco_mask_ap, evaluate
from .sampling import ScaledImage

RAW_SCORE = 0.05  # what the network keeps for AP and for the threshold search
# The whole range: release 2 chose 0.95, the top of a grid that stopped there.
SCORE_CANDIDATES = tuple(float(v) for v in np.round(np.arange(0.05, 1.0, 0.05), 2)) + (0.975, 0.99)
# 0.5 first: on a tie it stays. Labs trace membranes tighter or looser than the data the model learnt
# from, and a mixed training set can leave masks a few % too large; the mask threshold absorbs that.
MASK_CANDIDATES = (0.5, 0.3, 0.4, 0.6, 0.7)


def validate(model: torch.nn.Module, scaled: list[ScaledImage], originals: list[LabelledImage], tile: int, overlap: int,
             factors: list[float], device: str) -> dict:
    """Metrics at the mask threshold with the best mask AP and the score threshold with the best pooled
    F1@0.5 (both recorded, with F1 at every candidate score); AP uses all detections >= RAW_SCORE."""
    was_training = model.training
    backend = TorchBackend(model, tile=tile, batch=1, device=device, score_threshold=RAW_SCORE)
    raw = [infer_tiles(backend, s.image, overlap) for s in scaled]
    model.train(was_training)
    gts = [s.specimen_labels(o.labels) for s, o in zip(scaled, originals)]  # the region the model was shown
    best_mask = None
    for mask_thr in MASK_CANDIDATES:
        preds = [assemble(r, g.shape, f, RAW_SCORE, mask_thr) for r, g, f in zip(raw, gts, factors)]
        ap = coco_mask_ap(gts, preds)
        if best_mask is None or ap["mask_AP"] > best_mask[1]["mask_AP"]:
            best_mask = (mask_thr, ap)
    mask_thr, ap = best_mask
    best, f1_by_score = None, {}
    for thr in SCORE_CANDIDATES:
        labels = [assemble(r, g.shape, f, thr, mask_thr).to_label_image(g.shape) for r, g, f in zip(raw, gts, factors)]
        m = evaluate(gts, labels, with_ap=False)
        f1_by_score[str(thr)] = round(m["f1@0.5"], 4)
        if best is None or m["f1@0.5"] > best[1]["f1@0.5"]:
            best = (thr, m)
    thr, metrics = best
    metrics.update(ap)
    metrics["score_threshold"] = thr
    metrics["mask_threshold"] = mask_thr
    metrics["f1_by_score_threshold"] = f1_by_score
    return metrics
