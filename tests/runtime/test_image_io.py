"""Reading inputs: planes of TIFF stacks, every supported type, one-line errors, `--pixel-size` parsing."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from mitotally.runtime.image_io import ImageReadError, open_image, parse_pixel_size, read_image

STACK = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)


@pytest.mark.parametrize("text,nm", [("4.2nm", 4.2), ("4.2 nm", 4.2), ("0.0042um", 4.2), ("0.0042µm", 4.2),
                                     ("0.0042μm", 4.2), ("5", 5.0), ("1e-3um", 1.0), ("42A", 4.2)])
def test_parse_pixel_size(text, nm):
    assert parse_pixel_size(text) == pytest.approx(nm)


@pytest.mark.parametrize("text", ["", "nm", "-4nm", "0nm", "4.2 furlongs", "4.2.1nm", "four nm"])
def test_parse_pixel_size_rejects(text):
    with pytest.raises(ValueError, match="pixel size|unit"):
        parse_pixel_size(text)


@pytest.mark.parametrize("kind", ["imagej", "ome", "plain"])
def test_stack_planes_read_one_at_a_time(tmp_path, kind):
    path = tmp_path / f"{kind}.tif"
    if kind == "imagej":
        tifffile.imwrite(path, STACK, imagej=True, resolution=(1 / 0.005, 1 / 0.005), metadata={"unit": "um", "axes": "ZYX"})
    elif kind == "ome":
        tifffile.imwrite(path, STACK, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.005, "PhysicalSizeXUnit": "µm"})
    else:
        tifffile.imwrite(path, STACK, photometric="minisblack")
    with open_image(path) as src:
        assert src.n_planes == 3
        assert src.pixel_size_nm == (None if kind == "plain" else pytest.approx(5.0))
        for i in (2, 0, 1):  # any order
            assert np.array_equal(src.read(i).array, STACK[i])
        with pytest.raises(IndexError):
            src.read(3)
    assert np.array_equal(read_image(path).array, STACK[0])  # read_image: the first plane


def test_other_series_are_not_planes(tmp_path):
    """A thumbnail stored as a second, smaller series is not a plane of the image."""
    path = tmp_path / "thumb.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(STACK[0])
        tif.write(STACK[0, ::4, ::4].astype(np.uint8))
    with open_image(path) as src:
        assert src.n_planes == 1 and np.array_equal(src.read(0).array, STACK[0])


def test_planar_rgb_becomes_interleaved(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (3, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", rgb, photometric="rgb", planarconfig="separate")
    assert np.array_equal(read_image(tmp_path / "p.tif").array, np.moveaxis(rgb, 0, -1))


@pytest.mark.parametrize("name,array", [
    ("u16.png", np.arange(600, dtype=np.uint16).reshape(20, 30) * 100),
    ("f32.tif", np.linspace(-1, 1, 600, dtype=np.float32).reshape(20, 30)),
    ("rgb.png", np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)),
    ("rgba.png", np.random.default_rng(2).integers(0, 255, (20, 30, 4), dtype=np.uint8)),
])
def test_types_read_exactly(tmp_path, name, array):
    path = tmp_path / name
    tifffile.imwrite(path, array) if name.endswith(".tif") else Image.fromarray(array).save(path)
    got = read_image(path).array
    assert got.dtype == array.dtype and np.array_equal(got, array[..., :3] if array.ndim == 3 else array)


def _write_valid(path):
    img = (np.random.default_rng(0).random((64, 80)) * 255).astype(np.uint8)
    if path.suffix == ".tif":
        tifffile.imwrite(path, img)
    else:
        Image.fromarray(img).save(path)
    return path


@pytest.mark.parametrize("suffix", [".tif", ".png", ".jpg"])
def test_truncated_files_fail_with_one_line(tmp_path, suffix):
    path = _write_valid(tmp_path / f"t{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as e:
        read_image(path)
    msg = str(e.value)
    assert "\n" not in msg and ("truncated" in msg or "decode" in msg or "not a valid" in msg)


@pytest.mark.parametrize("suffix,expect", [(".tif", "not a valid TIFF"), (".png", "not a valid PNG/JPEG"), (".jpeg", "not a valid PNG/JPEG")])
def test_non_image_with_image_suffix(tmp_path, suffix, expect):
    path = tmp_path / f"notes{suffix}"
    path.write_text("these are my notes, not an image\n" * 10)
    with pytest.raises(ImageReadError, match=expect):
        read_image(path)


def test_empty_missing_and_folder(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(tmp_path / "empty.tif")
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "gone.png")
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path / "dir.tif")
