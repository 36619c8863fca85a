"""Pixel size (x and y) and its source from every TIFF calibration tifffile parses, in `SOURCE_ORDER`."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibration_files as cf  # noqa: E402

from mitotally.runtime.image_io import open_image  # noqa: E402
from mitotally.runtime.tiff_meta import SOURCE_ORDER  # noqa: E402

IMAGE = (np.arange(40 * 56) % 251).astype(np.uint16).reshape(40, 56)


def calibration(path: Path):
    with open_image(path) as src:
        assert np.array_equal(src.read(0).array, IMAGE)  # metadata never costs the pixels
        return src.calibration


def xy_source(path: Path):
    size = calibration(path).pixel_size
    return None if size is None else (pytest.approx((size.x_nm, size.y_nm), rel=1e-6), size.source)


def test_imagej_square(tmp_path):
    assert xy_source(cf.imagej(tmp_path / "a.tif", IMAGE, 4.2)) == ((4.2, 4.2), "imagej")


def test_imagej_non_square_pixels_keep_x_and_y(tmp_path):
    path = cf.imagej(tmp_path / "a.tif", IMAGE, 4.0, 8.0)
    with tifffile.TiffFile(path) as tif:  # the file really says XResolution != YResolution
        assert tif.pages[0].tags["XResolution"].value != tif.pages[0].tags["YResolution"].value
    size = calibration(path).pixel_size
    assert (size.x_nm, size.y_nm, size.source) == (pytest.approx(4.0), pytest.approx(8.0), "imagej")
    assert not size.is_square and size.nm == pytest.approx(32**0.5) and size.area_nm2 == pytest.approx(32.0)


# each unit as ImageJ (or a program writing ImageJ TIFF) names it; all describe a 6.5 nm pixel
@pytest.mark.parametrize("unit,per_nm", [("nm", 1.0), ("micron", 1e-3), ("µm", 1e-3), ("um", 1e-3), ("\\u00B5m", 1e-3),
                                         ("mm", 1e-6), ("inch", 1 / 2.54e7), ("cm", 1e-7)])
def test_imagej_unit_variants(tmp_path, unit, per_nm):
    assert xy_source(cf.imagej(tmp_path / "u.tif", IMAGE, 6.5 * per_nm, unit=unit)) == ((6.5, 6.5), "imagej")


def test_imagej_in_inches_at_screen_dpi_is_implausible(tmp_path):
    """ImageJ calls a 72-dpi image calibrated in inches: 352,778 nm per pixel, not a microscope's calibration."""
    cal = calibration(cf.imagej(tmp_path / "dpi.tif", IMAGE, 1 / 72, unit="inch"))
    assert cal.pixel_size is None and "352778 nm (imagej)" in cal.note and "0.01-1000 nm" in cal.note


def test_ome_physical_size_x_and_y_each_with_its_unit(tmp_path):
    path = cf.ome(tmp_path / "a.ome.tif", IMAGE, 0.004, "µm", 80.0, "Å")
    assert xy_source(path) == ((4.0, 8.0), "ome")


def test_fei_scan_pixel_width_and_height_in_metres(tmp_path):
    assert xy_source(cf.fei(tmp_path / "fei.tif", IMAGE, 4.94792e-9, 5.1e-9)) == ((4.94792, 5.1), "fei")


@pytest.mark.parametrize("value,unit,nm", [(2.233, "nm", 2.233), (0.0112, "µm", 11.2), (850.0, "pm", 0.85)])
def test_zeiss_sem_image_pixel_size_with_units(tmp_path, value, unit, nm):
    assert xy_source(cf.zeiss_sem(tmp_path / "zeiss.tif", IMAGE, value, unit)) == ((nm, nm), "zeiss-sem")


def test_olympus_sis_pixel_size_in_metres(tmp_path):
    assert xy_source(cf.sis(tmp_path / "sis.tif", IMAGE, 4.2e-9, 4.4e-9)) == ((4.2, 4.4), "sis")


def test_tvips_pixel_size_in_nm(tmp_path):
    assert xy_source(cf.tvips(tmp_path / "tvips.tif", IMAGE, 3.5, 3.6)) == ((3.5, 3.6), "tvips")


def test_plain_resolution_tags_x_and_y(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, IMAGE, resolution=(1e7 / 4.0, 1e7 / 8.0), resolutionunit="CENTIMETER")
    assert xy_source(path) == ((4.0, 8.0), "tiff-resolution")


def test_72_dpi_in_centimetres_is_uncalibrated_with_a_note(tmp_path):
    cal = calibration(cf.plain(tmp_path / "editor.tif", IMAGE, 72 / 2.54))
    assert cal.pixel_size is None
    assert "352778 nm (tiff-resolution)" in cal.note and "outside the plausible 0.01-1000 nm" in cal.note


def test_uncalibrated_tiff_has_no_size_and_no_note(tmp_path):
    cal = calibration(cf.plain(tmp_path / "bare.tif", IMAGE))
    assert cal.pixel_size is None and cal.note == ""


def test_instrument_beats_plain_resolution_tags_and_the_disagreement_is_noted(tmp_path):
    path = tmp_path / "fei_res.tif"
    text = "[Scan]\r\nPixelWidth=5e-009\r\nPixelHeight=5e-009\r\n"
    tifffile.imwrite(path, IMAGE, resolution=(1e7 / 6.0, 1e7 / 6.0), resolutionunit="CENTIMETER",
                     extratags=[(34682, "s", 0, text, True)])
    cal = calibration(path)
    assert (cal.pixel_size.x_nm, cal.pixel_size.source) == (pytest.approx(5.0), "fei")
    assert "the file also says 6 nm (tiff-resolution)" in cal.note


def test_implausible_first_source_falls_through_to_a_plausible_one(tmp_path):
    """An ImageJ description at screen dpi over a Zeiss tag: the instrument's size is used, the other named."""
    path = tmp_path / "mixed.tif"
    text = "AP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = 3.1 nm\r\n"
    tifffile.imwrite(path, IMAGE, imagej=True, resolution=(72, 72), metadata={"unit": "inch"},
                     extratags=[(34118, "s", 0, text, True)])
    cal = calibration(path)
    assert (cal.pixel_size.x_nm, cal.pixel_size.source) == (pytest.approx(3.1), "zeiss-sem")
    assert "ignored 352778 nm (imagej" in cal.note


def test_ome_comes_first_then_imagej_then_instruments_then_resolution_tags():
    assert SOURCE_ORDER == ("ome", "imagej", "fei", "zeiss-sem", "sis", "tvips", "tiff-resolution")


def test_broken_instrument_block_is_no_source_not_an_error(tmp_path):
    path = tmp_path / "broken.tif"
    tifffile.imwrite(path, IMAGE, extratags=[(34682, "s", 0, "[Scan]\r\nPixelWidth=abc\r\n", True),
                                             (33560, "B", 8, b"NOTSIS00", True)])
    assert calibration(path).pixel_size is None
