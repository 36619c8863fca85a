"""Gatan DM3/DM4: image planes and calibration through rosettasciio; a clear line without the [em] extra.

No library writes DM files and none ships one, so the files are written by
`calibration_files.dm` from the published format (see its docstring); the
conversion is also tested on rosettasciio's parsed structure directly.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibration_files as cf  # noqa: E402

from mitotally.runtime import em_extra  # noqa: E402
from mitotally.runtime.dm_io import dm_calibration, is_image  # noqa: E402
from mitotally.runtime.image_io import ImageReadError, open_image  # noqa: E402

pytest.importorskip("rsciio", reason="the [em] extra (rosettasciio) is not installed")

IMAGE = (np.arange(40 * 56) % 4000).astype(np.uint16).reshape(40, 56)


@pytest.mark.parametrize("version", [3, 4])
def test_dm_image_and_calibration(tmp_path, version):
    path = cf.dm(tmp_path / f"frame.dm{version}", IMAGE, (0.0042, 0.0042), "µm", version)
    with open_image(path) as src:
        assert src.n_planes == 1 and np.array_equal(src.read(0).array, IMAGE)  # the image, not the thumbnail
        size = src.calibration.pixel_size
    assert (size.x_nm, size.y_nm, size.source) == (pytest.approx(4.2, rel=1e-6), pytest.approx(4.2, rel=1e-6), "dm")


def test_dm4_non_square_pixels_float_data(tmp_path):
    image = IMAGE.astype(np.float32) / 7
    path = cf.dm(tmp_path / "flat.dm4", image, (4.0, 8.0), "nm", 4)
    with open_image(path) as src:
        assert np.array_equal(src.read(0).array, image)
        size = src.calibration.pixel_size
    assert (size.x_nm, size.y_nm) == (4.0, 8.0)


def test_dm_default_calibration_is_none(tmp_path):
    """DigitalMicrograph's uncalibrated image: scale 1, no unit."""
    with open_image(cf.dm(tmp_path / "raw.dm3", IMAGE, (1.0, 1.0), "")) as src:
        assert src.calibration.pixel_size is None


def test_dm_calibration_on_rosettasciio_axes():
    axes = [{"name": "y", "size": 40, "scale": 0.008, "offset": 0.0, "units": "µm", "navigate": False},
            {"name": "x", "size": 56, "scale": 4.0, "offset": 0.0, "units": "nm", "navigate": False}]
    size = dm_calibration(axes)
    assert (size.x_nm, size.y_nm, size.source) == (4.0, 8.0, "dm") and is_image(axes)
    assert dm_calibration([{**a, "units": "1/nm"} for a in axes]) is None  # a diffractogram: not a length
    assert dm_calibration([{**a, "scale": 0.0} for a in axes]) is None
    spectrum = [{"name": "Energy loss", "size": 2048, "scale": 0.1, "units": "eV"}]
    assert not is_image(spectrum) and dm_calibration(spectrum) is None


def test_without_the_em_extra_each_file_says_so(tmp_path, monkeypatch):
    path = cf.dm(tmp_path / "frame.dm3", IMAGE, (4.2, 4.2), "nm")
    real = em_extra.importlib.import_module

    def missing(name, *args):
        if name.startswith(("rsciio", "mrcfile")):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(em_extra.importlib, "import_module", missing)
    with pytest.raises(ImageReadError) as e:
        open_image(path)
    assert str(e.value) == 'reading .dm3 files needs the [em] extra (rosettasciio is not installed): pip install "mitotally[em]"'
