"""Estimate the scale of an image that does not say its pixel size.

Why: the model finds mitochondria only near the scale it was trained at. A
JPEG or PNG carries no pixel size, and the manifest's default (5 nm for the
shipped model) is right for the images it was trained on but not for, say, a
full-resolution 4864x3704 cardiac frame whose pixels are 4x finer: read at
5 nm, that frame gave F1 0.00; at its true scale, 0.81.

How: at candidate pixel sizes `default x 2^k` (2x coarser to 8x finer), the
centre of the image (one tile at that scale) is segmented, and the fraction of
it inside confident masks is its *coverage*; when a candidate beats the
default, its two neighbours at `x 2^(+-1/2)` are tried too. At the right scale the model outlines the
mitochondria it sees; too coarse or too fine, it misses them or cuts out
fragments, and coverage falls. The default is kept unless another candidate
covers at least `MIN_GAIN` times as much (and at least `MIN_COVERAGE` of the
window), so images at the default scale are not moved by noise. Scales at which the whole image would be smaller
than a quarter of a tile are not tried (too little context). Measured with the
shipped model (release 3, bench/scale_probe_check.py, 2026-12-03): see
BENCHMARKS.md; with the default 2x off the true scale covered 1.5x as much, and
4x off, 17x (release 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backends import Backend
from .manifest import Manifest
from .prepare import prepare
from .segment import segment_scaled

MIN_GAIN = 1.3
MIN_COVERAGE = 0.005
# a half-octave neighbour replaces the octave winner only when it covers clearly more: release 3 (trained
# with scale jitter) covers nearly as much half an octave off (cardiac Image_3 upsampled 4x: 0.446 at
# 1.77 nm vs 0.409 at the true 1.25 nm, and F1@0.5 0.58 there vs 0.74), so a bare maximum drifts
REFINE_GAIN = 1.1
# a candidate at which the whole image shrinks below a quarter of a tile is not tried: a handful of
# coarse pixels, mirror-padded, is too little context to judge scale by (release 3 "covered" 2-4x more of
# 1024x768 Lucchi slices at 1.77 and 0.62 nm than at their true 5 nm, where they are 181x136 px or less)
MIN_CONTEXT = 0.25
OCTAVES = (1, 0, -1, -2, -3)  # default x 2^k: 2x coarser ... 8x finer


def candidates(default_nm: float, octaves: tuple[int, ...] = OCTAVES) -> list[float]:
    return [default_nm * 2.0**k for k in octaves]


def enough_context(image_shape: tuple[int, ...], manifest: Manifest, tile: int, pixel_size_nm: float) -> bool:
    """Does the image, seen at `pixel_size_nm`, fill at least MIN_CONTEXT of a tile?"""
    factor = pixel_size_nm / manifest.pixel_size_nm
    h, w = image_shape[:2]
    return (h * factor) * (w * factor) >= MIN_CONTEXT * tile * tile


def centre_window(image: np.ndarray, side: int) -> np.ndarray:
    """The central `side` x `side` input pixels (the whole image where it is smaller)."""
    h, w = image.shape[:2]
    r, c = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image[r : r + side, c : c + side]


def coverage(backend: Backend, image: np.ndarray, manifest: Manifest, pixel_size_nm: float) -> float:
    """Fraction of one tile's worth of the image centre, at `pixel_size_nm`, inside confident masks."""
    factor = pixel_size_nm / manifest.pixel_size_nm
    window = centre_window(image, max(1, int(backend.tile / factor)))
    scaled = prepare(window, manifest.normalization, factor)
    instances = segment_scaled(backend, scaled, scaled.shape, 1.0, manifest.overlap, manifest.score_threshold,
                               manifest.mask_threshold)
    if not len(instances):
        return 0.0
    return float(np.count_nonzero(instances.to_label_image(scaled.shape, np.int32)) / scaled.size)


@dataclass(frozen=True)
class ScaleEstimate:
    pixel_size_nm: float  # what the image is scaled with
    default_nm: float
    coverage: dict[float, float] = field(default_factory=dict)  # candidate pixel size -> coverage

    @property
    def moved(self) -> bool:
        return self.pixel_size_nm != self.default_nm


def choose(default_nm: float, covered: dict[float, float], min_gain: float = MIN_GAIN,
           min_coverage: float = MIN_COVERAGE) -> ScaleEstimate:
    """The default, unless another candidate covers clearly more (pure: the rule, apart from the model)."""
    best = max(covered, key=lambda px: (covered[px], px == default_nm))
    base = covered.get(default_nm, 0.0)
    if best != default_nm and covered[best] >= min_coverage and covered[best] >= min_gain * base:
        return ScaleEstimate(best, default_nm, dict(covered))
    return ScaleEstimate(default_nm, default_nm, dict(covered))


SCALE_ESTIMATE_MODES = ("auto", "always", "off")
"""auto: images without a pixel size are scaled by the estimate; calibrated ones are only checked (a
warning when the model finds clearly more at another scale). always: the estimate also sets the scale
the model sees calibrated images at (their µm values still use the calibration). off: no estimate."""


def estimate_pixel_size(backend: Backend, image: np.ndarray, manifest: Manifest,
                        start_nm: float | None = None) -> ScaleEstimate:
    """5 one-tile segmentations (7 when the start loses); about 0.6 s on a 2-core CPU with the INT8 trunk.

    `start_nm` is the pixel size to keep unless another is clearly better: a file's calibration, or
    (None) the manifest's default for files without one.
    """
    default = start_nm or manifest.default_input_pixel_size_nm
    def usable(px: float) -> bool:
        return px == default or enough_context(image.shape, manifest, backend.tile, px)

    covered = {px: coverage(backend, image, manifest, px) for px in candidates(default) if usable(px)}
    first = choose(default, covered)
    if not first.moved:
        return first
    octave = first.pixel_size_nm
    halves = {px: coverage(backend, image, manifest, px) for px in (octave * 2**0.5, octave / 2**0.5) if usable(px)}
    if not halves:
        return first
    covered.update(halves)
    best_half = max(halves, key=halves.get)
    chosen = best_half if halves[best_half] >= REFINE_GAIN * covered[octave] else octave
    return ScaleEstimate(chosen, default, dict(covered))
