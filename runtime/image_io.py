"""Read images and their pixel size (TIFF via tifffile, PNG/JPEG via Pillow)."""
from __future__ import annotations

import re
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
    """The image in `path` (a stack's first plane); `ImageReadError` with a one-line cause if unusable."""
    with open_image(path) as source:
        return source.read(0)


class ImageSource:
    """An opened input file: its planes (1 unless a TIFF stack) and pixel size, read one plane at a time.

    Every failure surfaces as `ImageReadError` with a one-line cause, at open or at `read`.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tiff = None
        self._first: tuple[np.ndarray, float | None] | None = None
        with _one_line_errors():
            if self.path.stat().st_size == 0:
                raise ImageReadError("empty file (0 bytes)")
            if self.path.suffix.lower() in (".tif", ".tiff"):
                from .tiff_meta import TiffPlanes

                self._tiff = TiffPlanes(self.path)
                self.n_planes, self.pixel_size_nm = self._tiff.n_planes, self._tiff.pixel_size_nm
            else:
                self._first = _read_pillow(self.path)
                self.n_planes, self.pixel_size_nm = 1, self._first[1]

    def read(self, index: int = 0) -> ImageData:
        if not 0 <= index < self.n_planes:
            raise IndexError(f"plane {index} out of range (file has {self.n_planes})")
        with _one_line_errors():
            array = self._tiff.read(index) if self._tiff is not None else self._first[0]
            return ImageData(self.path, _as_gray_or_rgb(array, self.path), self.pixel_size_nm)

    def close(self) -> None:
        if self._tiff is not None:
            self._tiff.close()
        self._first = None

    def __enter__(self) -> "ImageSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_image(path: Path) -> ImageSource:
    return ImageSource(path)


class _one_line_errors:
    """Turn whatever a decoder raises into `ImageReadError` with one line the user can act on."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, ImageReadError) or not isinstance(exc, Exception):
            return False
        if isinstance(exc, FileNotFoundError):
            raise ImageReadError("file not found (deleted or moved)") from None
        if isinstance(exc, PermissionError):
            raise ImageReadError("permission denied") from None
        if isinstance(exc, IsADirectoryError):
            raise ImageReadError("is a folder, not an image file") from None
        if isinstance(exc, MemoryError):
            raise ImageReadError("not enough memory to decode this image") from None
        name = type(exc).__name__
        if name in ("UnidentifiedImageError", "TiffFileError"):
            raise ImageReadError(f"not a valid {_kind(exc)} file (unrecognised content)") from None
        text = str(exc).splitlines()[0] if str(exc) else name
        raise ImageReadError(f"cannot decode image: {text}") from None


def _kind(exc: Exception) -> str:
    return "TIFF" if type(exc).__name__ == "TiffFileError" else "PNG/JPEG"


_PIXEL_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµμ\\]*)\s*$")


def parse_pixel_size(text: str) -> float:
    """`4.2nm`, `4.2 nm`, `0.0042um`, `0.0042µm` or a bare number (nm) -> nanometres; ValueError otherwise."""
    m = _PIXEL_SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"cannot read pixel size {text!r} (examples: 4.2nm, 0.0042um)")
    value, unit = float(m.group(1)), m.group(2) or "nm"
    factor = unit_to_nm(unit)
    if factor is None:
        raise ValueError(f"unknown unit {unit!r} in pixel size {text!r} (use nm or um)")
    if not value > 0:
        raise ValueError(f"pixel size must be positive, got {text!r}")
    return value * factor


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
