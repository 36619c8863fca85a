"""Rescaling between the input's pixel size and the model's pixel size.

A `Factor` is one number for square pixels, or (rows, cols) when the input's
pixels are not square (4 x 8 nm pixels reach the model's square 10 nm by
0.8 along rows and 0.4 along columns, `axis_factors`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

Factor = float | tuple[float, float]  # one for both axes, or (rows, cols)


def axis_factors(factor: Factor) -> tuple[float, float]:
    """(rows, cols) of a `Factor`."""
    if isinstance(factor, tuple):
        return float(factor[0]), float(factor[1])
    return float(factor), float(factor)


def inverse(factor: Factor) -> Factor:
    """The factor back (output px per model px from model px per input px), of the same form."""
    if isinstance(factor, tuple):
        return 1.0 / factor[0], 1.0 / factor[1]
    return 1.0 / factor


def scaled_shape(shape: tuple[int, int], factor: Factor) -> tuple[int, int]:
    fy, fx = axis_factors(factor)
    return max(1, int(round(shape[0] * fy))), max(1, int(round(shape[1] * fx)))


def rescale_image(image: np.ndarray, factor: Factor) -> np.ndarray:
    """Area interpolation when shrinking (no aliasing), bilinear when enlarging; float32 out.

    An axis that shrinks while the other grows is pooled first, then the other is interpolated: each
    axis gets the interpolation it would get alone.
    """
    fy, fx = axis_factors(factor)
    if abs(fy - 1.0) < 1e-6 and abs(fx - 1.0) < 1e-6:
        return np.asarray(image, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    size = scaled_shape(image.shape[:2], factor)
    if (fy < 1) == (fx < 1):
        return _interpolate(t, size, "area" if fy < 1 else "bilinear")[0, 0].numpy()
    pooled = (size[0], t.shape[-1]) if fy < 1 else (t.shape[-2], size[1])
    return _interpolate(_interpolate(t, pooled, "area"), size, "bilinear")[0, 0].numpy()


def _interpolate(t: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(t, size=size, mode=mode, **kwargs)


def rescale_labels(labels: np.ndarray, factor: float) -> np.ndarray:
    """Rescale an instance label image onto the grid `rescale_image` gives: per instance, a pixel
    belongs to it when the instance covers >= 50% of it (exact area weights when shrinking,
    bilinear when enlarging, the image's own interpolation), the larger cover winning ties.

    Each instance is resampled on its own crop with separable weight matrices, so sub-pixel
    placement and area are kept for any factor (not only integer ratios).
    """
    if abs(factor - 1.0) < 1e-6:
        return labels.copy()
    from .instances import Instances

    out_shape = scaled_shape(labels.shape, factor)
    inst = Instances.from_label_image(labels)
    ids = np.unique(labels)
    ids = ids[ids != 0]
    out = np.zeros(out_shape, dtype=labels.dtype)
    best = np.zeros(out_shape, dtype=np.float32)
    for lab, (r, c), m in zip(ids, inst.offsets, inst.masks):
        r0, r1, wr = _axis_weights(r, m.shape[0], labels.shape[0], out_shape[0])
        c0, c1, wc = _axis_weights(c, m.shape[1], labels.shape[1], out_shape[1])
        if r1 <= r0 or c1 <= c0:
            continue
        frac = (wr @ m.astype(np.float32) @ wc.T).astype(np.float32)
        take = (frac >= 0.5) & (frac > best[r0:r1, c0:c1])
        out[r0:r1, c0:c1][take] = lab
        best[r0:r1, c0:c1][take] = frac[take]
    return out


def _axis_weights(start: int, length: int, n_in: int, n_out: int) -> tuple[int, int, np.ndarray]:
    """Output cells [o0, o1) a source run [start, start+length) reaches, and their (o1-o0, length) weights.

    Shrinking: output cell i covers source [i*s, (i+1)*s), s = n_in/n_out; weights are the covered
    fraction of each source pixel (exact area). Enlarging: bilinear with half-pixel centres, clamped at
    the image border (as `F.interpolate(..., align_corners=False)`).
    """
    s = n_in / n_out
    src = np.arange(start, start + length, dtype=np.float64)
    if n_out <= n_in:
        o0, o1 = int(np.floor(start / s)), min(n_out, int(np.ceil((start + length) / s)))
        cells = np.arange(o0, o1, dtype=np.float64)[:, None]
        lo = np.maximum(cells * s, src[None, :])
        hi = np.minimum((cells + 1) * s, src[None, :] + 1)
        return o0, o1, (np.clip(hi - lo, 0, None) / s).astype(np.float32)
    o0 = max(0, int(np.floor((start - 1) / s)))
    o1 = min(n_out, int(np.ceil((start + length + 1) / s)))
    x = np.clip((np.arange(o0, o1, dtype=np.float64) + 0.5) * s - 0.5, 0, n_in - 1)[:, None]
    return o0, o1, np.clip(1 - np.abs(x - src[None, :]), 0, None).astype(np.float32)
