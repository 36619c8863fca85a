"""TIFF planes and their pixel size from OME, ImageJ, instrument tags or plain resolution tags.

A *stack* is a TIFF whose first series (tifffile's notion: pages of one shape
and type) has more than one page: a z-stack, a time series or a plain
multi-page file. Each page is one 2-D plane (gray, or RGB with its samples).
Other series (thumbnails, previews, reduced-resolution levels) are ignored.
`read_tiff` returns the first plane; `TiffPlanes` reads the planes one at a
time so a stack never has to fit in memory.

The pixel size: every source tifffile parses is read (`SOURCE_ORDER`, their
priority) and `pixel_size.choose` takes the first plausible one, noting an
implausible or disagreeing one.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tifffile

from .pixel_size import (FEI, IMAGEJ, OME, SIS, TIFF_RESOLUTION, TVIPS, ZEISS_SEM, Calibration, PixelSize, choose,
                         unit_to_nm)


def read_tiff(path: Path) -> tuple[np.ndarray, float | None]:
    """The first plane of the first series and the file's pixel size (nm, None if unknown)."""
    with TiffPlanes(path) as planes:
        return planes.read(0), planes.pixel_size_nm


class TiffPlanes:
    """An open TIFF: its number of planes, calibration, and one plane at a time on demand."""

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
            self.calibration: Calibration = tiff_calibration(self._tif)
        except BaseException:
            self._tif.close()
            raise

    @property
    def pixel_size_nm(self) -> float | None:
        size = self.calibration.pixel_size
        return size.nm if size is not None else None

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


def tiff_calibration(tif: tifffile.TiffFile) -> Calibration:
    """The pixel size of the first page, from the first plausible source in `SOURCE_ORDER` (see `pixel_size`).

    Unusable metadata (non-numbers, zero or negative sizes, a zero denominator, broken XML or instrument
    blocks) is no source, never an unreadable image.
    """
    return choose(c for c in (_read_source(tif, name) for name in SOURCE_ORDER) if c is not None)


SOURCE_ORDER = (OME, IMAGEJ, FEI, ZEISS_SEM, SIS, TVIPS, TIFF_RESOLUTION)
"""Priority: what the last program that wrote the file says first (OME-XML, then an ImageJ description:
Fiji and converters write them and drop instrument tags, so they describe the pixels as they are now),
then the instrument's own record (Thermo Fisher/FEI, Zeiss SEM, Olympus SIS, TVIPS), then plain TIFF
resolution tags (which image editors fill with screen dpi)."""


def _read_source(tif: tifffile.TiffFile, name: str) -> PixelSize | None:
    try:
        return _READERS[name](tif)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError):
        return None


def _ome(tif: tifffile.TiffFile) -> PixelSize | None:
    """OME-XML `Pixels` PhysicalSizeX/Y with their units (OME's default unit is the micrometre); a missing
    PhysicalSizeY means square pixels."""
    if not (tif.is_ome and tif.ome_metadata):
        return None
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.endswith("Pixels") and "PhysicalSizeX" in el.attrib:
            a = el.attrib
            x = _length(a["PhysicalSizeX"], a.get("PhysicalSizeXUnit", "µm"))
            y = _length(a["PhysicalSizeY"], a.get("PhysicalSizeYUnit", "µm")) if "PhysicalSizeY" in a else x
            return _size(x, y, OME)
    return None


def _imagej(tif: tifffile.TiffFile) -> PixelSize | None:
    """ImageJ: resolution tags in pixels per `unit` (and `yunit` when ImageJ's y unit differs)."""
    if not tif.is_imagej:
        return None
    meta = tif.imagej_metadata or {}
    unit = _imagej_unit_nm(meta.get("unit", ""))
    yunit = _imagej_unit_nm(meta["yunit"]) if "yunit" in meta else unit
    if not unit or not yunit:
        return None
    px_x, px_y = _pixels_per_unit(tif.pages.first)
    return _size(unit / px_x, yunit / px_y, IMAGEJ)


