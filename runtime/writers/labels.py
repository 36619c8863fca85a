"""Instance label images as TIFF that Fiji and napari open at scale.

uint16 (ImageJ TIFF: pixel size written as resolution + unit `um`, so Fiji's
Image > Properties shows it and measurements come out in µm). Above 65535
instances the labels need uint32, which ImageJ TIFF cannot hold: then a plain
TIFF with resolution tags in centimetres is written (Bio-Formats, napari and
tifffile read it at scale). A stack's planes are pages of one file, written
one plane at a time.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tifffile

from .atomic import temp_path

UINT16_MAX_ID = 65535


def label_dtype(max_id: int) -> np.dtype:
    return np.dtype(np.uint16 if max_id <= UINT16_MAX_ID else np.uint32)


def write_labels(
    path: Path,
    planes: Iterable[np.ndarray],
    shape: tuple[int, int],
    n_planes: int,
    max_id: int,
    pixel_size_nm: float | tuple[float, float] | None,
) -> Path:
    """Write `n_planes` label planes of `shape` (yielded one at a time) to `path`; returns `path`.

    `pixel_size_nm`: one number (square pixels) or (x, y) for non-square ones, written as X/YResolution."""
    dtype = label_dtype(max_id)
    x_nm, y_nm = (pixel_size_nm if isinstance(pixel_size_nm, tuple) else (pixel_size_nm, pixel_size_nm))
    stack_shape = (n_planes, *shape) if n_planes > 1 else tuple(shape)
    kwargs: dict = {"compression": "zlib", "compressionargs": {"level": 1}}
    imagej = dtype == np.uint16
    if imagej:
        metadata = {"axes": "ZYX" if n_planes > 1 else "YX"}
        if x_nm and y_nm:
            kwargs["resolution"] = (1000.0 / x_nm, 1000.0 / y_nm)  # pixels per µm
            metadata["unit"] = "um"
        kwargs["metadata"] = metadata
    elif x_nm and y_nm:
        kwargs["resolution"] = (1e7 / x_nm, 1e7 / y_nm)  # pixels per cm
        kwargs["resolutionunit"] = "CENTIMETER"
    data = (np.asarray(p, dtype=dtype) for p in planes)
    with temp_path(path) as tmp:
        with tifffile.TiffWriter(tmp, imagej=imagej, bigtiff=not imagej and np.prod(stack_shape) * dtype.itemsize > 2**31) as tif:
            if n_planes > 1:
                tif.write(data, shape=stack_shape, dtype=dtype, **kwargs)
            else:
                tif.write(next(iter(data)), **kwargs)
    return Path(path)
