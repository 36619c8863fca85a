"""The reader: what mito-run reads, at the file's pixel size; a mito-run output folder as image + labels + table."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
from PIL import Image

from plugin_helpers import calibrated_tiff, run_mito_run
from mitotally.napari.layers import META
from mitotally.napari.reader import get_reader


def test_calibrated_tiff_opens_at_its_pixel_size_in_micrometres(small_frame):
    reader = get_reader(str(small_frame))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(small_frame))
    assert kind == "image" and data.shape == (256, 320)
    assert kwargs["scale"] == pytest.approx((0.005, 0.005))
    assert kwargs["units"] == ("µm", "µm")
    assert kwargs["metadata"][META]["pixel_size"] == [5.0, 5.0, "imagej"]


def test_png_jpeg_and_rectangular_pixels(tmp_path):
    gray = (np.arange(40 * 50) % 251).astype(np.uint8).reshape(40, 50)
    Image.fromarray(gray).save(tmp_path / "a.png")
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "b.jpg")
    tifffile.imwrite(tmp_path / "c.tif", gray, imagej=True, resolution=(1000 / 4, 1000 / 8), metadata={"unit": "um"})
    [(png, kw_png, _)] = get_reader(str(tmp_path / "a.png"))(str(tmp_path / "a.png"))
    assert np.array_equal(png, gray) and kw_png["scale"] == (1.0, 1.0) and kw_png["units"] == ("pixel", "pixel")
    [(jpg, kw_jpg, _)] = get_reader(str(tmp_path / "b.jpg"))(str(tmp_path / "b.jpg"))
    assert jpg.shape == (40, 50, 3) and kw_jpg["rgb"] is True
    [(_, kw_tif, _)] = get_reader(str(tmp_path / "c.tif"))(str(tmp_path / "c.tif"))
    assert kw_tif["scale"] == pytest.approx((0.008, 0.004))  # x 4 nm, y 8 nm: (y, x) in µm


def test_a_stack_opens_as_one_zyx_layer(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (3, 30, 40), dtype=np.uint8)
    path = calibrated_tiff(tmp_path / "s.tif", stack, 2.0)
    [(data, kwargs, _)] = get_reader(str(path))(str(path))
    assert data.shape == (3, 30, 40) and np.array_equal(data, stack)
    assert kwargs["scale"] == pytest.approx((1.0, 0.002, 0.002))


def test_other_files_are_left_to_other_readers(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path)) is None  # a folder without records/


def test_mito_run_output_folder_opens_image_labels_and_objects_table(small_frame, det_model, tmp_path):
    out = run_mito_run([small_frame], tmp_path / "out", det_model)
    layers = get_reader(str(out))(str(out))
    (image, image_kw, image_kind), (labels, labels_kw, labels_kind) = layers
    assert image_kind == "image" and labels_kind == "labels"
    assert image_kw["scale"] == pytest.approx((0.005, 0.005)) == labels_kw["scale"]
    assert np.array_equal(labels, tifffile.imread(out / "labels" / "frame.tif"))
    with open(out / "objects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows, "the detecting model should find something"
    features = labels_kw["features"]
    assert [int(r["id"]) for r in rows] == list(features["index"])
    assert [int(r["area_px"]) for r in rows] == list(features["area_px"])
    assert [float(r["area_um2"]) for r in rows] == pytest.approx(list(features["area_um2"]))
    # a single record opens the same input
    [(_, kw, _), (rec_labels, _, _)] = get_reader(str(out / "records" / "frame.tif.json"))(str(out / "records" / "frame.tif.json"))
    assert np.array_equal(rec_labels, labels) and kw["name"] == "frame.tif"


def test_viewer_opens_a_calibrated_tiff_at_scale(viewer, small_frame):
    [layer] = viewer.open(str(small_frame), plugin="mitotally")
    assert tuple(layer.scale) == pytest.approx((0.005, 0.005))
    assert str(layer.units[0]) == "micrometer"
