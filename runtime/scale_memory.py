"""Which earlier scale estimate a frame reuses, and when the estimate is made again.

Why: the scale probe segments up to `scale_probe.MAX_TILES` tiles, more than
most frames cost, so frames that share a scale should share one estimate. Frame
size alone does not say they do: two instruments, or one microscope at two
magnifications, write frames of one size, and `mito-watch` runs for days.

The key (`EstimateKey`): frame height and width, pixel type (8/16-bit, float,
RGB), the given pixel size (None when unknown; a calibrated file's check is per
calibration), the folder the file is in (instruments and sessions usually write
to their own), and the file's instrument tags (TIFF or EXIF Make, Model and
Software: another instrument or acquisition program is probed again).

Expiry (`Expiry`): `mito-run` keeps an estimate for the whole run (its inputs
are a fixed set, so every frame of one key is scaled alike and a rerun agrees).
`mito-watch` uses `WATCH_EXPIRY`: an estimate serves at most 200 frames and 30
minutes, whichever ends first, and the next frame of that key is probed again.
So a new session at another magnification, written into the same folder by the
same program, is found within 30 minutes (give `--pixel-size` when that is too
late). Each estimate has a number, which images.csv (`scale_estimate`) and
run.json (`scale_estimates`) both carry.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .scale_probe import ScaleEstimate

INSTRUMENT_TAGS = {271: "Make", 272: "Model", 305: "Software"}  # TIFF / EXIF tag codes


@dataclass(frozen=True)
class Expiry:
    """How long one estimate serves: at most `max_frames` frames and `max_age_s` seconds (None: no limit)."""

    max_frames: int | None = None
    max_age_s: float | None = None


NEVER = Expiry()
WATCH_EXPIRY = Expiry(max_frames=200, max_age_s=30 * 60.0)


@dataclass(frozen=True)
class EstimateKey:
    height: int
    width: int
    pixel_type: str  # e.g. uint8, uint16, uint8x3 (RGB)
    given_nm: float | None  # the calibration the estimate checks; None: the file has none
    folder: str
    instrument: str  # "Make=...; Model=...; Software=..." ('' when the file names none)


def pixel_type(array: np.ndarray) -> str:
    return f"{array.dtype}x{array.shape[2]}" if array.ndim == 3 else str(array.dtype)


def instrument_tags(path: Path) -> str:
    """The instrument and program that wrote `path` (TIFF or EXIF Make/Model/Software), '' when none or unreadable."""
    values: dict[str, str] = {}
    try:
        if Path(path).suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                tags = tif.pages[0].tags
                values = {name: str(tags[code].value) for code, name in INSTRUMENT_TAGS.items() if code in tags}
        else:
            from PIL import Image

            with Image.open(path) as im:
                exif = im.getexif()
                values = {name: str(exif[code]) for code, name in INSTRUMENT_TAGS.items() if code in exif}
    except Exception:  # noqa: BLE001 - a fingerprint only: an unreadable tag is no reason to fail a frame
        return ""
    return "; ".join(f"{k}={v.strip()}" for k, v in values.items() if v.strip())


def estimate_key(path: Path, array: np.ndarray, given_nm: float | None, instrument: str) -> EstimateKey:
    h, w = array.shape[:2]
    return EstimateKey(int(h), int(w), pixel_type(array), given_nm or None, str(Path(path).parent), instrument)


@dataclass
class Remembered:
    number: int  # 1, 2, ... in the order estimates were made in this process
    key: EstimateKey
    estimate: ScaleEstimate
    origin: str  # the file it was made on
    made_at: float  # the memory's clock (monotonic seconds)
    made: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))  # wall clock, for run.json
    frames: int = 0  # frames it has served, the one it was made on included

    def to_dict(self) -> dict:
        e, k = self.estimate, self.key
        return {"number": self.number, "width": k.width, "height": k.height, "pixel_type": k.pixel_type,
                "given_pixel_size_nm": k.given_nm, "folder": k.folder, "instrument": k.instrument,
                "estimated_from": self.origin, "made": self.made, "frames": self.frames,
                "pixel_size_nm": e.pixel_size_nm, "default_nm": e.default_nm, "moved": e.moved,
                "region": list(e.region) if e.region else None, "tiles": e.tiles,
                "coverage_by_pixel_size_nm": {f"{px:.4g}": round(v, 4) for px, v in e.coverage.items()}}


def expired(entry: Remembered, now: float, expiry: Expiry) -> bool:
    """Has `entry` served its frames or its time (pure: the rule)?"""
    if expiry.max_frames is not None and entry.frames >= expiry.max_frames:
        return True
    return expiry.max_age_s is not None and now - entry.made_at >= expiry.max_age_s


class ScaleMemory:
    """The live estimate per key, and every estimate made (the last `history` of them, for run.json)."""

    def __init__(self, expiry: Expiry = NEVER, clock=time.monotonic, history: int = 100):
        self.expiry, self._clock, self._history = expiry, clock, history
        self._live: dict[EstimateKey, Remembered] = {}
        self._made: OrderedDict[int, Remembered] = OrderedDict()
        self._count = 0

    def recall(self, key: EstimateKey) -> Remembered | None:
        """The live estimate for `key`, counting one more frame served; None when there is none or it expired."""
        entry = self._live.get(key)
        if entry is not None and expired(entry, self._clock(), self.expiry):
            del self._live[key]
            entry = None
        if entry is not None:
            entry.frames += 1
        return entry

    def remember(self, key: EstimateKey, estimate: ScaleEstimate, origin: str) -> Remembered:
        """Store a new estimate for `key` (serving its first frame, the one it was made on)."""
        self._count += 1
        entry = Remembered(self._count, key, estimate, origin, self._clock(), frames=1)
        self._live[key] = entry
        self._made[entry.number] = entry
        while len(self._made) > self._history:
            self._made.popitem(last=False)
        return entry

    def made(self) -> list[Remembered]:
        return list(self._made.values())

    def clear(self) -> None:
        self._live.clear()
        self._made.clear()
        self._count = 0

    def __len__(self) -> int:
        """Live estimates (one per key in use)."""
        return len(self._live)
