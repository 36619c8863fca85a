"""Estimate the scale of an image that does not say its pixel size.

Why: the model finds mitochondria only near the scale it was trained at. A
JPEG or PNG carries no pixel size, and the manifest's default (5 nm for the
shipped model) is right for the images it was trained on but not for, say, a
full-resolution 4864x3704 cardiac frame whose pixels are 4x finer: read at
5 nm, that frame gave F1 0.00; at its true scale, 0.81.

How, in four steps:
1. Candidates: pixel sizes `default x 2^k`, k = 1 ... -3 (2x coarser to 8x finer).
2. One region for all of them (`probe_region`): the centred square of the
   image (clipped to it: the whole image when it is small enough) that is the
   largest whose segmentation at every usable candidate costs at most
   `MAX_TILES` tiles in all. Every candidate segments that whole region,
   tiled as `mito-run` tiles, normalised with the whole image's percentiles as
   `mito-run` normalises it. So candidates differ only in scale, never in the
   part of the frame they see. (Each used to see one tile's worth of the
   centre, 256x more area at the finest candidate than at the coarsest, so a
   frame with a sparse centre was pushed towards fine scales.)
3. Coverage: the fraction of the region inside confident masks (per area, so
   it compares across scales). At the right scale the model outlines the
   mitochondria it sees; too coarse or too fine, it misses them or cuts out
   fragments, and coverage falls. The default is kept unless another candidate
   covers at least `MIN_GAIN` times as much (and at least `MIN_COVERAGE` of
   the region), so images at the default scale are not moved by noise.
4. When a candidate beats the default, its neighbours at `x 2^(+-1/2)` are
   tried on the same region, within `REFINE_TILES` more tiles, and replace
   it only with `REFINE_GAIN` times its coverage.

A candidate at which the region is smaller than `MIN_CONTEXT` of a tile is not
tried (the default always is). The cost is set by the coarsest candidate: the
region has 256x more model pixels there than at the finest. So on a large
frame the budget, not the image, limits the finest candidate: a 4864x3264
frame gets a 2048 px region (36 tiles), on which 2x coarser ... 4x finer are
tried; 8x finer would need a 4096 px region (121 tiles at 2x coarser).
Measured with the shipped model: BENCHMARKS.md and bench/scale_probe_check.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backends import Backend
from .manifest import Manifest
from .prepare import normalization_limits, prepare
from .scale import scaled_shape
from .segment import segment_scaled
from .tiling import TileGrid

MIN_GAIN = 1.3
MIN_COVERAGE = 0.005
# a half-octave neighbour replaces the octave winner only when it covers clearly more: release 3 (trained
# with scale jitter) covers nearly as much half an octave off (cardiac Image_3 upsampled 4x: 0.446 at
# 1.77 nm vs 0.409 at the true 1.25 nm, and F1@0.5 0.58 there vs 0.74), so a bare maximum drifts
REFINE_GAIN = 1.1
# a candidate at which the region shrinks below a quarter of a tile is not tried: a handful of coarse
# pixels, mirror-padded, is too little context to judge scale by (release 3 "covered" 2-4x more of
# 1024x768 Lucchi slices at 1.77 and 0.62 nm than at their true 5 nm, where they are 181x136 px or less)
MIN_CONTEXT = 0.25
OCTAVES = (1, 0, -1, -2, -3)  # default x 2^k: 2x coarser ... 8x finer
# tiles the octave candidates may segment together (this sets the region): room for 2x coarser ... 4x
# finer on a full-resolution frame (36 tiles), about 7x what one tile per candidate cost
MAX_TILES = 40
# tiles the half-octave refinement may add: the neighbours of a coarse winner see the region at the most
# model pixels (7.07 nm on a 2000 px frame: 16 tiles; 14.1 nm: 64, not tried)
REFINE_TILES = 20


def candidates(default_nm: float, octaves: tuple[int, ...] = OCTAVES) -> list[float]:
    return [default_nm * 2.0**k for k in octaves]


def _factor(manifest: Manifest, pixel_size_nm: float) -> float:
    """Model pixels per input pixel at `pixel_size_nm`."""
    return pixel_size_nm / manifest.pixel_size_nm


def enough_context(region_shape: tuple[int, ...], manifest: Manifest, tile: int, pixel_size_nm: float) -> bool:
    """Does the region, seen at `pixel_size_nm`, fill at least MIN_CONTEXT of a tile?"""
    factor = _factor(manifest, pixel_size_nm)
    h, w = region_shape[:2]
    return (h * factor) * (w * factor) >= MIN_CONTEXT * tile * tile


def tiles_needed(region_shape: tuple[int, ...], manifest: Manifest, tile: int, pixel_size_nm: float) -> int:
    """Tiles `mito-run` segments the region in at `pixel_size_nm`."""
    scaled = scaled_shape(region_shape[:2], _factor(manifest, pixel_size_nm))
    return len(TileGrid(scaled, tile, min(manifest.overlap, tile - 1)).tiles)


def usable(region_shape: tuple[int, ...], manifest: Manifest, tile: int, pixel_size_nm: float, default_nm: float) -> bool:
    return pixel_size_nm == default_nm or enough_context(region_shape, manifest, tile, pixel_size_nm)


def cost(region_shape: tuple[int, ...], manifest: Manifest, tile: int, pixel_sizes: list[float], default_nm: float) -> int:
    """Tiles segmented for the usable ones of `pixel_sizes` on a region of `region_shape`."""
    return sum(tiles_needed(region_shape, manifest, tile, px) for px in pixel_sizes
               if usable(region_shape, manifest, tile, px, default_nm))


def probe_region(image_shape: tuple[int, ...], manifest: Manifest, tile: int, pixel_sizes: list[float],
                 default_nm: float, max_tiles: int = MAX_TILES) -> tuple[int, int]:
    """(rows, cols) of the centred region every candidate is scored on: the largest square side, clipped to
    the image, whose `cost` is at most `max_tiles` (the cost only grows with the side: bisection)."""
    h, w = image_shape[:2]
    shape = lambda side: (min(h, side), min(w, side))  # noqa: E731
    lo, hi = 1, max(h, w)
    if cost(shape(hi), manifest, tile, pixel_sizes, default_nm) <= max_tiles:
        return shape(hi)
    while hi - lo > 1:  # cost(lo) <= max_tiles < cost(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost(shape(mid), manifest, tile, pixel_sizes, default_nm) <= max_tiles else (lo, mid)
    return shape(lo)


def centre_crop(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The central `shape` (rows, cols) of the image (all of it along an axis where it is smaller)."""
    h, w = image.shape[:2]
    rows, cols = min(h, shape[0]), min(w, shape[1])
    r, c = (h - rows) // 2, (w - cols) // 2
    return image[r : r + rows, c : c + cols]


