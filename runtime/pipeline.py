"""`mito-run`'s one way through the code: read -> scale -> tile -> infer -> stitch -> measure -> write.

Only this module knows the order. Per input file (`process_file`):
segment every plane (`Segmenter`), paint the instances into a label image
(`instances.paint_instances`, the rule every output follows: the higher score
wins, one connected piece per object, ids in reading order), measure
the label image (`measure`), and write `labels/<name>.tif`,
`rois/<name>.zip`, `overlays/<name>.png` and finally `records/<key>.json`,
each atomically (`<name>`: the key's stem, unique in the output folder; see `names`). `run` does that for many inputs with decoding read ahead in
worker threads and measuring + writing of one input overlapped with the
model on the next, skips inputs whose record says they are done, and rebuilds
the tables and `run.json` at the end (also when interrupted).
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .image_io import ImageData, ImageReadError
from .instances import Instances, paint_instances
from .measure import measure_instances, summarize_image
from .names import OutputNames, stem_name
from .pixel_size import NONE, OPTION, PixelSize
from .reader import Decoded, InputItem, decode, read_ahead
from .results import FAILED, OK, ImageResult, failed
from .segmenter import Segmentation, Segmenter
from .writers import atomic_write_bytes
from .writers.atomic import remove_stale_temps
from .writers.coco import annotations
from .writers.labels import write_labels
from .writers.overlay import render_overlay
from .writers.rois import instance_rois, write_rois
from .writers.run_info import write_run_json
from .writers.tables import read_record, rebuild_tables, record_path, write_record

STAGES = ("read", "scale", "infer", "stitch", "measure", "write")
# Temp files of interrupted writes this old are removed when a run starts (a live write is never this old;
# mito-watch, which locks its folder, removes them all at once)
STALE_TEMP_S = 3600.0


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on besides its inputs; written to run.json."""

    model_dir: Path | None = None  # None: the model shipped in the package
    backend: str = "auto"  # auto | torch | onnxruntime | tensorrt
    precision: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | int8 (onnxruntime on CPU, mito-export --int8)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    pixel_size_nm: float | None = None  # overrides every file's metadata
    batch: int | None = None  # tiles per inference call (None: the backend's default)
    tile: int | None = None  # tile side in model pixels (None: the manifest's)
    score_threshold: float | None = None  # None: the manifest's
    mask_threshold: float | None = None  # None: the manifest's
    overwrite: bool = False  # redo inputs that already have a finished record
    recursive: bool = False  # search subfolders of folder INPUTs
    quiet: bool = False  # no progress bar or summary (errors and warnings still print)
    read_ahead: int = 2  # inputs decoded ahead of inference (memory: this many decoded images)
    read_workers: int = 2  # decoding threads
    threads: int | None = None  # torch CPU threads (None: torch's default)
    overlays: bool = True  # write overlays/<name>.png
    scale_estimate: str = "auto"  # auto | always | off: see scale_probe.SCALE_ESTIMATE_MODES
    skip_data_bars: bool = True  # segment and measure only the specimen, not a flat data bar along an edge
    overlap_writes: bool = True  # measure + write an input on a worker thread while the model runs on the next
    contrast: str = "normal"  # normal (membranes dark) | inverted (membranes bright): see segmenter.CONTRASTS
    tta: bool = False  # test-time augmentation: each tile also seen flipped 3 ways, detections fused (4 trunk passes: ~2.5x the frame time on a CPU)


def output_paths(name: str, key: str, n_planes: int = 1) -> dict[str, list[str]]:
    """Where the outputs of input `key`, named `name`, go, relative to the output folder."""
    overlays = [f"overlays/{name}.png"] if n_planes <= 1 else [f"overlays/{name}.z{i + 1:04d}.png" for i in range(n_planes)]
    return {"labels": [f"labels/{name}.tif"], "rois": [f"rois/{name}.zip"], "overlays": overlays, "record": [f"records/{key}.json"]}


def _clean(value):
    """NaN -> None so records are strict JSON and CSV cells are empty, not 'nan'."""
    return None if isinstance(value, float) and math.isnan(value) else value


@dataclass
class _Plane:
    instances: Instances  # visible parts, ids 1..N
    shape: tuple[int, int]
    labels: np.ndarray | None  # kept for single-plane inputs; a stack's planes are repainted when written

    def label_image(self) -> np.ndarray:
        if self.labels is not None:
            return self.labels
        return self.instances.to_label_image(self.shape)  # kept pieces repaint to the same ids


