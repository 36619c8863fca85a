"""An image as a calibrated ImageJ TIFF, for inputs that exist only in the viewer (a cropped, pasted or
corrected-by-hand layer) and must become files: a training image, or the input of an exported result.

The calibration is written as `writers/labels.py` writes it for label images (X/YResolution in pixels
per µm, unit `um`), so Fiji, napari and `runtime.tiff_meta` (hence mito-run and mito-train) read the
same pixel size back. ImageJ TIFF holds uint8, uint16 and float32 gray and uint8 RGB: other integer
types up to 16 bits are shifted into uint16 only if lossless, everything else becomes float32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from mitotally.runtime.pixel_size import PixelSize
from mitotally.runtime.writers.atomic import temp_path


def imagej_array(array: np.ndarray) -> np.ndarray:
    """`array` in a dtype ImageJ TIFF holds, values unchanged where possible."""
    a = np.asarray(array)
    if a.ndim == 3:  # RGB
        return a if a.dtype == np.uint8 else np.clip(a, 0, 255).astype(np.uint8)
    if a.dtype in (np.uint8, np.uint16, np.float32):
        return a
    if a.dtype == bool:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 and a.max() <= 65535:
        return a.astype(np.uint16)
    return a.astype(np.float32)


def write_image_tiff(path: Path, array: np.ndarray, pixel_size: PixelSize | None) -> Path:
    """Write a 2-D gray or RGB image to `path` (atomically), with its pixel size when known; returns `path`."""
    data = imagej_array(array)
    kwargs: dict = {"compression": "zlib", "compressionargs": {"level": 1}, "photometric": "rgb" if data.ndim == 3 else "minisblack"}
    metadata: dict = {"axes": "YXS" if data.ndim == 3 else "YX"}
    if pixel_size is not None:
        kwargs["resolution"] = (1000.0 / pixel_size.x_nm, 1000.0 / pixel_size.y_nm)  # pixels per µm
        metadata["unit"] = "um"
    with temp_path(Path(path)) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, **kwargs)
    return Path(path)
