"""Add to training set: a folder `mito-train --data` reads as it is, with the right instances and pixel size."""
from __future__ import annotations

import io
from contextlib import redirect_stdout

import numpy as np
import pytest

from mitotally.napari.training_set import add_to_training_set
from mitotally.runtime.pixel_size import PixelSize
from mitotally.trainer.cli import main as mito_train
from mitotally.trainer.importers import read_dataset


def _labels(shape, boxes):
    labels = np.zeros(shape, np.int32)
    for i, (r0, r1, c0, c1) in enumerate(boxes, 1):
        labels[r0:r1, c0:c1] = 10 * i  # ids need not be 1..N in the layer
    return labels


def test_the_folder_reads_as_label_images_with_calibration(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160), dtype=np.uint8)
    labels = _labels(image.shape, [(5, 25, 5, 30), (40, 70, 60, 90), (80, 100, 100, 150)])
    added = add_to_training_set(tmp_path / "train", "frame", image, labels, PixelSize.square(5.0, "imagej"))
    assert added.instances == 3 and not added.replaced
    ds = read_dataset(tmp_path / "train")
    assert ds.format == "labels" and not ds.skipped
    [item] = ds.items
    assert item.name == "frame" and item.n_instances == 3 and item.pixel_size_nm == pytest.approx(5.0)
    assert np.array_equal(item.image, image)
    out = io.StringIO()
    with redirect_stdout(out):
        code = mito_train(["--data", str(tmp_path / "train"), "--check-data"])
    text = out.getvalue()
    assert code == 0, text
    assert any(line.split("│")[1:3] and line.split("│")[1].strip() == "instances" and line.split("│")[2].strip() == "3"
               for line in text.splitlines() if "│" in line), text


def test_the_same_image_again_replaces_its_labels_another_gets_a_new_stem(tmp_path):
    image = np.full((60, 60), 100, np.uint16)
    add_to_training_set(tmp_path, "a", image, _labels(image.shape, [(1, 10, 1, 10)]), None)
    again = add_to_training_set(tmp_path, "a", image, _labels(image.shape, [(1, 10, 1, 10), (20, 30, 20, 30)]), None)
    other = add_to_training_set(tmp_path, "a", image + 1, _labels(image.shape, [(5, 9, 5, 9)]), None)
    assert again.replaced and again.image.name == "a.tif" and other.image.name == "a_2.tif"
    items = {it.name: it for it in read_dataset(tmp_path).items}
    assert items["a"].n_instances == 2 and items["a_2"].n_instances == 1
    assert items["a"].pixel_size_nm is None  # no calibration written when the pixel size is unknown