@dataclass
class _Timer:
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, stage: str, seconds: float) -> None:
        self.totals[stage] = self.totals.get(stage, 0.0) + seconds


def resolve_pixel_size(image: ImageData, override_nm: float | None) -> tuple[PixelSize | None, str]:
    """(pixel size for measurements, where it came from): the option, else the file's (`pixel_size.SOURCES`),
    else none."""
    if override_nm:
        return PixelSize.square(override_nm, OPTION), OPTION
    if image.pixel_size is not None:
        return image.pixel_size, image.pixel_size.source
    return None, NONE


@dataclass
class _Segmented:
    """One plane after the model, before measuring and writing."""

    image: ImageData
    px: PixelSize | None  # pixel size for measurements (None: unknown)
    source: str  # where `px` came from: `pixel_size.SOURCES`
    seg: Segmentation
    labels: np.ndarray | None = None  # given instead of painting seg's instances (corrected by hand): ids 1..N
    scores: dict[int, float] | None = None  # the model's score of each given label id (others: NaN)


def _segment_plane(image: ImageData, segmenter: Segmenter, config: RunConfig, timer: _Timer) -> _Segmented:
    px, source = resolve_pixel_size(image, config.pixel_size_nm)
    seg = segmenter.segment(image, px)
    for stage, s in seg.timings.items():
        timer.add(stage, s)
    return _Segmented(image, px, source, seg)


def segment_image(image: ImageData, segmenter: Segmenter, config: RunConfig) -> _Segmented:
    """One 2-D image through the model as `process_file` segments it; nothing measured or written yet.

    For callers that show or correct a result before writing it (the napari plugin): `measure_plane`
    gives its labels and rows, `process_segmented` writes its outputs (given labels set on it, if any)."""
    return _segment_plane(image, segmenter, config, _Timer())


@dataclass
class Measured:
    """One plane's objects as every output describes them."""

    labels: np.ndarray  # HxW label image, ids 1..N, 0 = background
    visible: Instances  # visible[k] holds exactly the pixels of label k + 1, with its score
    rows: list[dict]  # `measure.OBJECT_COLUMNS`, one per id, ascending
    summary: dict  # `measure.IMAGE_COLUMNS`, over the specimen region when a data bar was left out


def measure_plane(segmented: _Segmented) -> Measured:
    """Paint the instances by the one rule (`paint_instances`), or take the given labels as they are, and measure."""
    image, px, seg = segmented.image, segmented.px, segmented.seg
    shape = image.array.shape[:2]
    if segmented.labels is None:
        painted = paint_instances(seg.instances, shape)  # the one rule every output follows
        labels, visible = painted.labels, painted.visible
    else:
        labels = np.asarray(segmented.labels)
        if labels.shape != shape:
            raise ValueError(f"given labels {labels.shape} differ from the image's {shape}")
        given = segmented.scores or {}
        ids = np.unique(labels)
        ids = ids[ids != 0]
        if len(ids) and ids[-1] != len(ids):
            raise ValueError("given labels must be numbered 1..N (skimage.segmentation.relabel_sequential)")
        visible = Instances.from_label_image(labels, np.array([given.get(int(i), math.nan) for i in ids], np.float32))
    scores = {k + 1: float(s) for k, s in enumerate(visible.scores)}
    box = seg.content  # None: the whole frame is specimen
    view = None if box is None else (box.top, box.left, box.bottom, box.right)
    rows = measure_instances(labels, image.array, px, scores, view) if len(visible) else []
    return Measured(labels, visible, rows, summarize_image(rows, shape if box is None else box.content_shape, px))


