"""MRC images and stacks (cryo-EM, tomography, IMOD) and their calibration, read with mrcfile (the [em] extra).

The header's voxel size is in Å (`mrcfile`'s `voxel_size`, cell size over
grid size); 0 means not calibrated. A 2-D file is one plane; a 3-D file (a
volume or an image stack) is planes along z, each copied out of a memory map
when read. Rows are as stored (mrcfile's array order): IMOD draws row 0 at the
bottom, so next to IMOD the label images and overlays look flipped top to
bottom (areas and lengths do not change).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .em_extra import import_em
from .image_io import ImageReadError
from .pixel_size import MRC, UNCALIBRATED, Calibration, PixelSize, choose


def mrc_calibration(voxel_size) -> PixelSize | None:
    """The pixel size from mrcfile's `voxel_size` record (x, y, z in Å); None when x or y is 0 (unset)."""
    x_a, y_a = float(voxel_size.x), float(voxel_size.y)
    if not (np.isfinite(x_a) and np.isfinite(y_a) and x_a > 0 and y_a > 0):
        return None
    return PixelSize(x_a / 10.0, y_a / 10.0, MRC)


class MRCPlanes:
    """An opened MRC file: its planes along z and its calibration."""

    def __init__(self, path: Path):
        self.path = Path(path)
        mrcfile = import_em("mrcfile", self.path.suffix.lower())
        self._mrc = mrcfile.mmap(str(self.path), mode="r", permissive=True)
        try:
            data = self._mrc.data
            if data is None:
                raise ImageReadError("MRC file has no readable data (bad header or unsupported mode)")
            if np.iscomplexobj(data):
                raise ImageReadError("MRC data is complex (a Fourier transform?), not an image")
            if data.ndim not in (2, 3):
                raise ImageReadError(f"MRC data has {data.ndim} dimensions (expected an image or a stack of images)")
            self._data = data
            self.n_planes = 1 if data.ndim == 2 else int(data.shape[0])
            size = mrc_calibration(self._mrc.voxel_size)
            self.calibration: Calibration = choose([size]) if size is not None else UNCALIBRATED
        except BaseException:
            self._mrc.close()
            raise

    def read(self, index: int) -> np.ndarray:
        return np.array(self._data if self._data.ndim == 2 else self._data[index])

    def close(self) -> None:
        self._data = None
        self._mrc.close()
