"""Pixel size <-> napari scale and units, and object rows -> Labels features (no napari needed)."""
from __future__ import annotations

import math

import numpy as np

from mitotally.napari.layers import META, features_of, layer_pixel_size, pixel_size_meta, scale_of, units_of
from mitotally.runtime.measure import OBJECT_COLUMNS, measure_instances
from mitotally.runtime.pixel_size import PixelSize


def test_scale_is_micrometres_per_pixel_y_then_x():
    px = PixelSize(4.0, 8.0, "imagej")
    assert scale_of(px) == (0.008, 0.004)
    assert scale_of(px, 3) == (1.0, 0.008, 0.004)
    assert units_of(px) == ("µm", "µm")
    assert scale_of(None) == (1.0, 1.0) and units_of(None) == ("pixel", "pixel")


def test_layer_pixel_size_prefers_our_metadata_then_scale_in_length_units():
    px = PixelSize(4.0, 8.0, "imagej")
    assert layer_pixel_size({META: {"pixel_size": pixel_size_meta(px)}}, (1, 1), None) == px
    from_scale = layer_pixel_size({}, (0.008, 0.004), ("micrometer", "micrometer"))  # as napari stores units
    assert math.isclose(from_scale.x_nm, 4.0) and math.isclose(from_scale.y_nm, 8.0)
    assert layer_pixel_size({}, (2.0, 2.0), ("nm", "nm")).x_nm == 2.0
    assert layer_pixel_size({}, (1.0, 1.0), ("pixel", "pixel")) is None
    assert layer_pixel_size({}, (1.0, 1.0), None) is None


def test_features_have_the_label_id_as_index_and_every_objects_csv_column():
    labels = np.zeros((40, 40), np.uint16)
    labels[5:15, 5:20] = 1
    labels[20:35, 22:30] = 2
    rows = measure_instances(labels, None, None, {1: 0.9})
    table = features_of(rows)
    assert list(table["index"]) == [1, 2]
    assert set(OBJECT_COLUMNS) <= set(table)
    assert list(table["area_px"]) == [150, 120]
    assert table["score"][0] == np.float32(0.9).item() or math.isclose(table["score"][0], 0.9, rel_tol=1e-6)
    assert math.isnan(table["score"][1]) and math.isnan(table["area_um2"][0])  # no score / no pixel size
