"""One image or a folder segmented as mito-run does, with Cancel reaching inside the model run (no Qt)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from plugin_helpers import run_mito_run
from mitotally.napari.segmenting import Cancelled, Control, Models, SegmentSettings, segment_folder, segment_one
from mitotally.runtime.image_io import read_image


def _objects(out):
    with open(out / "objects.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def models() -> Models:
    return Models()  # loaded once per settings, as in the widget


def test_one_image_gives_mito_runs_objects_and_areas(small_frame, det_model, models, tmp_path):
    seen = []
    result = segment_one(read_image(small_frame), small_frame.name, SegmentSettings(det_model), None, models,
                         Control(on_tiles=seen.append))
    out = run_mito_run([small_frame], tmp_path / "out", det_model)
    assert np.array_equal(result.measured.labels, tifffile.imread(out / "labels" / "frame.tif"))
    rows = _objects(out)
    assert len(rows) == len(result.measured.rows) > 0
    assert [int(r["area_px"]) for r in rows] == [r["area_px"] for r in result.measured.rows]
    assert [float(r["area_um2"]) for r in rows] == pytest.approx([r["area_um2"] for r in result.measured.rows])
    assert seen and seen == sorted(seen)  # tile counts reported as the model ran


def test_cancel_stops_before_the_next_tiles(small_frame, det_model, models):
    control = Control()
    control.cancel.set()
    with pytest.raises(Cancelled):
        segment_one(read_image(small_frame), small_frame.name, SegmentSettings(det_model), None, models, control)


def test_a_typed_pixel_size_overrides_the_files_as_mito_runs_option(small_frame, det_model, models):
    result = segment_one(read_image(small_frame), small_frame.name, SegmentSettings(det_model), 10.0, models, Control())
    assert result.segmented.px.nm == 10.0 and result.segmented.source == "--pixel-size"
    assert result.measured.rows[0]["area_um2"] == pytest.approx(result.measured.rows[0]["area_px"] * 1e-4)


def test_a_folder_gives_mito_runs_output_contract(small_frame, det_model, models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        (folder / f"f{i}.tif").write_bytes(small_frame.read_bytes())
    progress = []
    summary = segment_folder(folder, tmp_path / "out", SegmentSettings(det_model), models, Control(),
                             on_result=lambda r, done, total: progress.append((r.key, done, total)))
    assert not summary.failed and progress == [("f0.tif", 1, 2), ("f1.tif", 2, 2)]
    expected = run_mito_run([folder], tmp_path / "cli", det_model)
    assert _objects(tmp_path / "out") == _objects(expected)
    for sub in ("labels", "rois", "overlays", "records"):
        assert sorted(p.name for p in (tmp_path / "out" / sub).iterdir()) == sorted(p.name for p in (expected / sub).iterdir())


def test_cancelling_a_folder_keeps_finished_images_and_the_tables(small_frame, det_model, models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"f{i}.tif").write_bytes(small_frame.read_bytes())
    control = Control()
    with pytest.raises(Cancelled):
        segment_folder(folder, tmp_path / "out", SegmentSettings(det_model), models, control,
                       on_result=lambda r, done, total: control.cancel.set())
    # f0 reported, then Cancel; f1 may have been with the writer already (it is finished, as on Ctrl-C)
    recorded = {p.name.removesuffix(".json") for p in (tmp_path / "out" / "records").iterdir()}
    assert "f0.tif" in recorded and "f2.tif" not in recorded
    assert {r["image"] for r in _objects(tmp_path / "out")} == recorded


def test_tta_in_the_widget_is_mito_run_tta(small_frame, det_model, models, tmp_path):
    """The checkbox's setting segments as `mito-run --tta` does, with tiles (4 views each) still reported."""
    seen = []
    result = segment_one(read_image(small_frame), small_frame.name, SegmentSettings(det_model, tta=True), None, models,
                         Control(on_tiles=seen.append))
    out = run_mito_run([small_frame], tmp_path / "out", det_model, "--tta")
    assert np.array_equal(result.measured.labels, tifffile.imread(out / "labels" / "frame.tif"))
    assert seen and SegmentSettings(det_model, tta=True).config().tta is True
