"""A loaded model that turns one 2-D image into instances at the image's full resolution.

`Segmenter` loads the model once and runs, per image: leave out an
instrument's data bar (`content`) -> estimate the scale of an image without a
pixel size, or check a given one (`scale_probe`; `scale_memory` says which
frames share an estimate) -> normalise (the manifest's percentiles over the
specimen region) and rescale to the model's pixel size (`prepare.preprocess`,
the trainer's preprocessing too) -> tile -> infer (backend) -> paste + stitch
back at full input resolution (`segment.segment_scaled`). It times each stage.

Normalising and rescaling happen together in row strips (`prepare`), so a
20000x20000 frame never exists as a full-size float copy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .backends import Backend
from .backends.select import BackendOptions, select_backend
from .backends.tta import FLIPS, FlipTTA
from .content import ContentBox, specimen_box
from .image_io import ImageData
from .instances import Instances
from .manifest import MANIFEST, Manifest, load_model, weights_sha256
from .pixel_size import NONE, OPTION, PixelSize, as_pixel_size
from .prepare import preprocess
from .scale import axis_factors, inverse
from .scale_limit import check_scaled_size
from .scale_memory import NEVER, Expiry, ScaleMemory, estimate_key, instrument_tags
from .scale_probe import SCALE_ESTIMATE_MODES, ScaleEstimate, estimate_pixel_size
from .segment import segment_scaled

CONTRASTS = ("normal", "inverted")
"""normal: membranes dark, as in TEM and the training data. inverted: membranes bright (some SEM detectors,
inverted stacks); the shipped model, never trained on such images, finds nothing in them as they are."""

# With test-time augmentation each view reports detections down to this fraction of the score threshold,
# so a cluster's mean over views misses at most this much of a view that scored below it
TTA_MEMBER_FRACTION = 0.5


class ModelNotFound(Exception):
    """No model folder to run; the message says what to pass."""


def shipped_models() -> list[Path]:
    """Model folders (holding model.json) inside the installed `mitotally.models` package."""
    root = Path(str(resources.files("mitotally.models")))
    return sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))


def default_model_dir() -> Path:
    """The model shipped with the package: its only model folder, or the one named `default`."""
    found = shipped_models()
    if len(found) == 1:
        return found[0]
    named = [p for p in found if p.name == "default"]
    if named:
        return named[0]
    root = Path(str(resources.files("mitotally.models")))
    if not found:
        raise ModelNotFound(f"no model is shipped yet in {root}: pass --model DIR (a folder with model.json and model.safetensors, as written by mito-train)")
    raise ModelNotFound(f"several models in {root} ({', '.join(p.name for p in found)}): pass --model DIR")


class _TimedBackend:
    """Wraps a backend to add up the seconds spent in `infer` (the rest of segmenting is stitching)."""

    def __init__(self, backend):
        self.inner, self.seconds = backend, 0.0
        self.name, self.tile, self.batch = backend.name, backend.tile, backend.batch

    def __getattr__(self, name):  # everything else (e.g. `tiles_per_call`, which keeps CUDA streams full) as the backend has it
        return getattr(self.inner, name)

    def infer(self, tiles, box_filters=None):
        t0 = time.perf_counter()
        try:
            return self.inner.infer(tiles, box_filters)
        finally:
            self.seconds += time.perf_counter() - t0


@dataclass
class Segmentation:
    instances: Instances  # at the input's full resolution
    scaling_pixel_size_nm: float  # the input pixel size used for rescaling
    factor: float  # model pixels per input pixel
    timings: dict[str, float]  # scale, infer, stitch (seconds)
    scaling_source: str = "given"  # given (file or option), default (assumed), estimated (scale_probe)
    estimate: ScaleEstimate | None = None  # the probe's coverages, when it ran
    estimated_from: str = ""  # the image the estimate was made on (see `scale_memory` for which frames share one)
    content: ContentBox | None = None  # the specimen region segmented (None: the whole frame)
    estimate_number: int | None = None  # which of run.json's `scale_estimates` was used
    scaling: PixelSize | None = None  # x and y scaled from (None: square, `scaling_pixel_size_nm`)

    @property
    def scale_disputed(self) -> bool:
        """A given pixel size that the scale estimate disagrees with but was not allowed to change."""
        return self.scaling_source == "given" and self.estimate is not None and self.estimate.moved

    def reported_scaling_source(self, source: str) -> str:
        """images.csv's `scaling_source`: the pixel size's `source` (`pixel_size.SOURCES`), unless the model was
        not scaled by it (none: default or estimated; --scale-estimate always: estimated)."""
        return self.scaling_source if source == NONE or self.scaling_source == "estimated" else source

    def warnings(self, px: float | None, source: str, uncalibrated: str = "no pixel size in the file") -> list[str]:
        """What the user is told about how this image was segmented: a data bar left out, and its scale.

        `uncalibrated` says why an image has no pixel size (e.g. the implausible value it had)."""
        out = []
        if self.content is not None:
            box = self.content
            out.append(f"left out a flat band along the edge ({box.describe()}: an instrument's data bar?); "
                       f"segmented and measured the other {box.content_shape[1]}x{box.content_shape[0]} px "
                       f"(--keep-data-bars to segment the whole frame)")
        if source == NONE:
            out.append(self._unknown_pixel_size_warning(uncalibrated))
        elif (warning := self._given_pixel_size_warning(px, source)) is not None:
            out.append(warning)
        return out

    def _unknown_pixel_size_warning(self, why: str) -> str:
        """An image without a pixel size: how it was scaled for the model."""
        px = self.scaling_pixel_size_nm
        if self.scaling_source == "estimated":
            return (f"{why}: areas are in px; scale estimated as {px:.3g} nm per pixel from "
                    f"{Path(self.estimated_from).name} (shared by frames of its size, folder and instrument; at the default {self.estimate.default_nm:g} nm the "
                    f"model found far fewer mitochondria; set --pixel-size if you know it)")
        if self.estimate is not None:
            return (f"{why}: areas are in px; scaled for the model at the default {px:g} nm per pixel, "
                    f"which the scale estimate kept (set --pixel-size)")
        return f"{why}: areas are in px; scaling assumed {px:g} nm per pixel (set --pixel-size)"

    def _given_pixel_size_warning(self, px: float, source: str) -> str | None:
        """A pixel size from the file or option that the scale estimate disagrees with."""
        e = self.estimate
        if e is None or not e.moved:
            return None
        gain = e.coverage[e.pixel_size_nm] / max(e.coverage[e.default_nm], 1e-9)
        where = "the --pixel-size" if source == OPTION else f"the file's ({source})"
        seen = (f"the model found {gain:.1f}x more mitochondria area viewing {Path(self.estimated_from).name} as "
                f"{e.pixel_size_nm:.3g} nm per pixel than at {where} {px:.3g} nm")
        if self.scaling_source == "estimated":
            return f"{seen}, so it segmented at {e.pixel_size_nm:.3g} nm (--scale-estimate always); µm values use {px:.3g} nm"
        return (f"{seen}: these images may not be at the scale the model was trained for; check overlays/, then try "
                f"--scale-estimate always (µm values keep {px:.3g} nm) or fine-tune the model on a few of them")


@dataclass(frozen=True)
class View:
    """What the model is shown of one image: the specimen region, and the input pixel size it is scaled from."""

    array: np.ndarray  # the image, less a data bar
    content: ContentBox | None  # the specimen region (None: the whole frame)
    scaling_pixel_size_nm: float
    scaling_source: str  # given, default or estimated (as `Segmentation`)
    estimate: ScaleEstimate | None
    estimated_from: str
    estimate_number: int | None = None  # the estimate's number in its `ScaleMemory`
    scaling: PixelSize | None = None  # non-square pixels: x and y, each axis scaled by its own (no estimate)


def choose_view(image: ImageData, pixel_size_nm: PixelSize | float | None, backend: Backend, manifest: Manifest,
                scale_estimate: str = "auto", skip_data_bars: bool = True, estimates: ScaleMemory | None = None) -> View:
    """Leave out a data bar, then estimate the scale of an image without a pixel size or check a given one.

    `estimates` keeps estimates across calls, for the frames `scale_memory` says share one (the probe
    costs up to `scale_probe.MAX_TILES` tiles). Shared by `Segmenter` and `mito-export`, so frames are
    verified and calibrated on exactly what `mito-run` segments. Non-square pixels are scaled by their
    calibration, unchecked: the probe tries square pixel sizes only.
    """
    box = specimen_box(image.array, skip_data_bars)
    array = image.array if box is None else box.crop(image.array)
    given = as_pixel_size(pixel_size_nm)
    if given is not None and not given.is_square:
        return View(array, box, given.nm, "given", None, "", scaling=given)
    pixel_size_nm = given.nm if given is not None else None
    estimate, source, origin, number = None, "given" if pixel_size_nm else "default", "", None
    if scale_estimate != "off":
        estimates = ScaleMemory() if estimates is None else estimates
        key = estimate_key(image.path, image.array, pixel_size_nm, instrument_tags(image.path))
        entry = estimates.recall(key)
        if entry is None:
            entry = estimates.remember(key, estimate_pixel_size(backend, array, manifest, pixel_size_nm), str(image.path))
        estimate, origin, number = entry.estimate, entry.origin, entry.number
        if not pixel_size_nm:
            pixel_size_nm, source = estimate.pixel_size_nm, ("estimated" if estimate.moved else "default")
        elif scale_estimate == "always" and estimate.moved:
            pixel_size_nm, source = estimate.pixel_size_nm, "estimated"
    px = pixel_size_nm or manifest.default_input_pixel_size_nm
    return View(array, box, px, source, estimate, origin, number)


class Segmenter:
    """The model, loaded once, and the backend that runs it; `segment` keeps no per-image state."""

    def __init__(self, model_dir: Path | None = None, backend: str = "auto", device: str = "auto",
                 batch: int | None = None, tile: int | None = None,
                 score_threshold: float | None = None, mask_threshold: float | None = None,
                 precision: str = "auto", threads: int | None = None, scale_estimate: str = "auto",
                 skip_data_bars: bool = True, scale_expiry: Expiry = NEVER, tta: bool = False, contrast: str = "normal"):
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        model, manifest = load_model(self.model_dir)
        if contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {CONTRASTS}, not {contrast!r}")
        if contrast == "inverted":  # images whose membranes are bright: normalised as their negative (normalize.py)
            manifest = manifest.replace(normalization=manifest.normalization.inverted())
        self.contrast = contrast
        if tile is not None and tile != manifest.tile:
            manifest = manifest.replace(tile=tile)
        # user overrides of the validation-chosen thresholds; run.json records the values used
        plain = manifest if score_threshold is None else manifest.replace(score_threshold=score_threshold)
        if tta and score_threshold is None and manifest.tta_score_threshold is not None:
            manifest = manifest.replace(score_threshold=manifest.tta_score_threshold)
        if score_threshold is not None:
            manifest = manifest.replace(score_threshold=score_threshold)
        if mask_threshold is not None:
            manifest = manifest.replace(mask_threshold=mask_threshold)
        # with TTA each view reports down to a fraction of the threshold: a fused score is a mean over views
        member = manifest.score_threshold * TTA_MEMBER_FRACTION if tta else None
        opts = BackendOptions(device=None if device == "auto" else device, batch=batch, threads=threads, precision=precision,
                              score_threshold=member)
        selection = select_backend(self.model_dir, backend, opts, model=model, manifest=manifest)
        if tile is not None and selection.backend.tile != tile:
            raise ValueError(f"backend {selection.backend.name} runs tiles of {selection.backend.tile} px fixed at export; "
                             f"--tile {tile} needs --backend torch")
        self.manifest: Manifest = manifest
        self.tta = tta
        self.probe_manifest = plain if mask_threshold is None else plain.replace(mask_threshold=mask_threshold)
        self.plain_backend = selection.backend  # the scale probe's under TTA
        self.backend = FlipTTA(selection.backend) if tta else selection.backend
        self.backend_reason = selection.reason + (f"; test-time augmentation: {len(FLIPS)} flips fused" if tta else "")
        self.backend_skipped = dict(selection.skipped)
        self.device = str(getattr(self.backend, "device", opts.device or "cpu"))
        self.weights_sha256 = weights_sha256(self.model_dir)
        if scale_estimate not in SCALE_ESTIMATE_MODES:
            raise ValueError(f"scale_estimate must be one of {SCALE_ESTIMATE_MODES}, not {scale_estimate!r}")
        self.scale_estimate = scale_estimate
        self.skip_data_bars = skip_data_bars  # segment only the specimen, not an instrument's data bar (content.py)
        # estimates shared by frames of one size, folder and instrument until `scale_expiry` (scale_memory)
        self.scale_estimates = ScaleMemory(scale_expiry)

    def factor_for(self, pixel_size_nm: PixelSize | float | None) -> tuple[float, float]:
        """(input pixel size used for scaling, factor): unknown sizes assume the manifest's default."""
        given = as_pixel_size(pixel_size_nm)
        px = given.nm if given is not None else self.manifest.default_input_pixel_size_nm
        return px, px / self.manifest.pixel_size_nm

    def _factor(self, size: PixelSize) -> float | tuple[float, float]:
        """Model px per input px: one number for square pixels, (rows, cols) otherwise."""
        m = self.manifest.pixel_size_nm
        return size.x_nm / m if size.is_square else (size.y_nm / m, size.x_nm / m)

    def segment(self, image: ImageData, pixel_size_nm: PixelSize | float | None) -> Segmentation:
        """Instances of one 2-D image (gray or RGB) at its full resolution.

        Non-square pixels are scaled along each axis by their own size, so the model sees square pixels.
        An image whose scaled copy would not fit in memory raises `scale_limit.ScaledImageTooLarge`."""
        m = self.manifest
        probe = _TimedBackend(self.plain_backend if self.tta else self.backend)  # one view is enough to compare scales
        timed = _TimedBackend(self.backend)
        t0 = time.perf_counter()
        given = as_pixel_size(pixel_size_nm)
        if given is not None:  # before the scale probe, which would segment such an image at its scale too
            check_scaled_size(image.array.shape[:2], self._factor(given), f"{given.describe()} ({given.source})",
                              m.pixel_size_nm)
        # the probe compares scales with one view at the plain threshold: the same estimate with or without TTA
        view = choose_view(image, pixel_size_nm, probe, self.probe_manifest, self.scale_estimate, self.skip_data_bars,
                           self.scale_estimates)
        array, box = view.array, view.content
        px, factor = self.factor_for(view.scaling_pixel_size_nm)
        if view.scaling is not None:  # (rows, cols): y and x each to the model's square pixel
            factor = self._factor(view.scaling)
        if view.scaling_source != "given":  # the default or an estimate: checked as what the model is shown
            check_scaled_size(array.shape[:2], factor, f"{px:.6g} nm ({view.scaling_source})", m.pixel_size_nm)
        scaled = preprocess(image.array, m.normalization, factor, box)
        t1 = time.perf_counter()
        instances = segment_scaled(timed, scaled, array.shape[:2], inverse(factor), m.overlap, m.score_threshold,
                                   m.mask_threshold)
        if box is not None:
            instances.offsets += np.array([box.top, box.left], np.int64)  # back to frame coordinates
        t2 = time.perf_counter()
        timings = {"scale": t1 - t0 - probe.seconds, "infer": timed.seconds + probe.seconds, "stitch": (t2 - t1) - timed.seconds}
        mean_factor = float(np.sqrt(np.prod(axis_factors(factor))))  # one number: geometric mean of the axes
        return Segmentation(instances, px, mean_factor, timings, view.scaling_source, view.estimate, view.estimated_from, box,
                            view.estimate_number, scaling=view.scaling)
