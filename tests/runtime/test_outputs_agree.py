"""Every output of mito-run describes the same objects: label image, ROI set, COCO masks and objects.csv.

A crafted scene with occluded, split, touching, holed, tiny and clipped instances goes through the
pipeline's real assembly (`process_file`: paint, measure, write) and the table rebuild; the ids and
every object's area must agree across the four outputs, and each ROI and COCO mask must hold exactly
the label image's pixels of its id.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from pycocotools import mask as mask_utils
from roifile import roiread
from skimage.draw import ellipse

from mitotally.runtime.instances import Instances
from mitotally.runtime.pipeline import RunConfig, process_file, rebuild_tables
from mitotally.runtime.segmenter import Segmentation
from mitotally.runtime.writers.rois import signed_area
from mitotally.trainer.importers.imagej_rois import roi_region

SHAPE = (80, 120)


def _box(r0: int, c0: int, r1: int, c1: int) -> tuple[tuple[int, int], np.ndarray]:
    return (r0, c0), np.ones((r1 - r0, c1 - c0), bool)


def scene() -> Instances:
    """Instances as a model might return them, overlapping; the comments say what painting leaves."""
    full = np.zeros(SHAPE, bool)
    full[ellipse(20, 25, 12, 15, shape=SHAPE)] = True
    a = ((8, 10), full[8:33, 10:41])
    ring = np.ones((19, 26), bool)
    ring[6:13, 8:18] = False
    parts = [
        (a, 0.9),  # A: kept whole
        (((a[0][0] + 2, a[0][1] + 3), a[1]), 0.6),  # B: A's duplicate, mostly under it: dropped
        (_box(50, 5, 56, 61), 0.5),  # C: cut by D into 15 and 36 columns: keeps the larger piece
        (_box(40, 20, 71, 25), 0.95),  # D: the cut
        (_box(5, 70, 16, 86), 0.7),  # E and F touch along a column: both kept, no pixel shared
        (_box(5, 86, 16, 101), 0.8),
        (_box(70, 100, 72, 102), 0.99),  # G: 4 px, under the minimum: dropped
        (((30, 85), ring), 0.6),  # H: a ring (composite ROI) around
        (_box(37, 95, 42, 101), 0.9),  # I: an object inside H's hole
        (_box(70, -5, 86, 11), 0.4),  # J: cut by the frame's edge: kept
        (_box(12, 72, 21, 81), 0.3),  # K: 4 of its 9 rows under E: 5/9 visible, kept
    ]
    return Instances(np.array([o for (o, _), _ in parts]), [m for (_, m), _ in parts], np.array([s for _, s in parts]))


class SceneSegmenter:
    """Stands in for the model: every plane gets the crafted scene."""

    def segment(self, image, pixel_size_nm):
        return Segmentation(scene(), 5.0, 1.0, {})


def _outputs(result, folder: str) -> str:
    return next(o for o in result.outputs if o.startswith(folder + "/"))


@pytest.mark.parametrize("planes", [1, 2])
def test_label_image_rois_coco_and_objects_csv_agree(tmp_path, planes):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (planes, *SHAPE) if planes > 1 else SHAPE, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "scene.tif", image)
    out = tmp_path / "out"
    result = process_file(tmp_path / "scene.tif", SceneSegmenter(), out, "scene.tif", RunConfig(pixel_size_nm=5.0))
    assert result.ok, result.error
    rebuild_tables(out)

    labels = tifffile.imread(out / _outputs(result, "labels")).reshape(planes, *SHAPE)
    from_labels = {(p + 1, int(i)): int((labels[p] == i).sum()) for p in range(planes) for i in np.unique(labels[p]) if i}
    assert len(from_labels) == 9 * planes  # B and G dropped
    assert sorted(i for p, i in from_labels if p == 1) == list(range(1, 10))
    first = labels[0]
    assert (first[50:56, 5:20] == 0).all() and (first[50:56, 25:61] > 0).all()  # C's smaller piece is background
    assert first[70, 100] == 0  # G
    assert len({first[10, 78], first[10, 90]}) == 2 and first[5, 85] != first[5, 86]  # E and F touch, two ids

    rois = roiread(out / _outputs(result, "rois"))
    from_rois = {}
    for roi in rois:
        plane, lab = (1, int(roi.name)) if planes == 1 else (int(roi.name[1:5]), int(roi.name[6:]))
        from_rois[(plane, lab)] = sum(signed_area(xy) for xy in roi.coordinates(multi=True))  # shoelace: exact
        region, _ = roi_region(roi, SHAPE)  # what Fiji fills: pixel centres inside, holes left out
        filled = np.zeros(SHAPE, bool)
        filled[region.offset[0] : region.offset[0] + region.mask.shape[0], region.offset[1] : region.offset[1] + region.mask.shape[1]] = region.mask
        assert np.array_equal(filled, labels[plane - 1] == lab), roi.name
    assert any(r.composite for r in rois)  # H's hole

    coco = json.loads((out / "predictions.json").read_text())
    plane_of = {im["id"]: im["plane"] for im in coco["images"]}
    from_coco = {}
    for ann in coco["annotations"]:
        key = (plane_of[ann["image_id"]], ann["label"])
        rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        from_coco[key] = int(mask_utils.area(rle))
        assert ann["area"] == from_coco[key]
        assert np.array_equal(mask_utils.decode(rle).astype(bool), labels[key[0] - 1] == key[1])

    with open(out / "objects.csv", newline="") as f:
        from_csv = {(int(r["plane"]), int(r["id"])): int(r["area_px"]) for r in csv.DictReader(f)}

    assert from_rois == from_labels
    assert from_coco == from_labels
    assert from_csv == from_labels
    assert result.n_objects == len(from_labels)
