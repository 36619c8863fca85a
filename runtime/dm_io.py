"""Gatan DigitalMicrograph DM3/DM4 images and their calibration, read with rosettasciio (the [em] extra).

rosettasciio parses the file's tag tree into one dict per image (thumbnails
left out) with an `axes` list: name, size, scale and units per array axis
(`y` then `x` for an image, `z` first for a stack). `dm_calibration` turns
the x and y axes into a `PixelSize`: DM's default calibration (scale 1, no
unit) and non-length units (1/nm of a diffractogram, eV of a spectrum) are
no calibration. A 2-D image is one plane; a 3-D stack (z, y, x) is planes
along z, each read on demand from a memory map. Spectra, spectrum images and
4-D STEM data are refused: they are not pictures of a specimen.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .em_extra import import_em
from .image_io import ImageReadError
from .pixel_size import DM, UNCALIBRATED, Calibration, PixelSize, choose, unit_to_nm


def dm_calibration(axes: list[dict]) -> PixelSize | None:
    """The pixel size in rosettasciio's `axes` of one image (None: uncalibrated or not a length)."""
    by_name = {a.get("name"): a for a in axes}
    if "x" not in by_name or "y" not in by_name:
        return None
    sizes = []
    for axis in (by_name["x"], by_name["y"]):
        factor = unit_to_nm(str(axis.get("units") or ""))
        try:
            scale = float(axis.get("scale", 0.0))
        except (TypeError, ValueError):
            return None
        if factor is None or not np.isfinite(scale) or scale <= 0:
            return None
        sizes.append(scale * factor)
    return PixelSize(sizes[0], sizes[1], DM)


def is_image(axes: list[dict]) -> bool:
    """A 2-D image (y, x) or a stack of them (z, y, x), as rosettasciio names the axes of one."""
    names = [a.get("name") for a in axes]
    return names in (["y", "x"], ["z", "y", "x"])


class DMPlanes:
    """An opened DM3/DM4 file: the first image in it (a stack's planes along z) and its calibration."""

    def __init__(self, path: Path):
        self.path = Path(path)
        dm = import_em("rsciio.digitalmicrograph", self.path.suffix.lower())
        try:
            signals = dm.file_reader(str(self.path), lazy=True)
        except ValueError as exc:  # rosettasciio reads RGB images eagerly only
            if "RGBA" not in str(exc):
                raise
            signals = dm.file_reader(str(self.path), lazy=False)
        images = [s for s in signals if is_image(s["axes"])]
        if not images:
            kinds = ", ".join("x".join(str(a.get("size")) for a in s["axes"]) or "empty" for s in signals) or "none"
            raise ImageReadError(f"no 2-D image in this DM file (datasets: {kinds}; spectra and 4-D data are not read)")
        self._data = images[0]["data"]
        self.n_planes = 1 if self._data.ndim == 2 else int(self._data.shape[0])
        size = dm_calibration(images[0]["axes"])
        self.calibration: Calibration = choose([size]) if size is not None else UNCALIBRATED

    def read(self, index: int) -> np.ndarray:
        plane = self._data if self._data.ndim == 2 else self._data[index]
        array = np.asarray(plane.compute() if hasattr(plane, "compute") else plane)
        if array.dtype.names and {"R", "G", "B"} <= set(array.dtype.names):  # DM's RGB(A) records
            array = np.stack([array["R"], array["G"], array["B"]], axis=-1).astype(np.uint8)
        return array

    def close(self) -> None:
        self._data = None
