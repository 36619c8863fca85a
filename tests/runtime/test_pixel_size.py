"""Pixel size from ImageJ, OME and plain TIFF resolution tags; none when the file does not say; `PixelSize`, `choose`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from mitotally.runtime.image_io import read_image
from mitotally.runtime.pixel_size import PLAUSIBLE_NM, PixelSize, as_pixel_size, choose, plausible

IMAGE = np.arange(32 * 48, dtype=np.uint16).reshape(32, 48)


def pixel_size(path: Path) -> float | None:
    data = read_image(path)
    assert np.array_equal(data.array, IMAGE)  # metadata never costs the pixels
    return data.pixel_size_nm


@pytest.mark.parametrize(
    "unit,size",
    [("um", 0.0042), ("micron", 0.0042), ("microns", 0.0042), ("\\u00B5m", 0.0042), ("nm", 4.2), ("nm", 0.6), ("um", 0.010)],
)
def test_imagej_units(tmp_path, unit, size):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, IMAGE, imagej=True, resolution=(1 / size, 1 / size), metadata={"unit": unit})
    expected = size if unit == "nm" else size * 1000
    assert pixel_size(path) == pytest.approx(expected, rel=1e-4)


# the micro sign and the Greek mu as raw text, as other writers than ImageJ put them
@pytest.mark.parametrize("unit,encoding", [("µm", "latin-1"), ("µm", "utf-8"), ("μm", "utf-8")])
def test_imagej_raw_micro_sign(tmp_path, unit, encoding):
    path = tmp_path / "ij_raw.tif"
    description = f"ImageJ=1.54f\nimages=1\nunit={unit}\n".encode(encoding)
    tifffile.imwrite(path, IMAGE, description=description, resolution=(1 / 0.0042, 1 / 0.0042), metadata=None)
    assert pixel_size(path) == pytest.approx(4.2, rel=1e-4)


@pytest.mark.parametrize("metadata", [{}, {"unit": "pixel"}, {"unit": "furlong"}])
def test_imagej_without_a_physical_unit(tmp_path, metadata):
    path = tmp_path / "ij_nounit.tif"
    tifffile.imwrite(path, IMAGE, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata=metadata)
    assert pixel_size(path) is None


@pytest.mark.parametrize(
    "value,unit,expected",
    [(0.0042, "µm", 4.2), (0.0042, "um", 4.2), (4.2, "nm", 4.2), (42.0, "Å", 4.2), (0.0042, None, 4.2)],
)
def test_ome_physical_size(tmp_path, value, unit, expected):
    path = tmp_path / "img.ome.tif"
    meta = {"PhysicalSizeX": value, "PhysicalSizeY": value}
    if unit is not None:  # OME's default unit is the micrometre
        meta["PhysicalSizeXUnit"] = meta["PhysicalSizeYUnit"] = unit
    tifffile.imwrite(path, IMAGE, ome=True, metadata=meta)
    assert pixel_size(path) == pytest.approx(expected, rel=1e-6)


def test_ome_without_physical_size_falls_back_to_resolution_tags(tmp_path):
    path = tmp_path / "img.ome.tif"
    tifffile.imwrite(path, IMAGE, ome=True, resolution=(1e7 / 4.2, 1e7 / 4.2), resolutionunit="CENTIMETER")
    assert pixel_size(path) == pytest.approx(4.2, rel=1e-4)


@pytest.mark.parametrize(
    "resolution,unit,expected",
    [
        (1e7 / 4.2, "CENTIMETER", 4.2),  # pixels per cm
        (1e7 / 8.0, "CENTIMETER", 8.0),
        (2.54e7 / 4.2, "INCH", 4.2),  # pixels per inch, a microscope's value
        (72, "INCH", None),  # screen DPI from an image editor: not a physical pixel size
        (300, "INCH", None),
        (5.0, "NONE", None),
    ],
)
def test_plain_resolution_tags(tmp_path, resolution, unit, expected):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, IMAGE, resolution=(resolution, resolution), resolutionunit=unit)
    got = pixel_size(path)
    assert got is None if expected is None else got == pytest.approx(expected, rel=1e-4)


def test_plain_tiff_without_resolution(tmp_path):
    path = tmp_path / "bare.tif"
    tifffile.imwrite(path, IMAGE)
    assert pixel_size(path) is None


def test_png_has_no_pixel_size(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(IMAGE.astype(np.uint8)).save(path)
    assert read_image(path).pixel_size_nm is None


def _overwrite(path: Path, tag: str, value) -> None:
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages[0].tags[tag].overwrite(value)


def test_zero_denominator_resolution_is_unknown_not_an_error(tmp_path):
    path = tmp_path / "zero_den.tif"
    tifffile.imwrite(path, IMAGE, resolution=(1e7 / 4.2, 1e7 / 4.2), resolutionunit="CENTIMETER")
    _overwrite(path, "XResolution", (1, 0))
    assert pixel_size(path) is None


@pytest.mark.parametrize("bad", ["abc", "0", "-4.2", "nan", "inf"])
def test_unusable_ome_physical_size_is_unknown_not_an_error(tmp_path, bad):
    path = tmp_path / "bad.ome.tif"
    tifffile.imwrite(path, IMAGE, ome=True, metadata={"PhysicalSizeX": 0.0042})
    with tifffile.TiffFile(path) as tif:
        description = tif.pages[0].description.replace('PhysicalSizeX="0.0042"', f'PhysicalSizeX="{bad}"')
    _overwrite(path, "ImageDescription", description)
    assert pixel_size(path) is None


def test_broken_ome_xml_falls_back_to_tags(tmp_path):
    path = tmp_path / "broken.ome.tif"
    tifffile.imwrite(path, IMAGE, ome=True, metadata={"PhysicalSizeX": 0.0042}, resolution=(1e7 / 5.0, 1e7 / 5.0), resolutionunit="CENTIMETER")
    with tifffile.TiffFile(path) as tif:
        description = tif.pages[0].description.replace("</OME>", "")
    _overwrite(path, "ImageDescription", description)
    assert pixel_size(path) == pytest.approx(5.0, rel=1e-4)


# --- PixelSize and which calibration is believed (runtime/pixel_size.py) ---------------------------------------


def test_pixel_size_square_and_not():
    square, flat = PixelSize.square(4.2, "imagej"), PixelSize(4.0, 8.0, "ome")
    assert square.is_square and square.nm == 4.2 and square.describe() == "4.2 nm"
    assert not flat.is_square and flat.nm == pytest.approx(32**0.5) and flat.area_nm2 == 32.0
    assert flat.describe() == "4 x 8 nm"
    assert as_pixel_size(5.0).source == "given" and as_pixel_size(None) is None and as_pixel_size(flat) is flat


@pytest.mark.parametrize("x,ok", [(0.01, True), (1000.0, True), (0.009, False), (1000.1, False), (352777.8, False),
                                  (float("inf"), False)])
def test_plausible_range_is_inclusive(x, ok):
    assert PLAUSIBLE_NM == (0.01, 1000.0)
    assert plausible(PixelSize(x, 5.0, "tiff-resolution")) is ok


def test_choose_takes_the_first_plausible_and_names_what_it_passed_over():
    ij, fei, res = PixelSize.square(352777.8, "imagej"), PixelSize.square(5.0, "fei"), PixelSize.square(5.02, "tiff-resolution")
    cal = choose([ij, fei, res])
    assert cal.pixel_size is fei and "ignored 352778 nm (imagej" in cal.note and "also says" not in cal.note  # 0.4%: agrees
    disagree = choose([fei, PixelSize.square(6.0, "tiff-resolution")])
    assert disagree.pixel_size is fei and disagree.note == "pixel size 5 nm from fei; the file also says 6 nm (tiff-resolution)"
    assert choose([fei]).note == "" and choose([]).pixel_size is None and choose([]).note == ""
    alone = choose([ij])
    assert alone.pixel_size is None and alone.note.startswith("the file's pixel size, 352778 nm (imagej), is outside")
