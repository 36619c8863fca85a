"""TIFF pages and pixel size from ImageJ, OME or plain resolution tags.

A multi-page TIFF is read as its first page (a z-stack or time series is not
segmented plane by plane: the first plane stands for the file, and a stack is
reported as such by the caller if it needs to).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def read_tiff(path: Path) -> tuple[np.ndarray, float | None]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        array = page.asarray()
        pixel_size = _pixel_size_nm(tif, page)
    return array, pixel_size


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
