"""Runtime types <-> napari layer data: pixel size as `scale` (µm) and `units`, object rows as `features`.

No napari import: these are the (data, kwargs, type) tuples napari's readers return, and plain
lookups of a layer's metadata, so they are tested without a viewer.

- scale is (y, x) in µm per pixel (a stack: (1, y, x)), units ("µm", "µm"); an image without a
  pixel size gets scale 1 and units "pixel", as napari's default.
- `metadata["mitotally"]` keeps the exact calibration: `pixel_size` = [x_nm, y_nm, source] or None,
  `path`, `calibration_note`, and for results `key` and `output` (the mito-run output folder).
- features: one row per object, `index` = the label id (napari's key for Labels features), then
  `measure.OBJECT_COLUMNS` (None -> NaN, so the table and the status bar show numbers).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mitotally.runtime.image_io import ImageData
from mitotally.runtime.measure import OBJECT_COLUMNS
from mitotally.runtime.pixel_size import GIVEN, PixelSize

META = "mitotally"  # the key of our entry in a layer's metadata
UM = "µm"


def scale_of(pixel_size: PixelSize | None, ndim: int = 2) -> tuple[float, ...]:
    """(.., y, x) µm per pixel; 1 along axes without a calibration (and leading stack axes)."""
    lead = (1.0,) * (ndim - 2)
    if pixel_size is None:
        return lead + (1.0, 1.0)
    return lead + (pixel_size.y_nm / 1000.0, pixel_size.x_nm / 1000.0)


def units_of(pixel_size: PixelSize | None, ndim: int = 2) -> tuple[str, ...]:
    return ("pixel",) * (ndim - 2) + ((UM, UM) if pixel_size is not None else ("pixel", "pixel"))


def pixel_size_meta(pixel_size: PixelSize | None) -> list | None:
    return None if pixel_size is None else [pixel_size.x_nm, pixel_size.y_nm, pixel_size.source]


def image_meta(image: ImageData, **extra) -> dict:
    """Our metadata entry for a layer showing `image`."""
    return {META: {"path": str(image.path), "pixel_size": pixel_size_meta(image.pixel_size),
                   "calibration_note": image.calibration_note, **extra}}


def layer_pixel_size(metadata: dict, scale: Sequence[float], units: Sequence | None = None) -> PixelSize | None:
    """A layer's pixel size: our metadata's calibration if it has one, else its scale when its units are
    lengths (a layer from another reader, e.g. µm from a Fiji TIFF), else None (unknown)."""
    entry = (metadata or {}).get(META) or {}
    if entry.get("pixel_size"):
        x_nm, y_nm, source = entry["pixel_size"]
        return PixelSize(float(x_nm), float(y_nm), str(source))
    if units is None or len(scale) < 2:
        return None
    nm = [_unit_nm(u) for u in list(units)[-2:]]
    if None in nm:
        return None
    y_nm, x_nm = float(scale[-2]) * nm[0], float(scale[-1]) * nm[1]
    return PixelSize(x_nm, y_nm, GIVEN) if x_nm > 0 and y_nm > 0 else None


def _unit_nm(unit) -> float | None:
    """nm per `unit` (a pint unit or its name); None for pixels and non-lengths."""
    from mitotally.runtime.pixel_size import unit_to_nm

    text = str(unit)
    nm = unit_to_nm(text)
    if nm is not None:
        return nm
    try:  # pint's spelled-out names (micrometer, nanometer), as napari stores units
        import pint

        q = (1 * pint.Unit(text)).to("nm")
        return float(q.magnitude)
    except Exception:  # noqa: BLE001 - pixel, dimensionless, unknown: not a calibration
        return None


def features_of(rows: list[dict]) -> dict[str, np.ndarray]:
    """Labels-layer features: `index` (the label id) and every `measure.OBJECT_COLUMNS` column."""
    table = {"index": np.array([int(r["id"]) for r in rows], np.int64)}
    for col in OBJECT_COLUMNS:
        values = [r.get(col) for r in rows]
        if col == "touches_border":
            table[col] = np.array([bool(v) for v in values], bool)
        elif col in ("id", "area_px", "bbox_row0", "bbox_col0", "bbox_row1", "bbox_col1"):
            table[col] = np.array([int(v) for v in values], np.int64)
        else:
            table[col] = np.array([math.nan if v is None else float(v) for v in values], np.float64)
    return table


def image_layer(image: ImageData, name: str | None = None, data: np.ndarray | None = None, **extra) -> tuple:
    """(data, kwargs, "image") for `image` (or `data`, e.g. a stack of its planes) at its scale."""
    array = image.array if data is None else data
    rgb = array.ndim == 3 and array.shape[-1] == 3 and data is None
    ndim = array.ndim - (1 if rgb else 0)
    kwargs = {"name": name or Path(image.path).name, "scale": scale_of(image.pixel_size, ndim),
              "units": units_of(image.pixel_size, ndim), "metadata": image_meta(image, **extra), "rgb": rgb}
    return array, kwargs, "image"


def labels_layer(labels: np.ndarray, pixel_size: PixelSize | None, name: str, rows: list[dict] | None = None,
                 **meta) -> tuple:
    """(labels, kwargs, "labels") at `pixel_size`, with `rows` as features when given."""
    kwargs = {"name": name, "scale": scale_of(pixel_size, labels.ndim), "units": units_of(pixel_size, labels.ndim),
              "metadata": {META: {"pixel_size": pixel_size_meta(pixel_size), **meta}}}
    if rows is not None:
        kwargs["features"] = features_of(rows)
    return labels, kwargs, "labels"