def coverage(backend: Backend, region: np.ndarray, manifest: Manifest, pixel_size_nm: float,
             limits: tuple[float, float] | None = None) -> float:
    """Fraction of `region`, seen at `pixel_size_nm`, inside confident masks; `limits` normalise it as its image."""
    scaled = prepare(region, manifest.normalization, _factor(manifest, pixel_size_nm), limits=limits)
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
    region: tuple[int, int] | None = None  # rows, cols of the input region every candidate was scored on
    tiles: int = 0  # tiles segmented, all candidates together

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
                        start_nm: float | None = None, max_tiles: int = MAX_TILES) -> ScaleEstimate:
    """Segment one region of `image` (the specimen) at each candidate scale: at most `max_tiles` tiles, and
    `REFINE_TILES` more for the half octaves.

    `start_nm` is the pixel size to keep unless another is clearly better: a file's calibration, or
    (None) the manifest's default for files without one.
    """
    default = start_nm or manifest.default_input_pixel_size_nm
    tile = backend.tile
    octaves = candidates(default)
    shape = probe_region(image.shape, manifest, tile, octaves, default, max_tiles)
    region = centre_crop(image, shape)
    limits = normalization_limits(image, manifest.normalization)
    tried = [px for px in octaves if usable(shape, manifest, tile, px, default)]
    covered = {px: coverage(backend, region, manifest, px, limits) for px in tried}
    spent = cost(shape, manifest, tile, tried, default)
    first = choose(default, covered)
    if not first.moved:
        return ScaleEstimate(default, default, covered, shape, spent)
    octave = first.pixel_size_nm
    halves: dict[float, float] = {}
    allowance = REFINE_TILES
    for px in (octave * 2**0.5, octave / 2**0.5):
        need = tiles_needed(shape, manifest, tile, px)
        if enough_context(shape, manifest, tile, px) and need <= allowance:
            halves[px] = coverage(backend, region, manifest, px, limits)
            allowance -= need
            spent += need
    covered.update(halves)
    best_half = max(halves, key=halves.get) if halves else None
    chosen = best_half if best_half is not None and halves[best_half] >= REFINE_GAIN * covered[octave] else octave
    return ScaleEstimate(chosen, default, covered, shape, spent)
