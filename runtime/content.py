"""Find the part of a frame that is specimen, not an instrument's data bar.

Why: a TEM camera writes its frame with a flat black (or white) band of text
and a scale bar along one edge: 440 of the 3704 rows of the cardiac frames this
tool was built for. The model must not see it. The band sets the intensity
percentiles (the 1st percentile of Image_3 goes from 28 to 0), and a flat
region inside a tile shifts GroupNorm's statistics for the whole tile (the
same failure as gray tile padding). Measured on cardiac Image_3 with a
synthetic 110-row black bar and text: F1@0.5 0.81 -> 0.48 (5 of 16 found).
Segmenting only the specimen region restores it.

How: from each edge inwards, a line (row or column) is *flat* when at least
half of its pixels lie within a small tolerance of one value at the image's
dark or bright extreme. Text and a scale bar cover less than half of a line,
so their lines stay flat; EM content never does. The band runs from the edge
to the last flat line before `GAP` non-flat ones. Bands thinner than
`MIN_BAND` of the side, or that would leave less than half the image, are
ignored, so an image without a bar is never cropped by noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .normalize import to_gray

FLAT_FRACTION = 0.5  # share of a line's pixels at the band's value
TOLERANCE = 0.03  # of the image's 0.1-99.9 percentile range: JPEG noise around black
GAP = 0.01  # of the side: non-flat lines (a row of large text) tolerated inside a band
MIN_BAND = 0.01  # of the side
MAX_BAND = 0.5  # of the side


@dataclass(frozen=True)
class ContentBox:
    """Specimen region: rows `top:bottom`, cols `left:right` (end-exclusive) of the frame."""

    top: int
    bottom: int
    left: int
    right: int
    shape: tuple[int, int]  # the whole frame

    @property
    def is_whole(self) -> bool:
        return (self.top, self.left, self.bottom, self.right) == (0, 0, *self.shape)

    @property
    def content_shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.top : self.bottom, self.left : self.right]

    def describe(self) -> str:
        """E.g. 'bottom 440 px' for warnings and records."""
        h, w = self.shape
        cut = {"top": self.top, "bottom": h - self.bottom, "left": self.left, "right": w - self.right}
        return ", ".join(f"{side} {n} px" for side, n in cut.items() if n)


def _flat_lines(lines: np.ndarray, extremes: tuple[float, float], tol: float) -> np.ndarray:
    """For each line (row of `lines`), whether most of its pixels sit at one value near an extreme."""
    median = np.median(lines, axis=1)
    near_extreme = (median <= extremes[0] + tol) | (median >= extremes[1] - tol)
    share = (np.abs(lines - median[:, None]) <= tol).mean(axis=1)
    return near_extreme & (share >= FLAT_FRACTION)


def _band(flat: np.ndarray, side: int, step: int) -> int:
    """Lines (at full resolution) from the edge that belong to a band, 0 when there is none."""
    gap = max(1, int(GAP * side / step))
    last, misses = -1, 0
    for i, is_flat in enumerate(flat):
        if is_flat:
            last, misses = i, 0
        else:
            misses += 1
            if misses > gap:
                break
    band = last * step + 1 if last >= 0 else 0  # conservative: the subsample line, not the step after it
    if band < MIN_BAND * side or band > MAX_BAND * side:
        return 0
    return min(band, side)


def content_box(image: np.ndarray) -> ContentBox:
    """The frame minus flat bands along its edges (instrument data bars); the whole frame when there are none."""
    gray = to_gray(image)
    h, w = gray.shape[:2]
    step = max(1, int(np.sqrt(gray.size / 1_000_000)))  # lines are judged on a subsample, ~1 Mpx
    small = np.asarray(gray[::step, ::step], dtype=np.float32)
    lo, hi = np.percentile(small, [0.1, 99.9])
    tol = max(TOLERANCE * float(hi - lo), 1e-6)
    extremes = (float(lo), float(hi))
    cuts = {
        "top": _band(_flat_lines(small, extremes, tol), h, step),
        "bottom": _band(_flat_lines(small[::-1], extremes, tol), h, step),
        "left": _band(_flat_lines(small.T, extremes, tol), w, step),
        "right": _band(_flat_lines(small.T[::-1], extremes, tol), w, step),
    }
    top, bottom = cuts["top"], h - cuts["bottom"]
    left, right = cuts["left"], w - cuts["right"]
    if bottom - top < h / 2 or right - left < w / 2:  # not a data bar: a mostly flat image
        return ContentBox(0, h, 0, w, (h, w))
    return ContentBox(top, bottom, left, right, (h, w))


def specimen_box(image: np.ndarray, skip_data_bars: bool = True) -> ContentBox | None:
    """The specimen region the model is shown, or None for the whole frame (no data bar, or `skip_data_bars`
    off): the one place `mito-run`, `mito-train` and `mito-export` decide it."""
    if not skip_data_bars:
        return None
    box = content_box(image)
    return None if box.is_whole else box