def _measure_plane(decoded: Decoded, index: int, segmented: _Segmented, config: RunConfig, out_dir: Path,
                   timer: _Timer, result: ImageResult) -> _Plane:
    """Paint, measure and write one segmented plane (no model: may run off the main thread)."""
    image, px, source, seg = segmented.image, segmented.px, segmented.source, segmented.seg
    t0 = time.perf_counter()
    shape = image.array.shape[:2]
    measured = measure_plane(segmented)  # every output below describes these objects
    labels, visible, rows, summary = measured.labels, measured.visible, measured.rows, measured.summary
    ids, scores = np.arange(1, len(visible) + 1), visible.scores
    plane = index + 1
    result.object_rows += [{"image": decoded.item.key, "plane": plane, **{k: _clean(v) for k, v in r.items()}} for r in rows]
    t1 = time.perf_counter()
    timer.add("measure", t1 - t0)
    anns = annotations(visible.offsets, visible.masks, ids, scores, shape)
    result.annotations += [{**a, "plane": plane} for a in anns]
    if config.overlays:
        name = output_paths(decoded.item.name, decoded.item.key, decoded.n_planes)["overlays"][index]
        atomic_write_bytes(out_dir / name, render_overlay(image.array, labels))
        result.outputs.append(name)
    note = "" if source == OPTION else image.calibration_note  # the option overrides whatever the file said
    result.warnings += seg.warnings(px.nm if px else None, source, note or "no pixel size in the file")
    if note and px is not None:  # calibrated, but a source was passed over: say which
        result.warnings.append(note)
    result.image_rows.append({
        "image": decoded.item.key, "plane": plane, "status": OK, "error": "", "width": shape[1], "height": shape[0],
        "pixel_size_nm": px.nm if px else None, "pixel_size_x_nm": px.x_nm if px else None,
        "pixel_size_y_nm": px.y_nm if px else None, "pixel_size_source": source, "pixel_size_note": note,
        "scaling_pixel_size_nm": seg.scaling_pixel_size_nm,
        "scaling_source": seg.reported_scaling_source(source), "scale_estimate": seg.estimate_number,
        "path": str(decoded.item.path), **{k: _clean(v) for k, v in summary.items()},
    })
    timer.add("write", time.perf_counter() - t1)
    return _Plane(visible, shape, labels if decoded.n_planes == 1 else None)


def _source_info(path: Path, extra: dict | None) -> dict:
    try:
        st = path.stat()
        info = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        info = {}
    return {**info, **(extra or {})}


def _remove_outputs(out_dir: Path, name: str, n_planes: int) -> None:
    """Best effort: a failed input must not leave outputs from this or an earlier attempt behind."""
    names = [n for k, v in output_paths(name, "", n_planes).items() if k != "record" for n in v]
    for name in names:
        try:
            (out_dir / name).unlink(missing_ok=True)
        except OSError:
            pass


@dataclass
class _Job:
    """One input between the model (main thread) and measuring + writing (which may run on a worker thread).

    A single-plane input is segmented by `_start` (`first`); a stack's planes are segmented and measured
    one at a time by `_complete`, which then needs the model and must run on the main thread.
    """

    decoded: Decoded
    out_dir: Path
    config: RunConfig
    timer: _Timer
    result: ImageResult
    first: _Segmented | None = None
    done: ImageResult | None = None  # final already: unreadable input, or a failure while segmenting

    @property
    def needs_model(self) -> bool:
        return self.done is None and self.first is None


def _failure(job: _Job, exc: Exception, planes_done: int) -> ImageResult:
    """The failed result for an exception while processing `job` (one bad input must not stop a run)."""
    key, path, out_dir = job.decoded.item.key, str(job.decoded.item.path), job.out_dir
    info, totals, name = job.result.source, job.timer.totals, job.decoded.item.name
    if isinstance(exc, ImageReadError):
        where = f"plane {planes_done + 1}: " if job.decoded.n_planes > 1 else ""
        return failed(key, path, f"{where}{exc}", totals, info, name)
    if isinstance(exc, OSError):
        return failed(key, path, f"cannot write outputs: {exc.strerror or exc}: {exc.filename or out_dir}", totals, info, name)
    if isinstance(exc, MemoryError):
        return failed(key, path, "not enough memory to process this image", totals, info, name)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return failed(key, path, f"cannot process: {type(exc).__name__}: {text}", totals, info, name)


def _start(decoded: Decoded, segmenter: Segmenter | None, out_dir: Path, config: RunConfig, source: dict | None = None,
           segmented: _Segmented | None = None) -> _Job:
    """Run the model on a single-plane input (a stack waits for `_complete`), unless it was `segmented` already;
    unreadable inputs are final here."""
    key, path = decoded.item.key, decoded.item.path
    timer = _Timer()
    timer.add("read", decoded.read_s)
    info = _source_info(path, source)
    job = _Job(decoded, Path(out_dir), config, timer, ImageResult(key, str(path), source=info, name=decoded.item.name))
    if decoded.error is not None:
        job.done = _finish(job.out_dir, failed(key, str(path), decoded.error, timer.totals, info, decoded.item.name), decoded)
    elif segmented is not None:
        for stage, s in segmented.seg.timings.items():
            timer.add(stage, s)
        job.first = segmented
    elif decoded.n_planes == 1:
        try:
            image, _ = next(iter(decoded.planes()))
            job.first = _segment_plane(image, segmenter, config, timer)
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop a run of thousands
            job.done = _done(job, _failure(job, exc, 0))
    return job


