"""A downscaled quality-control PNG: the image in gray, each mitochondrion outlined and numbered.

The image is shrunk by the smallest whole factor that brings its longest side
to at most `max_side` pixels (a 4864x3704 frame becomes 1216x926), small enough to flip through a folder of them; ids match the
`label` column of `objects.csv` and the label image.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.segmentation import find_boundaries

from ..normalize import Normalization
from ..prepare import prepare

MAX_SIDE = 1600


def _palette(ids: np.ndarray) -> np.ndarray:
    """Bright, distinct, deterministic colours per id (golden-ratio hues)."""
    import colorsys

    hues = (ids.astype(np.float64) * 0.618033988749895) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.85, 1.0) for h in hues]) * 255 if len(ids) else np.zeros((0, 3))


def render_overlay(image: np.ndarray, labels: np.ndarray, max_side: int = MAX_SIDE, numbers: bool = True) -> bytes:
    """PNG bytes of `image` (any dtype, gray or RGB) with the outlines and ids of `labels` (same HxW)."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    h, w = labels.shape
    step = max(1, -(-max(h, w) // max_side))  # a whole-number shrink: exact pooling bins, fast strips
    factor = 1.0 / step
    small = prepare(image, Normalization(0.5, 99.5), factor)  # strips: no full-size float copy
    gray = (np.clip(small, 0, 1) * 255).astype(np.uint8)
    rows = np.minimum((np.arange(gray.shape[0]) + 0.5) * step, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(gray.shape[1]) + 0.5) * step, w - 1).astype(np.int64)
    small_labels = labels[np.ix_(rows, cols)]  # nearest-neighbour downscale keeps ids intact
    rgb = np.repeat(gray[..., None], 3, axis=2)
    edges = find_boundaries(small_labels, mode="inner")
    if edges.any():
        ids = small_labels[edges]
        uniq, inv = np.unique(ids, return_inverse=True)
        rgb[edges] = _palette(uniq)[inv].astype(np.uint8)
    im = Image.fromarray(rgb)
    if numbers:
        _draw_ids(im, small_labels)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)  # noisy EM compresses little anyway; speed matters more
    return buf.getvalue()


def _draw_ids(im: Image.Image, small_labels: np.ndarray) -> None:
    from scipy import ndimage

    ids = np.unique(small_labels)
    ids = ids[ids != 0]
    if not len(ids):
        return
    centres = ndimage.center_of_mass(np.ones_like(small_labels, dtype=np.uint8), small_labels, ids)
    size = max(10, min(18, im.width // 90))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(im)
    for lab, (r, c) in zip(ids, centres):
        draw.text((c, r), str(int(lab)), fill=(255, 255, 0), font=font, anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))
