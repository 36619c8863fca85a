"""Validation through the runtime's own inference path (tiles, paste, stitch) at full resolution."""
from __future__ import annotations

import torch

from ..runtime.backends.torch_backend import TorchBackend
from ..runtime.segment import assemble, infer_tiles
from .importers.types import LabelledImage
from .metrics import coco_mask_ap, evaluate
from .sampling import ScaledImage

SCORE_CANDIDATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
# 0.5 first: on a tie it stays. Labs trace membranes tighter or looser than the data the model learnt
# from, and a mixed training set can leave masks a few % too large; the mask threshold absorbs that.
MASK_CANDIDATES = (0.5, 0.4, 0.6, 0.7)


def validate(model: torch.nn.Module, scaled: list[ScaledImage], originals: list[LabelledImage], tile: int, overlap: int,
             factors: list[float], device: str) -> dict:
    """Metrics at the mask threshold with the best mask AP and the score threshold with the best F1@0.5
    (both recorded); AP uses all detections >= 0.05. The network runs once per image."""
    was_training = model.training
    backend = TorchBackend(model, tile=tile, batch=1, device=device, score_threshold=0.05)
    raw = [infer_tiles(backend, s.image, overlap) for s in scaled]
    model.train(was_training)
    gts = [o.labels for o in originals]
    best_mask = None
    for mask_thr in MASK_CANDIDATES:
        preds = [assemble(r, o.labels.shape, f, 0.05, mask_thr) for r, o, f in zip(raw, originals, factors)]
        ap = coco_mask_ap(gts, preds)
        if best_mask is None or ap["mask_AP"] > best_mask[1]["mask_AP"]:
            best_mask = (mask_thr, ap, preds)
    mask_thr, ap, preds = best_mask
    best = None
    for thr in SCORE_CANDIDATES:
        labels = [p[p.scores >= thr].to_label_image(g.shape) for p, g in zip(preds, gts)]
        m = evaluate(gts, labels, with_ap=False)
        if best is None or m["f1@0.5"] > best[1]["f1@0.5"]:
            best = (thr, m)
    thr, metrics = best
    metrics.update(ap)
    metrics["score_threshold"] = thr
    metrics["mask_threshold"] = mask_thr
    return metrics
