"""Validation through the runtime's own inference path (tiles, paste, stitch) at full resolution."""
from __future__ import annotations

import torch

from ..runtime.backends.torch_backend import TorchBackend
from ..runtime.segment import segment_scaled
from .importers.types import LabelledImage
from .metrics import coco_mask_ap, evaluate
from .sampling import ScaledImage

SCORE_CANDIDATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def validate(model: torch.nn.Module, scaled: list[ScaledImage], originals: list[LabelledImage], tile: int, overlap: int,
             factors: list[float], device: str) -> dict:
    """Metrics at the score threshold with the best F1@0.5 (recorded); AP uses all detections >= 0.05."""
    was_training = model.training
    backend = TorchBackend(model, tile=tile, batch=1, device=device, score_threshold=0.05)
    preds = [segment_scaled(backend, s.image, o.labels.shape, f, overlap, score_threshold=0.05)
             for s, o, f in zip(scaled, originals, factors)]
    model.train(was_training)
    gts = [o.labels for o in originals]
    best = None
    for thr in SCORE_CANDIDATES:
        labels = [p[p.scores >= thr].to_label_image(g.shape) for p, g in zip(preds, gts)]
        m = evaluate(gts, labels, with_ap=False)
        if best is None or m["f1@0.5"] > best[1]["f1@0.5"]:
            best = (thr, m)
    thr, metrics = best
    metrics.update(coco_mask_ap(gts, preds))
    metrics["score_threshold"] = thr
    return metrics
