"""A pixel's physical size along x and y, the calibration it came from, and which calibrations are believed.

Why x and y: a scan or a camera can write rectangular pixels (an ImageJ TIFF
with 4 x 8 nm pixels); measured as square, every area and length is wrong.
Why a source: published µm values rest on one calibration, so images.csv
names it (`pixel_size_source`, one of `SOURCES`).

Which calibrations are believed: a file can say several things (OME-XML, an
ImageJ description, an instrument's own tag, plain TIFF resolution tags).
Readers list what they find in their priority order (`tiff_meta`, `dm_io`,
`mrc_io`) and `choose` takes the first *plausible* one: both sides within
`PLAUSIBLE_NM`, 0.01 nm to 1000 nm per pixel. That spans EM from atomic-
resolution TEM (~0.02 nm) to low-magnification SEM overviews (~1 µm, where a
mitochondrion is a pixel or less). Outside it a value is an image editor's
dpi, not a calibration: 72 dpi written as pixels per centimetre reads as
352,778 nm per pixel, and scaling a 1024x768 frame by that to the model's
10 nm would need 35,000x more pixels per side. Such a file counts as
uncalibrated (its scale is estimated, µm columns stay empty) and `choose`
says why in one line, as it does when two plausible sources disagree.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

PLAUSIBLE_NM = (0.01, 1000.0)  # nm per pixel, both ends included
DISAGREE_REL = 0.01  # plausible sources further apart than this are reported

OME, IMAGEJ, FEI, ZEISS_SEM, SIS, TVIPS, TIFF_RESOLUTION = "ome", "imagej", "fei", "zeiss-sem", "sis", "tvips", "tiff-resolution"
DM, MRC, OPTION, GIVEN, NONE = "dm", "mrc", "--pixel-size", "given", "none"
SOURCES = (OME, IMAGEJ, FEI, ZEISS_SEM, SIS, TVIPS, TIFF_RESOLUTION, DM, MRC, OPTION, GIVEN, NONE)
"""images.csv `pixel_size_source`: a file's metadata (TIFF in priority order, then Gatan DM and MRC), the
--pixel-size option, `given` (a number passed in code, e.g. by mito-export), or none (µm columns empty)."""


@dataclass(frozen=True)
class PixelSize:
    """Physical size of one pixel: `x_nm` along a row (width), `y_nm` along a column (height)."""

    x_nm: float
    y_nm: float
    source: str  # one of SOURCES

    @classmethod
    def square(cls, nm: float, source: str) -> "PixelSize":
        return cls(float(nm), float(nm), source)

    @property
    def is_square(self) -> bool:
        return math.isclose(self.x_nm, self.y_nm, rel_tol=1e-9)

    @property
    def nm(self) -> float:
        """One number where code needs one: the side of the square pixel of the same area."""
        return self.x_nm if self.is_square else math.sqrt(self.x_nm * self.y_nm)

    @property
    def area_nm2(self) -> float:
        return self.x_nm * self.y_nm

    def describe(self) -> str:
        """`4.2 nm` or `4 x 8 nm` (x by y)."""
        return f"{self.x_nm:.6g} nm" if self.is_square else f"{self.x_nm:.6g} x {self.y_nm:.6g} nm"


def as_pixel_size(value: "PixelSize | float | None", source: str = GIVEN) -> PixelSize | None:
    """A `PixelSize` from one (returned as is), a number of nm (square, `source`), or None / 0."""
    if value is None or isinstance(value, PixelSize):
        return value
    return PixelSize.square(float(value), source) if value else None


def plausible(size: PixelSize) -> bool:
    lo, hi = PLAUSIBLE_NM
    return all(math.isfinite(v) and lo <= v <= hi for v in (size.x_nm, size.y_nm))


@dataclass(frozen=True)
class Calibration:
    """What a file says about its pixel size: the one used (None: uncalibrated) and, in one line, why
    another was not (an implausible value, or a plausible one that disagrees)."""

    pixel_size: PixelSize | None = None
    note: str = ""


UNCALIBRATED = Calibration()


def choose(candidates: Iterable[PixelSize]) -> Calibration:
    """The first plausible candidate (they come in priority order), with a note on what was passed over."""
    found = list(candidates)
    good = [c for c in found if plausible(c)]
    bad = [c for c in found if not plausible(c)]
    lo, hi = PLAUSIBLE_NM
    if not good:
        if not bad:
            return UNCALIBRATED
        first = bad[0]
        return Calibration(None, f"the file's pixel size, {first.describe()} ({first.source}), is outside the plausible "
                                 f"{lo:g}-{hi:g} nm per pixel, so it is ignored")
    chosen, notes = good[0], []
    if bad and found.index(bad[0]) < found.index(chosen):
        notes.append(f"ignored {bad[0].describe()} ({bad[0].source}, outside {lo:g}-{hi:g} nm per pixel)")
    other = next((c for c in good[1:] if _differs(c, chosen)), None)
    if other is not None:
        notes.append(f"the file also says {other.describe()} ({other.source})")
    if not notes:
        return Calibration(chosen)
    return Calibration(chosen, f"pixel size {chosen.describe()} from {chosen.source}; " + "; ".join(notes))


def _differs(a: PixelSize, b: PixelSize) -> bool:
    return any(abs(u - v) > DISAGREE_REL * max(u, v) for u, v in ((a.x_nm, b.x_nm), (a.y_nm, b.y_nm)))


_UNIT_TO_NM = {"nm": 1.0, "nanometer": 1.0, "nanometre": 1.0, "nanometers": 1.0, "nanometres": 1.0,
               "um": 1e3, "µm": 1e3, "micron": 1e3, "microns": 1e3, "micrometer": 1e3, "micrometre": 1e3,
               "micrometers": 1e3, "micrometres": 1e3, "\\u00b5m": 1e3, "mm": 1e6, "millimeter": 1e6, "millimetre": 1e6,
               "cm": 1e7, "centimeter": 1e7, "centimetre": 1e7, "m": 1e9, "meter": 1e9, "metre": 1e9,
               "inch": 2.54e7, "inches": 2.54e7, "in": 2.54e7, "pm": 1e-3, "a": 0.1, "å": 0.1, "angstrom": 0.1}


def unit_to_nm(unit: str) -> float | None:
    """nm per `unit` (µm written as µ, Greek mu, `u` or ImageJ's escape); None for units that are not lengths."""
    return _UNIT_TO_NM.get(str(unit).strip().lower().replace("μ", "µ").replace("\u212b", "å"))


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
