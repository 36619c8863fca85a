"""A result in the viewer (its labels edited or not) -> mito-run's output contract in a folder.

Written by the pipeline itself (`pipeline.process_segmented`, then `tables.rebuild_tables` and
`run_info.write_run_json`), so the folder holds what `mito-run FILE -o OUT` writes for the image:
labels/<name>.tif, rois/<name>.zip, overlays/<name>.png, records/<key>.json, objects.csv,
images.csv, predictions.json and run.json. Several results exported into one folder share its tables,
as mito-run's inputs do, and `mito-run` reruns into it skip them.

The Labels layer's ids are what is measured and written, renumbered 1..N if the user's edits left
gaps (the caller updates the layer to match: `Exported.labels`). The input is the image's file when
it is a single-plane file whose pixels are the layer's; otherwise (a stack's plane, a layer edited or
made in the viewer) the image is written beside the results as `images/<name>.tif`, calibrated, and
the record names that file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mitotally.runtime.names import OutputNames
from mitotally.runtime.pipeline import RunSummary, process_segmented
from mitotally.runtime.reader import Decoded, InputItem, decode
from mitotally.runtime.results import ImageResult
from mitotally.runtime.segmenter import Segmenter
from mitotally.runtime.writers.run_info import write_run_json
from mitotally.runtime.writers.tables import rebuild_tables

from .image_tiff import write_image_tiff
from .segmenting import Result


@dataclass
class Exported:
    record: ImageResult  # as written to records/<key>.json (object rows, outputs, warnings)
    labels: np.ndarray  # the label image written (ids 1..N)
    out: Path


def _input(result: Result, out: Path, name: str) -> Decoded:
    """The input as mito-run would decode it: the image's own file if it holds exactly the layer's pixels."""
    path = Path(result.image.path)
    if path.is_file():
        decoded = decode(InputItem(path, result.key, name))
        ok = decoded.error is None and decoded.n_planes == 1 and np.array_equal(decoded.first.array, result.image.array)
        if ok:
            return decoded
        decoded.close()
    copy = write_image_tiff(out / "images" / f"{name}.tif", result.image.array, result.image.pixel_size)
    return decode(InputItem(copy, result.key, name))


def export_result(result: Result, labels: np.ndarray, out: Path, segmenter: Segmenter) -> Exported:
    """Write `result` with `labels` (the Labels layer's data) into `out` as mito-run would; see the module doc."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = OutputNames.of_folder(out).assign([result.key])[result.key]
    config = result.settings.config(result.pixel_size_nm, overwrite=True)
    segmented = result.corrected(labels)
    record = process_segmented(_input(result, out, name), segmented, out, config)
    if not record.ok:
        raise OSError(f"cannot export {result.key}: {record.error}")
    rebuild_tables(out)
    write_run_json(out, segmenter, config, RunSummary([record], dict(record.timings), sum(record.timings.values())))
    return Exported(record, segmented.labels, out)
