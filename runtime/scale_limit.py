"""Refuse an image whose rescaled copy for the model would not fit in memory, before it is made.

Why: the model sees every image at its own pixel size, so the copy it is
shown has (input px) x (input pixel size / model pixel size)^2 pixels. A
wrong calibration, or a `--pixel-size` with a slip of the unit (4.2 µm for
4.2 nm), turns a 1024x768 frame into billions of pixels, and the run would
die of memory with every file after it. So each image is checked first and
refused, with one line, while the run goes on with the next file.

The budget, in scaled pixels, is the smaller of
1. `MAX_SCALED_PIXELS` (2^31, 8.6 GB as float32: a 46,000 px square at the
   model's pixel size, beyond any single EM frame), and
2. the memory available now (Linux `MemAvailable`) over
   `BYTES_PER_SCALED_PIXEL` (the float32 copy, the interpolation's output
   before it, and tiles and masks on top).
"""
from __future__ import annotations

from .image_io import ImageReadError
from .scale import Factor, scaled_shape

MAX_SCALED_PIXELS = 2**31
BYTES_PER_SCALED_PIXEL = 12


class ScaledImageTooLarge(ImageReadError):
    """The image at the model's pixel size would not fit the budget; the message says the numbers."""


def available_memory_bytes() -> int | None:
    """`MemAvailable` from /proc/meminfo (None where there is none, e.g. macOS)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def scaled_pixel_budget(available: int | None = None) -> tuple[int, str]:
    """(budget in scaled pixels, what sets it), from `available` bytes (default: now)."""
    available = available_memory_bytes() if available is None else available
    if available is not None and available // BYTES_PER_SCALED_PIXEL < MAX_SCALED_PIXELS:
        return int(available // BYTES_PER_SCALED_PIXEL), (f"{BYTES_PER_SCALED_PIXEL} bytes each in the "
                                                          f"{available / 1e9:.3g} GB of memory available")
    return MAX_SCALED_PIXELS, "MAX_SCALED_PIXELS"


def check_scaled_size(shape: tuple[int, int], factor: Factor, pixel: str, model_nm: float,
                      available: int | None = None) -> None:
    """Raise `ScaledImageTooLarge` when `shape` at `factor` (model px per input px) exceeds the budget.

    `pixel` says what the input pixel size was and where it came from, e.g. "4.2 um (--pixel-size)".
    """
    h, w = scaled_shape(shape, factor)
    budget, why = scaled_pixel_budget(available)
    if h * w <= budget:
        return
    raise ScaledImageTooLarge(
        f"refused: at {pixel} per pixel this {shape[1]}x{shape[0]} px image would be {w}x{h} px at the model's "
        f"{model_nm:g} nm ({h * w / 1e9:.3g} G pixels, over the limit of {budget / 1e9:.3g} G: {why}); "
        f"check the pixel size (--pixel-size overrides the file's)")
