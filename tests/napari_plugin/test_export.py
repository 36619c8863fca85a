"""Export: the result in the viewer -> the files mito-run writes for the same image (no Qt)."""
from __future__ import annotations

import csv
import zipfile

import numpy as np
import pytest
import tifffile

from plugin_helpers import run_mito_run
from mitotally.napari.export import export_result
from mitotally.napari.segmenting import Control, Models, SegmentSettings, segment_one
from mitotally.runtime.image_io import ImageData, read_image


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _rois(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in sorted(z.namelist())}


@pytest.fixture(scope="module")
def segmented(small_frame, det_model):
    models = Models()
    result = segment_one(read_image(small_frame), small_frame.name, SegmentSettings(det_model), None, models, Control())
    return result, models.get(result.settings)


def test_an_unedited_result_exports_what_mito_run_writes(segmented, small_frame, det_model, tmp_path):
    result, segmenter = segmented
    exported = export_result(result, result.measured.labels, tmp_path / "export", segmenter)
    cli = run_mito_run([small_frame], tmp_path / "cli", det_model)
    out = exported.out
    for name in ("labels/frame.tif", "rois/frame.zip", "overlays/frame.png", "records/frame.tif.json", "objects.csv",
                 "images.csv", "predictions.json", "run.json"):
        assert (out / name).is_file() and (cli / name).is_file(), name
    assert _csv(out / "objects.csv") == _csv(cli / "objects.csv")
    drop = ("time_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in _csv(out / "images.csv")] == \
           [{k: v for k, v in r.items() if k not in drop} for r in _csv(cli / "images.csv")]
    with tifffile.TiffFile(out / "labels/frame.tif") as a, tifffile.TiffFile(cli / "labels/frame.tif") as b:
        assert np.array_equal(a.asarray(), b.asarray())
        assert a.pages[0].tags["XResolution"].value == b.pages[0].tags["XResolution"].value
        assert a.imagej_metadata["unit"] == b.imagej_metadata["unit"] == "um"
    assert _rois(out / "rois/frame.zip") == _rois(cli / "rois/frame.zip")
    assert (out / "overlays/frame.png").read_bytes() == (cli / "overlays/frame.png").read_bytes()


def test_edited_labels_are_renumbered_measured_and_written(segmented, tmp_path):
    result, segmenter = segmented
    labels = result.measured.labels.copy()
    n = int(labels.max())
    labels[labels == 1] = 0  # the user deleted object 1 ...
    labels[2:12, 2:14] = 999  # ... and painted a new one with a free id
    exported = export_result(result, labels, tmp_path / "out", segmenter)
    assert sorted(np.unique(exported.labels))[1:] == list(range(1, n + 1))  # 1..N again: n - 1 old + 1 new
    rows = _csv(tmp_path / "out" / "objects.csv")
    assert len(rows) == n
    new = [r for r in rows if r["score"] == ""]  # the hand-painted object has no model score
    assert len(new) == 1 and int(new[0]["area_px"]) == 120
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "labels" / "frame.tif"), exported.labels)


def test_a_layer_without_its_file_is_written_beside_the_results(segmented, tmp_path):
    result, segmenter = segmented
    from dataclasses import replace

    crop = replace(result, image=ImageData(tmp_path / "gone.tif", result.image.array, result.image.pixel_size))
    exported = export_result(crop, result.measured.labels, tmp_path / "out", segmenter)
    copy = tmp_path / "out" / "images" / "frame.tif"
    assert exported.record.path == str(copy)
    again = read_image(copy)
    assert np.array_equal(again.array, result.image.array) and again.pixel_size.nm == pytest.approx(5.0)
