"""Validation through the runtime's own inference path (tiles, paste, stitch) at full resolution."""
from __future__ import annotations

import numpy as np
import torch

from ..runtime.backends.torch_backend import TorchBackend
from ..runtime.segment import segment_scaled
from .importers.types import LabelledImage
from .metrics import evaluate
from .sampling import ScaledImage

SCORE_CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def validate(model: torch.nn.Module, scaled: list[ScaledImage], originals: list[LabelledImage], tile: int, overlap: int,
             factors: list[float], device: str) -> dict:
    """Metrics at every candidate score threshold; AP uses all detections >= 0.05."""
    was_training = model.training
    backend = TorchBackend(model, tile=tile, batch=1, device=device, score_threshold=0.05)
    preds = []
    for s, o, f in zip(scaled, originals, factors):
        preds.append(segment_scaled(backend, s.image, o.labels.shape, f, overlap, score_threshold=0.05))
    model.train(was_training)
    gts = [o.labels for o in originals]
    best = None
    for thr in SCORE_CANDIDATES:
        kept = [p[p.scores >= thr] for p in preds]
        labels = [k.to_label_image(g.shape) for k, g in zip(kept, gts)]
        m = evaluate(gts, labels, pred_instances=[([], np.zeros(0))] * len(gts))  # AP computed once below
        if best is None or m["f1@0.5"] > best[1]["f1@0.5"]:
            best = (thr, m)
    thr, metrics = best
    full = [_full_masks(p, g.shape) for p, g in zip(preds, gts)]
    from .metrics import coco_mask_ap

    metrics.update(coco_mask_ap(gts, full))
    metrics["score_threshold"] = thr
    return metrics


def _full_masks(inst, shape):
    masks = []
    for (r, c), m in zip(inst.offsets, inst.masks):
        full = np.zeros(shape, bool)
        full[r : r + m.shape[0], c : c + m.shape[1]] = m[: shape[0] - r, : shape[1] - c]
        masks.append(full)
    return masks, inst.scores
