"""Read images and their pixel size: TIFF (tifffile), Gatan DM3/DM4 and MRC (the [em] extra), PNG/JPEG (Pillow)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .pixel_size import UNCALIBRATED, Calibration, PixelSize, as_pixel_size, parse_pixel_size, unit_to_nm  # noqa: F401

TIFF_SUFFIXES = (".tif", ".tiff")
DM_SUFFIXES = (".dm3", ".dm4")
MRC_SUFFIXES = (".mrc", ".mrcs")
EM_SUFFIXES = DM_SUFFIXES + MRC_SUFFIXES  # need the [em] extra; without it each such file fails with a line saying so
IMAGE_SUFFIXES = TIFF_SUFFIXES + (".png", ".jpg", ".jpeg") + EM_SUFFIXES


class ImageReadError(Exception):
    """An input that cannot be used; the message names the cause in one line."""


@dataclass
class ImageData:
    """One 2-D plane and its calibration. `pixel_size` may be given as nm (a number: square pixels, source
    `given`) and is a `PixelSize` (or None: the file does not say) from then on."""

    path: Path
    array: np.ndarray  # HxW or HxWx3
    pixel_size: PixelSize | None  # None when the file does not say (or says something implausible)
    calibration_note: str = ""  # one line: an implausible calibration ignored, or sources that disagree

    def __post_init__(self) -> None:
        self.pixel_size = as_pixel_size(self.pixel_size)

    @property
    def pixel_size_nm(self) -> float | None:
        """One number (the square pixel of the same area when x and y differ), None when unknown."""
        return self.pixel_size.nm if self.pixel_size is not None else None


def read_image(path: Path) -> ImageData:
    """The image in `path` (a stack's first plane); `ImageReadError` with a one-line cause if unusable."""
    with open_image(path) as source:
        return source.read(0)


class ImageSource:
    """An opened input file: its planes (1 unless a stack) and calibration, read one plane at a time.

    TIFF, DM and MRC files are read through an object with `n_planes`, `calibration`, `read(i)` and
    `close()` (`tiff_meta.TiffPlanes`, `dm_io.DMPlanes`, `mrc_io.MRCPlanes`); PNG/JPEG are decoded whole.
    Every failure surfaces as `ImageReadError` with a one-line cause, at open or at `read`.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._planes = None
        self._first: np.ndarray | None = None
        self.calibration: Calibration = UNCALIBRATED
        with _one_line_errors():
            if self.path.stat().st_size == 0:
                raise ImageReadError("empty file (0 bytes)")
            self._planes = _open_planes(self.path)
            if self._planes is not None:
                self.n_planes, self.calibration = self._planes.n_planes, self._planes.calibration
            else:
                self._first, self.n_planes = _read_pillow(self.path), 1

    @property
    def pixel_size(self) -> PixelSize | None:
        return self.calibration.pixel_size

    @property
    def pixel_size_nm(self) -> float | None:
        return self.pixel_size.nm if self.pixel_size is not None else None

    def read(self, index: int = 0) -> ImageData:
        if not 0 <= index < self.n_planes:
            raise IndexError(f"plane {index} out of range (file has {self.n_planes})")
        with _one_line_errors():
            array = self._planes.read(index) if self._planes is not None else self._first
            return ImageData(self.path, _as_gray_or_rgb(array, self.path), self.pixel_size, self.calibration.note)

    def close(self) -> None:
        if self._planes is not None:
            self._planes.close()
        self._first = None

    def __enter__(self) -> "ImageSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_planes(path: Path):
    """The plane reader for `path`'s format, or None for Pillow's formats."""
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        from .tiff_meta import TiffPlanes

        return TiffPlanes(path)
    if suffix in DM_SUFFIXES:
        from .dm_io import DMPlanes

        return DMPlanes(path)
    if suffix in MRC_SUFFIXES:
        from .mrc_io import MRCPlanes

        return MRCPlanes(path)
    return None


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


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L"):
            array = np.array(im, dtype=np.uint16)
        elif im.mode in ("RGB", "RGBA", "L", "I", "F"):
            array = np.array(im)
        else:
            array = np.array(im.convert("RGB"))
    return array


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
