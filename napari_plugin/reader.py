"""The npe2 reader: what `mito-run` reads, at scale, and `mito-run`'s output folders as image + labels + table.

- An image file (`image_io.IMAGE_SUFFIXES`: TIFF with its calibration, PNG, JPEG, and Gatan DM3/DM4
  and MRC with the [em] extra) opens through `image_io.open_image`, so napari shows exactly what
  mito-run segments: the same planes, the same pixel size (scale in µm, see `layers`). A stack opens
  as one (z, y, x) layer.
- A mito-run output folder (one with `records/`) opens, per finished input, its image (from the
  path its record names, when that file is still there) and `labels/<name>.tif`, at the pixel size the
  measurements used (images.csv's), with the record's objects.csv rows as the Labels layer's features
  (single-plane inputs; a stack's ids restart on each plane, so its table stays in objects.csv).
- A single record, `records/<key>.json`, opens that one input the same way.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mitotally.runtime.image_io import IMAGE_SUFFIXES, ImageReadError, open_image
from mitotally.runtime.pipeline import output_paths
from mitotally.runtime.pixel_size import PixelSize
from mitotally.runtime.results import ImageResult
from mitotally.runtime.writers.tables import RECORDS, iter_records

from .layers import META, image_layer, labels_layer, pixel_size_meta, scale_of, units_of

LayerData = tuple  # (data, kwargs, layer type), as napari's readers return


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader contribution: a function for paths this plugin opens, else None (napari asks another)."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths:
        return None
    if all(_is_image(p) for p in paths):
        return read_images
    if len(paths) == 1 and (is_output_folder(Path(paths[0])) or _is_record(Path(paths[0]))):
        return read_output
    return None


def _is_image(path: str) -> bool:
    p = Path(path)
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()


def _is_record(path: Path) -> bool:
    return path.suffix.lower() == ".json" and RECORDS in path.parts[:-1] and path.is_file()


def is_output_folder(path: Path) -> bool:
    """A mito-run output folder: it has `records/` (one JSON per input, the unit of truth of a run)."""
    return path.is_dir() and (path / RECORDS).is_dir()


def read_images(path: str | list[str]) -> list[LayerData]:
    """One image layer per file, at the file's pixel size; `ImageReadError` (one line) if a file is unusable."""
    paths = [path] if isinstance(path, str) else list(path)
    return [read_image_layer(Path(p)) for p in paths]


def read_image_layer(path: Path) -> LayerData:
    with open_image(path) as source:
        first = source.read(0)
        if source.n_planes == 1:
            return image_layer(first)
        planes = [first.array] + [source.read(i).array for i in range(1, source.n_planes)]
        return image_layer(first, data=np.stack(planes))


def read_output(path: str | list[str]) -> list[LayerData]:
    """Image + labels (+ features) of every finished input in a mito-run output folder, or of one record."""
    p = Path(path if isinstance(path, str) else path[0])
    if p.is_dir():
        out, records = p, [r for r in iter_records(p) if r.ok]
    else:
        out = _output_of(p)
        records = [ImageResult.from_record(json.loads(p.read_text(encoding="utf-8")))]
    layers: list[LayerData] = []
    for rec in records:
        layers += result_layers(out, rec)
    return layers


def _output_of(record: Path) -> Path:
    for parent in record.parents:
        if parent.name == RECORDS:
            return parent.parent
    raise ValueError(f"{record}: not inside a mito-run output folder's {RECORDS}/")


def measured_pixel_size(rec: ImageResult) -> PixelSize | None:
    """The pixel size the record's measurements used (images.csv's pixel_size_x/y_nm and source)."""
    row = rec.image_rows[0] if rec.image_rows else {}
    x_nm, y_nm = row.get("pixel_size_x_nm") or row.get("pixel_size_nm"), row.get("pixel_size_y_nm") or row.get("pixel_size_nm")
    if not x_nm or not y_nm:
        return None
    return PixelSize(float(x_nm), float(y_nm), str(row.get("pixel_size_source") or "given"))


def result_layers(out: Path, rec: ImageResult) -> list[LayerData]:
    """The input's image (if its file is still there) and its label image, at the measured pixel size."""
    px = measured_pixel_size(rec)
    layers: list[LayerData] = []
    image_path = Path(rec.path)
    if image_path.is_file():
        try:
            data, kwargs, kind = read_image_layer(image_path)
        except ImageReadError:
            pass  # the labels still open; the image moved or changed
        else:
            ndim = data.ndim - (1 if kwargs["rgb"] else 0)
            kwargs.update(name=rec.key, scale=scale_of(px, ndim), units=units_of(px, ndim))
            kwargs["metadata"][META].update(pixel_size=pixel_size_meta(px), key=rec.key, output=str(out))
            layers.append((data, kwargs, kind))
    n_planes = max(rec.planes, 1)
    labels_path = out / output_paths(rec.name, rec.key, n_planes)["labels"][0]
    if labels_path.is_file():
        with open_image(labels_path) as source:
            planes = [source.read(i).array for i in range(source.n_planes)]
        labels = planes[0] if len(planes) == 1 else np.stack(planes)
        rows = [r for r in rec.object_rows if r.get("plane") in (1, None)] if labels.ndim == 2 else None
        layers.append(labels_layer(np.asarray(labels), px, f"{rec.key} mitochondria", rows, key=rec.key,
                                   output=str(out), image=str(image_path)))
    return layers
