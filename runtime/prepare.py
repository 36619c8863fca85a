"""What the model is shown of an image: `preprocess`, the one preprocessing of training and inference.

`preprocess` takes the specimen region (an instrument's data bar left out,
`content.specimen_box`), normalises it by its own percentiles and rescales
it to the model's pixel size. `mito-run`, the scale probe, `mito-train`
(`trainer/sampling.py`) and `mito-export`'s checks all call it, so a model
is trained on the same numbers it is run on.

`prepare` does the normalising and rescaling in one pass over row strips.
The result equals `rescale_image(normalize(image, norm), factor)` to float
rounding, but when shrinking, only a strip of the input is ever converted to
float: a 20000x20000 8-bit frame needs its 400 MB plus the small output, not
another 1.6 GB float copy.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .content import ContentBox
from .normalize import Normalization, normalize, percentile_limits
from .scale import Factor, axis_factors, rescale_image, scaled_shape


STRIP_PIXELS = 8_000_000  # input pixels converted to float at a time (32 MB as float32)


def preprocess(image: np.ndarray, norm: Normalization, factor: Factor, content: ContentBox | None = None) -> np.ndarray:
    """The model's input: the specimen region `content` of `image` (None: the whole frame), normalised by
    that region's percentiles (a data bar would set them), at `factor` model px per input px."""
    return prepare(image if content is None else content.crop(image), norm, factor)


def normalization_limits(image: np.ndarray, norm: Normalization) -> tuple[float, float]:
    """The intensity limits `prepare` normalises `image` with (gray or colour)."""
    if image.ndim == 2:
        return percentile_limits(image, norm)
    # percentiles of the colour image's subsample, exactly the pixels `percentile_limits` would use
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 1_000_000)))
    return percentile_limits(image[::step, ::step], norm)


def prepare(image: np.ndarray, norm: Normalization, factor: Factor, block_rows: int | None = None,
            limits: tuple[float, float] | None = None) -> np.ndarray:
    """Normalised float32 gray at `factor` x the input's size; shrinking works in strips of output rows.

    `block_rows` (output rows per strip) defaults to strips of about `STRIP_PIXELS` input pixels.
    `limits` (default: `image`'s own) lets a part of an image be normalised as the whole is.
    """
    if limits is None:
        limits = normalization_limits(image, norm)
    if max(axis_factors(factor)) >= 1 - 1e-6:  # strips only when both axes shrink
        return rescale_image(normalize(image, norm, limits), factor)
    H, W = image.shape[:2]
    h, w = scaled_shape((H, W), factor)
    out = np.empty((h, w), np.float32)
    if block_rows is None:
        block_rows = max(1, int(STRIP_PIXELS / (W * H / h)))
    period = h // math.gcd(H, h)  # output rows after which the pooling bins repeat exactly
    if period <= block_rows:  # aligned strips: pooling each strip is the same as pooling the whole image
        step = block_rows // period * period
        for o0 in range(0, h, step):
            o1 = min(h, o0 + step)
            strip = torch.from_numpy(normalize(image[o0 * H // h : -(-o1 * H // h)], norm, limits))
            out[o0:o1] = F.adaptive_avg_pool2d(strip[None], (o1 - o0, w))[0].numpy()
        return out
    for o0 in range(0, h, block_rows):  # general ratio: pool along rows with explicit (overlapping) bins
        o1 = min(h, o0 + block_rows)
        idx = np.arange(o0, o1 + 1)
        starts, ends = (idx[:-1] * H) // h, -((-(idx[1:] * H)) // h)  # torch adaptive pooling bins
        i0, i1 = int(starts[0]), int(ends[-1])
        strip = torch.from_numpy(normalize(image[i0:i1], norm, limits))
        cols = F.adaptive_avg_pool1d(strip[None], w)[0].double()  # (rows, w): bins along each row
        csum = torch.cat([cols.new_zeros(1, w), cols.cumsum(0)])
        s, e = torch.from_numpy(starts - i0), torch.from_numpy(ends - i0)
        out[o0:o1] = ((csum[e] - csum[s]) / (e - s)[:, None].double()).float().numpy()
    return out
