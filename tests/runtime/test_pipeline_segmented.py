"""`segment_image` -> `measure_plane` -> `process_segmented`: process_file's steps for callers that show or
correct a result before writing it (the napari plugin); the same objects and the same files."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mito_run_helpers import detecting_model, em_frame  # noqa: E402

from mitotally.runtime.image_io import read_image
from mitotally.runtime.pipeline import RunConfig, measure_plane, process_file, process_segmented, segment_image
from mitotally.runtime.reader import InputItem, decode
from mitotally.runtime.segmenter import Segmenter


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir, tmp_path_factory):
    return Segmenter(detecting_model(tiny_model_dir, tmp_path_factory.mktemp("det")), backend="torch", device="cpu")


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "f.tif"
    tifffile.imwrite(path, em_frame((200, 260), seed=5, n=7), imagej=True, resolution=(200, 200), metadata={"unit": "um"})
    return path


def _record(out: Path, key: str) -> dict:
    rec = json.loads((out / "records" / f"{key}.json").read_text())
    for k in ("timings", "source"):
        rec.pop(k)
    for row in rec["image_rows"]:
        row.pop("time_s")
    return rec


def test_the_steps_write_what_process_file_writes(segmenter, frame, tmp_path):
    config = RunConfig()
    process_file(frame, segmenter, tmp_path / "a", "f.tif", config)
    segmented = segment_image(read_image(frame), segmenter, config)
    measured = measure_plane(segmented)
    assert len(measured.rows) > 0, "the detecting model should find something"
    result = process_segmented(decode(InputItem(frame, "f.tif")), segmented, tmp_path / "b", config)
    assert result.ok
    assert _record(tmp_path / "a", "f.tif") == _record(tmp_path / "b", "f.tif")
    a, b = (tifffile.imread(tmp_path / d / "labels" / "f.tif") for d in "ab")
    assert np.array_equal(a, b) and np.array_equal(a, measured.labels)
    assert [r["area_px"] for r in result.object_rows] == [r["area_px"] for r in measured.rows]


def test_given_labels_are_measured_and_written_as_they_are(segmenter, frame, tmp_path):
    config = RunConfig()
    segmented = segment_image(read_image(frame), segmenter, config)
    labels = np.zeros(segmented.image.array.shape, np.uint16)
    labels[10:30, 10:40] = 1  # a hand-drawn object the model did not score
    labels[50:60, 50:55] = 2
    labels[50:60, 70:75] = 2  # one object in two pieces: kept as drawn
    corrected = replace(segmented, labels=labels, scores={1: 0.5})
    measured = measure_plane(corrected)
    assert [r["area_px"] for r in measured.rows] == [600, 100]
    assert measured.rows[0]["score"] == pytest.approx(0.5) and math.isnan(measured.rows[1]["score"])
    result = process_segmented(decode(InputItem(frame, "f.tif")), corrected, tmp_path, config)
    assert np.array_equal(tifffile.imread(tmp_path / "labels" / "f.tif"), labels)
    assert [r["area_px"] for r in result.object_rows] == [600, 100]
    with pytest.raises(ValueError, match="1..N"):
        measure_plane(replace(segmented, labels=labels * 2))
