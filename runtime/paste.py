"""Turn mask-head probabilities into bool masks at any output resolution.

Pasting the 28x28 probabilities straight onto the input's full-resolution grid
(bilinear, like torchvision's `paste_masks_in_image` but at a chosen scale)
gives sub-pixel boundaries when the model works at a coarser pixel size.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .instances import Detections, Instances
from .scale import Factor, axis_factors


def paste_detections(
    det: Detections, origin: tuple[float, float], factor: Factor, out_shape: tuple[int, int], threshold: float = 0.5
) -> Instances:
    """Masks of `det` (tile at `origin` in model pixels) on the output grid, `factor` output px per model px
    (or (rows, cols) of them when the input's pixels are not square)."""
    fy, fx = axis_factors(factor)
    offsets, masks, scores = [], [], []
    if len(det) == 0:
        return Instances()
    probs = torch.from_numpy(np.ascontiguousarray(det.mask_probs, dtype=np.float32))
    m = probs.shape[-1]
    probs = F.pad(probs, (1, 1, 1, 1))[:, None]  # torchvision's 1-px expansion, see expand_masks
    grow = (m + 2) / m
    for i in range(len(det)):
        x0, y0, x1, y1 = det.boxes[i].astype(np.float64)
        x0, x1 = (x0 + origin[1]) * fx, (x1 + origin[1]) * fx
        y0, y1 = (y0 + origin[0]) * fy, (y1 + origin[0]) * fy
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * grow, (y1 - y0) / 2 * grow
        if hw <= 0 or hh <= 0:
            continue
        ex0, ex1, ey0, ey1 = cx - hw, cx + hw, cy - hh, cy + hh
        c0, c1 = max(0, int(np.floor(ex0))), min(out_shape[1], int(np.ceil(ex1)))
        r0, r1 = max(0, int(np.floor(ey0))), min(out_shape[0], int(np.ceil(ey1)))
        if c1 <= c0 or r1 <= r0:
            continue
        gx = (torch.arange(c0, c1, dtype=torch.float32) + 0.5 - ex0) / (ex1 - ex0) * 2 - 1
        gy = (torch.arange(r0, r1, dtype=torch.float32) + 0.5 - ey0) / (ey1 - ey0) * 2 - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
        sample = F.grid_sample(probs[i : i + 1], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        mask = (sample[0, 0] >= threshold).numpy()
        if not mask.any():
            continue
        offsets.append((r0, c0))
        masks.append(mask)
        scores.append(det.scores[i])
    return Instances(np.array(offsets, np.int64).reshape(-1, 2), masks, np.array(scores, np.float32))