def _done(job: _Job, result: ImageResult) -> ImageResult:
    result.timings = dict(job.timer.totals)
    for row in result.image_rows:
        row["time_s"] = round(sum(job.timer.totals.values()), 4)
    return _finish(job.out_dir, result, job.decoded)


def _complete(job: _Job, segmenter: Segmenter | None = None) -> ImageResult:
    """Measure and write every plane of `job` (segmenting a stack's planes first); always records a result."""
    if job.done is not None:
        return job.done
    decoded, out_dir, config, timer, result = job.decoded, job.out_dir, job.config, job.timer, job.result
    key = decoded.item.key
    planes: list[_Plane] = []
    try:
        if job.first is not None:
            planes.append(_measure_plane(decoded, 0, job.first, config, out_dir, timer, result))
            job.first = None  # its image and masks can go
        else:
            if segmenter is None:
                raise RuntimeError("a stack's planes need the model: complete it on the main thread")
            for index, (image, read_s) in enumerate(decoded.planes()):
                if index:
                    timer.add("read", read_s)
                planes.append(_measure_plane(decoded, index, _segment_plane(image, segmenter, config, timer), config,
                                             out_dir, timer, result))
        t0 = time.perf_counter()
        names = output_paths(decoded.item.name, key, decoded.n_planes)
        max_id = max((len(p.instances) for p in planes), default=0)
        row = result.image_rows[0]
        pixel_size = (row["pixel_size_x_nm"], row["pixel_size_y_nm"]) if row["pixel_size_nm"] else None
        write_labels(out_dir / names["labels"][0], (p.label_image() for p in planes),
                     planes[0].shape, len(planes), max_id, pixel_size)
        rois = [r for i, p in enumerate(planes)
                for r in instance_rois(p.instances.offsets, p.instances.masks, range(1, len(p.instances) + 1),
                                       plane=i if len(planes) > 1 else None)]
        write_rois(out_dir / names["rois"][0], rois)
        result.outputs = names["labels"] + names["rois"] + result.outputs + names["record"]
        result.planes = len(planes)
        timer.add("write", time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - one bad input must not stop a run of thousands
        result = _failure(job, exc, len(planes))
    return _done(job, result)


def process_decoded(decoded: Decoded, segmenter: Segmenter, out_dir: Path, config: RunConfig,
                    source: dict | None = None) -> ImageResult:
    """Segment, measure and write every plane of one decoded input; always returns (and records) a result."""
    return _complete(_start(decoded, segmenter, out_dir, config, source), segmenter)


def process_segmented(decoded: Decoded, segmented: _Segmented, out_dir: Path, config: RunConfig) -> ImageResult:
    """Measure and write a single-plane input that `segment_image` segmented (its labels perhaps corrected),
    exactly as `process_decoded` would; always returns (and records) a result."""
    if decoded.error is None and decoded.n_planes != 1:
        raise ValueError(f"{decoded.item.key}: {decoded.n_planes} planes; process_segmented takes single-plane inputs")
    return _complete(_start(decoded, None, out_dir, config, segmented=segmented))


def _finish(out_dir: Path, result: ImageResult, decoded: Decoded) -> ImageResult:
    decoded.close()
    if not result.ok:
        _remove_outputs(out_dir, result.name, max(decoded.n_planes, 1))
    try:
        write_record(out_dir, result)
    except OSError as exc:  # the output folder went away or filled up: report, keep going
        result.status, result.error = FAILED, f"cannot write record: {exc.strerror or exc}: {exc.filename or out_dir}"
        for row in result.image_rows:
            row.update(status=FAILED, error=result.error)
    return result


def process_file(path: Path, segmenter: Segmenter, out_dir: Path, key: str, config: RunConfig | None = None,
                 source: dict | None = None, name: str = "") -> ImageResult:
    """Read, segment, measure and write one input file under `out_dir`: record by `key` (see `reader`),
    outputs by `name` (default: the key's stem; `run` and the watcher make it unique, see `names`).

    Never raises for a bad input: the result (and `records/<key>.json`) says failed and why.
    `source` adds caller keys (e.g. the watcher's sha256) to the record's `source`.
    """
    return process_decoded(decode(InputItem(Path(path), key, name)), segmenter, out_dir, config or RunConfig(), source)


def write_failure(out_dir: Path, key: str, path: Path, error: str, source: dict | None = None, name: str = "") -> ImageResult:
    """Record an input as failed without reading it (e.g. it changed while being processed)."""
    name = name or stem_name(key)
    result = failed(key, str(path), error, source=_source_info(Path(path), source), name=name)
    _remove_outputs(Path(out_dir), name, 1)
    write_record(out_dir, result)
    return result


def finished_result(out_dir: Path, key: str) -> ImageResult | None:
    """The record of `key` if it finished successfully (then a rerun skips the input)."""
    rec = read_record(out_dir, key)
    return rec if rec is not None and rec.ok else None


@dataclass
class RunSummary:
    results: list[ImageResult]
    timings: dict[str, float]  # seconds per stage, summed over processed inputs
    wall_s: float
    interrupted: bool = False
    table_error: str = ""  # set when the tables or run.json could not be written (per-image outputs are intact)

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.results if not r.ok]

    @property
    def n_objects(self) -> int:
        return sum(r.n_objects for r in self.results)


