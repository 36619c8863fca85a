"""Rescaling between the input's pixel size and the model's pixel size."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def scaled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    return max(1, int(round(shape[0] * factor))), max(1, int(round(shape[1] * factor)))


def rescale_image(image: np.ndarray, factor: float) -> np.ndarray:
    """Area interpolation when shrinking (no aliasing), bilinear when enlarging; float32 out."""
    if abs(factor - 1.0) < 1e-6:
        return np.asarray(image, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    size = scaled_shape(image.shape[:2], factor)
    mode = "area" if factor < 1 else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(t, size=size, mode=mode, **kwargs)[0, 0].numpy()


def rescale_labels(labels: np.ndarray, factor: float) -> np.ndarray:
    """Rescale an instance label image: per instance, a pixel belongs to it when it covers >= 50%."""
    if abs(factor - 1.0) < 1e-6:
        return labels.copy()
    from .instances import Instances

    out_shape = scaled_shape(labels.shape, factor)
    inst = Instances.from_label_image(labels)
    out = np.zeros(out_shape, dtype=labels.dtype)
    best = np.zeros(out_shape, dtype=np.float32)
    ids = np.unique(labels)
    ids = ids[ids != 0]
    for lab, (r, c), m in zip(ids, inst.offsets, inst.masks):
        r0, c0 = int(np.floor(r * factor)), int(np.floor(c * factor))
        r1 = min(out_shape[0], int(np.ceil((r + m.shape[0]) * factor)))
        c1 = min(out_shape[1], int(np.ceil((c + m.shape[1]) * factor)))
        # area-resample the instance's mask on the exact output grid cells it touches
        src_r0, src_c0 = r0 / factor, c0 / factor
        src_r1, src_c1 = r1 / factor, c1 / factor
        pad = np.zeros((int(np.ceil(src_r1)) - int(np.floor(src_r0)), int(np.ceil(src_c1)) - int(np.floor(src_c0))), np.float32)
        pr, pc = r - int(np.floor(src_r0)), c - int(np.floor(src_c0))
        pad[pr : pr + m.shape[0], pc : pc + m.shape[1]] = m[: pad.shape[0] - pr, : pad.shape[1] - pc]
        frac = rescale_to(pad, (r1 - r0, c1 - c0))
        take = (frac >= 0.5) & (frac > best[r0:r1, c0:c1])
        out[r0:r1, c0:c1][take] = lab
        best[r0:r1, c0:c1][take] = frac[take]
    return out


def rescale_to(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    if size[0] <= array.shape[0] and size[1] <= array.shape[1]:
        return F.interpolate(t, size=size, mode="area")[0, 0].numpy()
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
