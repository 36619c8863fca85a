"""Read images and their pixel size (TIFF via tifffile, PNG/JPEG via Pillow)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


class ImageReadError(Exception):
    """An input that cannot be used; the message names the cause in one line."""


@dataclass
class ImageData:
    path: Path
    array: np.ndarray  # HxW or HxWx3
    pixel_size_nm: float | None  # None when the file does not say


_UNIT_TO_NM = {"nm": 1.0, "nanometer": 1.0, "nanometre": 1.0, "um": 1e3, "µm": 1e3, "micron": 1e3, "microns": 1e3,
               "micrometer": 1e3, "micrometre": 1e3, "\\u00B5m": 1e3, "mm": 1e6, "cm": 1e7, "m": 1e9, "pm": 1e-3, "a": 0.1, "å": 0.1}


def unit_to_nm(unit: str) -> float | None:
    return _UNIT_TO_NM.get(unit.strip().lower().replace("μ", "µ"))


def read_image(path: Path) -> ImageData:
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if path.stat().st_size == 0:
            raise ImageReadError("empty file (0 bytes)")
        if suffix in (".tif", ".tiff"):
            from .tiff_meta import read_tiff

            array, pixel_size = read_tiff(path)
        else:
            array, pixel_size = _read_pillow(path)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError("file not found (deleted or moved)") from None
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except Exception as exc:  # decoders raise many types; the user needs one line
        raise ImageReadError(f"cannot decode image: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    return ImageData(path, _as_gray_or_rgb(array, path), pixel_size)


def _read_pillow(path: Path) -> tuple[np.ndarray, float | None]:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L"):
            array = np.array(im, dtype=np.uint16)
        elif im.mode in ("RGB", "RGBA", "L", "I", "F"):
            array = np.array(im)
        else:
            array = np.array(im.convert("RGB"))
    return array, None


def _as_gray_or_rgb(array: np.ndarray, path: Path) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise ImageReadError(f"unsupported image shape {array.shape} (expected a 2-D gray or RGB image)")
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise ImageReadError(f"image too small: {array.shape[1]}x{array.shape[0]} px")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).any():
        raise ImageReadError("image has no finite pixel values")
    return array