class RunTally:
    """What every way of running shares: output names handed out against the records in `out_dir`, finished
    inputs reported as skipped (unless `overwrite`), results in the order they are reported, stage totals."""

    def __init__(self, items: Sequence[InputItem], out_dir: Path, overwrite: bool,
                 on_result: Callable[[ImageResult], None] | None = None):
        names = OutputNames.of_folder(out_dir).assign(item.key for item in items)
        self.t0 = time.perf_counter()
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.results: list[ImageResult] = []
        self.todo: list[InputItem] = []
        self._on_result = on_result
        for item in (replace(item, name=names[item.key]) for item in items):
            done = None if overwrite else finished_result(out_dir, item.key)
            if done is None:
                self.todo.append(item)
            else:
                done.skipped = True
                self._report(done)

    def collect(self, result: ImageResult) -> None:
        for k, v in result.timings.items():
            self.totals[k] = self.totals.get(k, 0.0) + v
        self._report(result)

    def summary(self, interrupted: bool) -> RunSummary:
        return RunSummary(self.results, self.totals, time.perf_counter() - self.t0, interrupted)

    def _report(self, result: ImageResult) -> None:
        self.results.append(result)
        if self._on_result:
            self._on_result(result)


def run(items: Sequence[InputItem], segmenter: Segmenter, out_dir: Path, config: RunConfig,
        on_result: Callable[[ImageResult], None] | None = None) -> RunSummary:
    """Process `items` in order (finished ones skipped unless `overwrite`), then rebuild the tables.

    Output names are handed out here, against the names the records in `out_dir` already hold.
    """
    out_dir = Path(out_dir)
    remove_stale_temps(out_dir, older_than_s=STALE_TEMP_S)
    tally = RunTally(items, out_dir, config.overwrite, on_result)
    todo, collect = tally.todo, tally.collect
    interrupted = False

    # The model runs here, on the main thread; measuring and writing an input runs on a worker thread
    # while the model segments the next one. At most one input waits for the writer, results come back
    # in input order, and a stack (whose planes need the model) drains the writer and completes here.
    writing: deque[Future[ImageResult]] = deque()

    def collect_oldest() -> None:
        result = writing[0].result()  # dequeued only once its result is in: a Ctrl-C while waiting loses nothing
        writing.popleft()
        collect(result)

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mito-write") as writer:
            try:
                for decoded in read_ahead(todo, depth=config.read_ahead, workers=config.read_workers):
                    job = _start(decoded, segmenter, out_dir, config)
                    if job.needs_model or not config.overlap_writes:
                        while writing:
                            collect_oldest()
                        collect(_complete(job, segmenter))
                        continue
                    writing.append(writer.submit(_complete, job))
                    while len(writing) > 1:
                        collect_oldest()
            finally:  # also on Ctrl-C: what was handed to the writer is finished and reported
                while writing:
                    collect_oldest()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        summary = tally.summary(interrupted)
        try:
            rebuild_tables(out_dir)
            write_run_json(out_dir, segmenter, config, summary)
        except OSError as exc:  # e.g. the disk filled up: the records are intact, a rerun rebuilds the tables
            summary.table_error = f"cannot write the tables in {out_dir}: {exc.strerror or exc}"
    return summary


__all__ = ["RunConfig", "Segmenter", "process_file", "process_decoded", "segment_image", "measure_plane", "Measured",
           "process_segmented", "rebuild_tables", "run", "RunSummary", "RunTally",
           "write_failure", "finished_result", "output_paths", "record_path", "STAGES"]
