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
    from .image_io import unit_to_nm

    if tif.is_ome and tif.ome_metadata:
        import xml.etree.ElementTree as ET

        try:
            root = ET.fromstring(tif.ome_metadata)
            for el in root.iter():
                if el.tag.endswith("Pixels") and "PhysicalSizeX" in el.attrib:
                    unit = el.attrib.get("PhysicalSizeXUnit", "µm")
                    factor = unit_to_nm(unit)
                    if factor:
                        return float(el.attrib["PhysicalSizeX"]) * factor
        except ET.ParseError:
            pass
    xres = page.tags.get("XResolution")
    if xres is None:
        return None
    num, den = xres.value
    if num == 0:
        return None
    px_per_unit = num / den
    if tif.is_imagej:
        unit = (tif.imagej_metadata or {}).get("unit", "")
        factor = unit_to_nm(unit.encode("latin-1").decode("unicode_escape") if "\\u" in unit else unit)
        return (1.0 / px_per_unit) * factor if factor else None
    resunit = page.tags.get("ResolutionUnit")
    unit = int(resunit.value) if resunit is not None else 2
    if unit == 3:  # centimetre
        return 1e7 / px_per_unit
    if unit == 2 and px_per_unit > 1000:  # inch; small values are screen DPI, not a physical pixel size
        return 2.54e7 / px_per_unit
    return None
