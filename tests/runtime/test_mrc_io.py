"""MRC images and stacks: planes and calibration (voxel size in Å) through mrcfile."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibration_files as cf  # noqa: E402

from mitotally.runtime.image_io import ImageReadError, open_image  # noqa: E402

mrcfile = pytest.importorskip("mrcfile", reason="the [em] extra (mrcfile) is not installed")

STACK = (np.arange(3 * 40 * 56) % 3000).astype(np.int16).reshape(3, 40, 56)


def test_mrc_stack_planes_and_calibration(tmp_path):
    path = cf.mrc(tmp_path / "tomo.mrc", STACK, 42.0)
    with open_image(path) as src:
        assert src.n_planes == 3
        for i in (2, 0, 1):
            assert np.array_equal(src.read(i).array, STACK[i])
        size = src.calibration.pixel_size
    assert (size.x_nm, size.y_nm, size.source) == (pytest.approx(4.2), pytest.approx(4.2), "mrc")


def test_mrc_single_image_non_square(tmp_path):
    with open_image(cf.mrc(tmp_path / "one.mrc", STACK[0], 40.0, 80.0)) as src:
        assert src.n_planes == 1 and np.array_equal(src.read(0).array, STACK[0])
        assert (src.calibration.pixel_size.x_nm, src.calibration.pixel_size.y_nm) == (pytest.approx(4.0), pytest.approx(8.0))


def test_mrc_without_voxel_size_is_uncalibrated(tmp_path):
    path = tmp_path / "bare.mrc"
    with mrcfile.new(path, data=STACK[0]):
        pass  # mrcfile leaves the cell (and so the voxel size) at 0
    with open_image(path) as src:
        assert src.calibration.pixel_size is None


def test_complex_mrc_is_refused_in_one_line(tmp_path):
    path = tmp_path / "fft.mrc"
    with mrcfile.new(path, data=STACK[0].astype(np.complex64)):
        pass
    with pytest.raises(ImageReadError, match="complex"):
        open_image(path)
