"""The Segment widget in an offscreen napari viewer: segment, inspect, export, correct, train."""
from __future__ import annotations

import csv
import io
import os
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import tifffile

from plugin_helpers import run_mito_run

pytest.importorskip("napari", reason="napari is not installed: pip install -e '.[napari]' pytest-qt")

from mitotally.napari.finetune import Progress  # noqa: E402
from mitotally.napari.segment_widget import SegmentWidget  # noqa: E402

TIMEOUT_MS = 240_000


def _objects(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _segment(viewer, qtbot, path: Path, model: Path | None) -> SegmentWidget:
    viewer.open(str(path), plugin="mitotally")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment mitochondria", area="right")
    widget.model_form.model.set_path(model)
    assert widget.pixel_size.text() == "5"  # from the TIFF's calibration
    widget.segment_button.click()
    qtbot.waitUntil(lambda: widget.result is not None and widget.cancel_button.isEnabled() is False, timeout=TIMEOUT_MS)
    return widget


def test_segment_matches_mito_run_and_rows_select_objects(viewer, qtbot, small_frame, det_model, tmp_path):
    widget = _segment(viewer, qtbot, small_frame, det_model)
    cli = run_mito_run([small_frame], tmp_path / "cli", det_model)
    layer = widget.labels_layer
    assert layer.name == "frame.tif mitochondria" and layer in viewer.layers
    assert np.array_equal(layer.data, tifffile.imread(cli / "labels" / "frame.tif"))
    assert tuple(layer.scale) == pytest.approx((0.005, 0.005))
    rows = _objects(cli / "objects.csv")
    assert list(layer.features["index"]) == [int(r["id"]) for r in rows]
    assert list(layer.features["area_px"]) == [int(r["area_px"]) for r in rows]
    assert list(layer.features["area_um2"]) == pytest.approx([float(r["area_um2"]) for r in rows])
    assert widget.table.rowCount() == len(rows)
    widget.table.selectRow(len(rows) - 1)
    assert layer.selected_label == int(rows[-1]["id"])
    camera = viewer.scene.camera if hasattr(getattr(viewer, "scene", None), "camera") else viewer.camera
    want = [layer.translate[-2] + layer.scale[-2] * float(rows[-1]["centroid_row_px"]),
            layer.translate[-1] + layer.scale[-1] * float(rows[-1]["centroid_col_px"])]
    assert list(camera.center)[-2:] == pytest.approx(want, abs=1e-3)  # the view is centred on the object
    # export writes mito-run's files
    widget.export_to(tmp_path / "export")
    qtbot.waitUntil(lambda: widget.last_export is not None, timeout=TIMEOUT_MS)
    assert _objects(tmp_path / "export" / "objects.csv") == rows
    assert np.array_equal(tifffile.imread(tmp_path / "export" / "labels" / "frame.tif"), layer.data)


def test_corrections_go_into_a_training_set_and_fine_tuning_loads_the_new_model(viewer, qtbot, small_frame, det_model,
                                                                                tmp_path, monkeypatch):
    widget = _segment(viewer, qtbot, small_frame, det_model)
    layer = widget.labels_layer
    n = int(layer.data.max())
    corrected = layer.data.copy()
    corrected[corrected == 1] = 0  # delete one object, paint a new one
    corrected[2:12, 2:14] = n + 5
    layer.data = corrected
    added = widget.add_to_training(tmp_path / "train")
    assert added.instances == n
    from mitotally.trainer.cli import main as mito_train

    text = io.StringIO()
    with redirect_stdout(text):
        assert mito_train(["--data", str(tmp_path / "train"), "--check-data"]) == 0
    assert any("instances " in line and line.rstrip(" │").endswith(f" {n}") for line in text.getvalue().splitlines())

    class Finished:  # stands in for the mito-train subprocess (tests/napari_plugin/test_finetune.py runs a real one)
        model_dir = det_model

        def poll(self):
            return Progress(1.0, f"fine-tuned model written to {det_model}", True, True)

        def cancel(self):
            pass

    started = []
    monkeypatch.setattr("mitotally.napari.segment_widget.FineTune.start", lambda job: started.append(job) or Finished())
    widget.fine_tune(out=tmp_path / "new")
    [job] = started
    assert job.data == tmp_path / "train" and job.init == det_model and job.out == tmp_path / "new"
    qtbot.waitUntil(lambda: "Segment now uses it" in widget.train_status.text(), timeout=60_000)
    assert widget.model_form.model.path() == det_model and widget.finetune_button.isEnabled()
    assert widget.models.is_loaded(widget.model_form.settings())  # loaded, not only named


def test_cancel(viewer, qtbot, small_frame, det_model):
    viewer.open(str(small_frame), plugin="mitotally")
    widget = SegmentWidget(viewer)
    widget.model_form.model.set_path(det_model)
    widget.segment()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.segment_button.isEnabled(), timeout=TIMEOUT_MS)
    assert widget.result is None and widget.status.text() == "cancelled"


def test_shipped_model_on_a_sample_crop_and_the_screenshot(viewer, qtbot, sample_crop, tmp_path):
    widget = _segment(viewer, qtbot, sample_crop, None)
    cli = run_mito_run([sample_crop], tmp_path / "cli", None)
    rows = _objects(cli / "objects.csv")
    assert len(rows) >= 4  # mitochondria in the Lucchi crop
    assert np.array_equal(widget.labels_layer.data, tifffile.imread(cli / "labels" / "lucchi_crop.tif"))
    assert list(widget.labels_layer.features["area_px"]) == [int(r["area_px"]) for r in rows]
    widget.table.selectRow(0)
    assert widget.labels_layer.selected_label == 1
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot.shape[0] > 500 and shot.std() > 10  # the window with the canvas drawn, not a blank grab
    target = os.environ.get("MITO_NAPARI_SCREENSHOT")  # e.g. docs/napari_widget.png, to refresh the README's picture
    from PIL import Image

    Image.fromarray(shot).save(target or tmp_path / "napari_widget.png")
