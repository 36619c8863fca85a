"""Segment one image or a folder the way mito-run does, cancellably and with progress; no Qt here.

One image: `pipeline.segment_image` (the model, as `process_file` segments a plane) then
`pipeline.measure_plane` (the one painting rule, then `measure.measure_instances`), so a Labels layer
holds exactly the objects and rows mito-run would write for the same image and settings. A folder:
`pipeline.run`, mito-run's own loop and output contract.

Cancel and progress reach inside the model run through a wrapper around the backend (`_Watched`):
it counts tiles and raises `Cancelled` before the next batch of tiles once Cancel is pressed.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mitotally.runtime.image_io import IMAGE_SUFFIXES, ImageData
from mitotally.runtime.pipeline import Measured, RunConfig, RunSummary, measure_plane, run, segment_image
from mitotally.runtime.reader import discover_inputs
from mitotally.runtime.results import ImageResult
from mitotally.runtime.segmenter import Segmenter


class Cancelled(BaseException):
    """The user pressed Cancel.

    A BaseException, as KeyboardInterrupt is, so the pipeline's per-input `except Exception` (one bad
    input must not stop a run) does not record it as a failed input: `run` stops, still rebuilds its
    tables (its `finally`), and a rerun into the same folder redoes the cancelled input.
    """


@dataclass(frozen=True)
class SegmentSettings:
    """The model and how to run it; None: the model's own value (the shipped model when `model_dir` is None)."""

    model_dir: Path | None = None
    backend: str = "auto"
    device: str = "auto"
    score_threshold: float | None = None
    mask_threshold: float | None = None
    tta: bool = False  # mito-run --tta

    def config(self, pixel_size_nm: float | None = None, **changes) -> RunConfig:
        """mito-run's config for these settings; `pixel_size_nm` overrides every image's own (--pixel-size)."""
        return RunConfig(model_dir=self.model_dir, backend=self.backend, device=self.device, pixel_size_nm=pixel_size_nm,
                         score_threshold=self.score_threshold, mask_threshold=self.mask_threshold, tta=self.tta, **changes)


class Control:
    """The job in flight: its Cancel flag and where tile counts go (called on the worker thread)."""

    def __init__(self, on_tiles: Callable[[int], None] | None = None):
        self.cancel = threading.Event()
        self.on_tiles = on_tiles
        self.tiles = 0

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()


class _Watched:
    """A backend whose `infer` reports tiles to, and stops for, the current `Control`."""

    def __init__(self, backend):
        self.inner, self.control = backend, None
        self.name, self.tile, self.batch = backend.name, backend.tile, backend.batch

    def __getattr__(self, name):  # precision, device, tiles_per_call, ... as the backend has them
        return getattr(self.inner, name)

    def infer(self, tiles, box_filters=None):
        control = self.control
        if control is not None:
            control.check()
        out = self.inner.infer(tiles, box_filters)
        if control is not None:
            control.tiles += len(tiles)
            if control.on_tiles is not None:
                control.on_tiles(control.tiles)
        return out


class Models:
    """Segmenters loaded once per settings: loading a model and starting its backend takes seconds."""

    def __init__(self):
        self._loaded: dict[SegmentSettings, Segmenter] = {}

    def get(self, settings: SegmentSettings, control: Control | None = None) -> Segmenter:
        segmenter = self._loaded.get(settings)
        if segmenter is None:
            segmenter = Segmenter(settings.model_dir, backend=settings.backend, device=settings.device,
                                  score_threshold=settings.score_threshold, mask_threshold=settings.mask_threshold,
                                  tta=settings.tta)
            segmenter.backend = _Watched(segmenter.backend)
            segmenter.plain_backend = _Watched(segmenter.plain_backend)  # the scale probe's under TTA
            self._loaded[settings] = segmenter
        segmenter.backend.control = segmenter.plain_backend.control = control
        return segmenter

    def is_loaded(self, settings: SegmentSettings) -> bool:
        return settings in self._loaded

    def forget(self) -> None:
        """Drop every loaded model (e.g. after fine-tuning wrote a new one into a folder in use)."""
        self._loaded.clear()


@dataclass
class Result:
    """One image segmented in the viewer, and what exporting or training on its (corrected) labels needs."""

    key: str  # images.csv's `image` and the record's name: the file's name, as `mito-run FILE` keys it
    image: ImageData
    settings: SegmentSettings
    pixel_size_nm: float | None  # the override typed in the widget (None: the image's own calibration)
    segmented: object  # pipeline's segmented plane (`segment_image`), labels not given
    measured: Measured
    warnings: list[str] = field(default_factory=list)

    @property
    def scores(self) -> dict[int, float]:
        """The model's score of each label id it wrote."""
        return {k + 1: float(s) for k, s in enumerate(self.measured.visible.scores)}

    def corrected(self, labels: np.ndarray):
        """The segmented plane with `labels` (edited in the viewer) given instead of the model's painting:
        renumbered 1..N in the order of their ids, each keeping the model's score if the model wrote it."""
        from skimage.segmentation import relabel_sequential

        labels = np.asarray(labels)
        if labels.shape != self.image.array.shape[:2]:
            raise ValueError(f"labels {labels.shape} differ from the image's {self.image.array.shape[:2]}")
        relabelled, forward, _ = relabel_sequential(labels)
        old = self.scores
        ids = np.unique(labels)
        scores = {int(forward[i]): old[int(i)] for i in ids if i and int(i) in old}
        return replace(self.segmented, labels=relabelled, scores=scores)


def segment_one(image: ImageData, key: str, settings: SegmentSettings, pixel_size_nm: float | None, models: Models,
                control: Control) -> Result:
    """Segment and measure one 2-D image exactly as `mito-run` would (see the module doc)."""
    segmenter = models.get(settings, control)
    config = settings.config(pixel_size_nm)
    control.check()
    segmented = segment_image(image, segmenter, config)
    control.check()
    measured = measure_plane(segmented)
    px = segmented.px
    warnings = segmented.seg.warnings(px.nm if px else None, segmented.source)
    return Result(key, image, settings, pixel_size_nm, segmented, measured, warnings)


def segment_folder(folder: Path, out: Path, settings: SegmentSettings, models: Models, control: Control,
                   recursive: bool = False, pixel_size_nm: float | None = None,
                   on_result: Callable[[ImageResult, int, int], None] | None = None) -> RunSummary:
    """`mito-run FOLDER -o OUT` (reruns skip finished images); `on_result(result, done, total)` after each input."""
    out = Path(out)
    items = discover_inputs([Path(folder)], recursive=recursive, exclude=out)
    if not items:
        raise FileNotFoundError(f"no images ({' '.join(IMAGE_SUFFIXES)}) in {folder}"
                                + ("" if recursive else " (tick subfolders to search them)"))
    out.mkdir(parents=True, exist_ok=True)
    segmenter = models.get(settings, control)
    done = 0

    def report(result: ImageResult) -> None:
        nonlocal done
        done += 1
        if on_result is not None:
            on_result(result, done, len(items))
        control.check()

    return run(items, segmenter, out, settings.config(pixel_size_nm, overwrite=False, quiet=True), on_result=report)
