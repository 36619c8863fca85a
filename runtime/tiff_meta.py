"""TIFF planes and pixel size from ImageJ, OME or plain resolution tags.

A *stack* is a TIFF whose first series (tifffile's notion: pages of one shape
and type) has more than one page: a z-stack, a time series or a plain
multi-page file. Each page is one 2-D plane (gray, or RGB with its samples).
Other series (thumbnails, previews, reduced-resolution levels) are ignored.
`read_tiff` returns the first plane; `TiffPlanes` reads the planes one at a
time so a stack never has to fit in memory.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def read_tiff(path: Path) -> tuple[np.ndarray, float | None]:
    """The first plane of the first series and the file's pixel size (nm, None if unknown)."""
    with TiffPlanes(path) as planes:
        return planes.read(0), planes.pixel_size_nm


class TiffPlanes:
    """An open TIFF: its number of planes, pixel size, and one plane at a time on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tif = tifffile.TiffFile(self.path)
        try:
            if not self._tif.series:
                raise ValueError("TIFF has no readable image (no valid page)")
            self._series = self._tif.series[0]
            self.n_planes = len(self._series.pages)
            if self.n_planes == 0:
                raise ValueError("TIFF has no image pages")
            self.pixel_size_nm = _pixel_size_nm(self._tif, self._tif.pages[0])
        except BaseException:
            self._tif.close()
            raise

    def read(self, index: int) -> np.ndarray:
        page = self._series.pages[index]
        _check_not_truncated(page, self.path, index)
        array = self._series.asarray(key=index) if self.n_planes > 1 else page.asarray()
        axes = getattr(self._series.keyframe, "axes", "")
        if array.ndim == 3 and axes.startswith("S"):  # planar RGB: samples first
            array = np.moveaxis(array, 0, -1)
        return array

    def close(self) -> None:
        self._tif.close()

    def __enter__(self) -> "TiffPlanes":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_not_truncated(page, path: Path, index: int) -> None:
    """tifffile can return zeros for strips past the end of a cut-off file: say so instead."""
    offsets, counts = getattr(page, "dataoffsets", ()), getattr(page, "databytecounts", ())
    if not len(offsets):
        return
    end = max(int(o) + int(c) for o, c in zip(offsets, counts))
    size = path.stat().st_size
    if end > size:
        where = f"plane {index + 1}: " if index else ""
        raise ValueError(f"truncated TIFF: {where}image data ends at byte {end} but the file has {size} bytes")


def _pixel_size_nm(tif: tifffile.TiffFile, page) -> float | None:
    """OME PhysicalSizeX first, then ImageJ's resolution + unit, then plain resolution tags.

    Unusable metadata (non-numbers, zero or negative sizes, a zero denominator, broken XML) means
    "unknown", never an unreadable image.
    """
    if tif.is_ome and tif.ome_metadata:
        size = _ome_pixel_size_nm(tif.ome_metadata)
        if size is not None:
            return size
    xres = page.tags.get("XResolution")
    if xres is None:
        return None
    try:
        num, den = (float(v) for v in xres.value)
        px_per_unit = num / den
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not (np.isfinite(px_per_unit) and px_per_unit > 0):
        return None
    if tif.is_imagej:
        factor = _imagej_unit_nm((tif.imagej_metadata or {}).get("unit", ""))
        return _positive(factor / px_per_unit) if factor else None
    resunit = page.tags.get("ResolutionUnit")
    unit = int(resunit.value) if resunit is not None else 2
    if unit == 3:  # centimetre
        return _positive(1e7 / px_per_unit)
    if unit == 2 and px_per_unit > 1000:  # inch; small values are screen DPI, not a physical pixel size
        return _positive(2.54e7 / px_per_unit)
    return None


def _ome_pixel_size_nm(xml: str) -> float | None:
    import xml.etree.ElementTree as ET

    from .image_io import unit_to_nm

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.endswith("Pixels") and "PhysicalSizeX" in el.attrib:
            factor = unit_to_nm(el.attrib.get("PhysicalSizeXUnit", "µm"))  # OME's default unit is µm
            try:
                value = float(el.attrib["PhysicalSizeX"])
            except ValueError:
                return None
            return _positive(value * factor) if factor else None
    return None


def _imagej_unit_nm(unit) -> float | None:
    """ImageJ writes µ as the escape `\\u00B5`; other writers put the character itself."""
    from .image_io import unit_to_nm

    unit = str(unit)
    if "\\u" in unit:
        try:
            unit = unit.encode("latin-1").decode("unicode_escape")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return None
    return unit_to_nm(unit)


def _positive(size: float) -> float | None:
    return float(size) if np.isfinite(size) and size > 0 else None