def _fei(tif: tifffile.TiffFile) -> PixelSize | None:
    """Thermo Fisher/FEI (tags 34680 FEI_SFEG, 34682 FEI_HELIOS): `[Scan] PixelWidth/PixelHeight` in metres
    (`[EScan]` in some files)."""
    meta = tif.fei_metadata
    if not meta:
        return None
    for section in ("Scan", "EScan"):
        block = meta.get(section) or {}
        if "PixelWidth" in block:
            x = float(block["PixelWidth"]) * 1e9
            return _size(x, float(block.get("PixelHeight", block["PixelWidth"])) * 1e9, FEI)
    return None


def _zeiss_sem(tif: tifffile.TiffFile) -> PixelSize | None:
    """Zeiss SEM (tag 34118 CZ_SEM): `AP_IMAGE_PIXEL_SIZE` ('Image Pixel Size = 2.233 nm'), else `AP_PIXEL_SIZE`;
    tifffile parses each to (name, value, unit). Square pixels (Zeiss writes one size)."""
    meta = tif.sem_metadata
    if not meta:
        return None
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        entry = meta.get(key)
        if isinstance(entry, tuple) and len(entry) >= 3:
            nm = _length(entry[1], entry[2])
            return _size(nm, nm, ZEISS_SEM)
    return None


def _sis(tif: tifffile.TiffFile) -> PixelSize | None:
    """Olympus SIS (tag 33560 OlympusSIS): `pixelsizex/y` in metres."""
    meta = tif.sis_metadata
    if not meta or "pixelsizex" not in meta:
        return None
    return _size(float(meta["pixelsizex"]) * 1e9, float(meta.get("pixelsizey", meta["pixelsizex"])) * 1e9, SIS)


def _tvips(tif: tifffile.TiffFile) -> PixelSize | None:
    """TVIPS EM-MENU (tag 37706): header version 2's PixelSizeX/Y, the specimen pixel in nm (version 1 has none)."""
    meta = tif.tvips_metadata
    if not meta or "PixelSizeX" not in meta:
        return None
    return _size(float(meta["PixelSizeX"]), float(meta.get("PixelSizeY", meta["PixelSizeX"])), TVIPS)


def _tiff_resolution(tif: tifffile.TiffFile) -> PixelSize | None:
    """Plain X/YResolution in pixels per inch or centimetre (ResolutionUnit 2 or 3; 1, none, means no unit).
    Not for ImageJ files, whose resolution tags are in ImageJ's own unit."""
    if tif.is_imagej:
        return None
    page = tif.pages.first
    resunit = page.tags.get("ResolutionUnit")
    unit = int(resunit.value) if resunit is not None else 2  # TIFF's default is the inch
    per = {2: 2.54e7, 3: 1e7}.get(unit)
    if per is None:
        return None
    px_x, px_y = _pixels_per_unit(page)
    return _size(per / px_x, per / px_y, TIFF_RESOLUTION)


_READERS = {OME: _ome, IMAGEJ: _imagej, FEI: _fei, ZEISS_SEM: _zeiss_sem, SIS: _sis, TVIPS: _tvips,
            TIFF_RESOLUTION: _tiff_resolution}


def _pixels_per_unit(page) -> tuple[float, float]:
    """(x, y) pixels per resolution unit; YResolution defaults to XResolution. ValueError when unusable."""
    xres = page.tags.get("XResolution")
    if xres is None:
        raise ValueError("no XResolution")
    yres = page.tags.get("YResolution") or xres
    out = []
    for tag in (xres, yres):
        num, den = (float(v) for v in tag.value)
        out.append(num / den)
    return out[0], out[1]


def _length(value, unit) -> float:
    """`value` `unit` in nm; ValueError for a unit that is not a length."""
    factor = unit_to_nm(str(unit))
    if factor is None:
        raise ValueError(f"not a length unit: {unit!r}")
    return float(value) * factor


def _size(x_nm: float, y_nm: float, source: str) -> PixelSize | None:
    """A PixelSize when both sides are finite and positive (plausibility is `choose`'s call)."""
    ok = all(math.isfinite(v) and v > 0 for v in (x_nm, y_nm))
    return PixelSize(float(x_nm), float(y_nm), source) if ok else None


def _imagej_unit_nm(unit) -> float | None:
    """ImageJ writes µ as the escape `\\u00B5`; other writers put the character itself."""
    unit = str(unit)
    if "\\u" in unit:
        try:
            unit = unit.encode("latin-1").decode("unicode_escape")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return None
    return unit_to_nm(unit)
