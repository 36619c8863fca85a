"""The Batch widget: a folder in, mito-run's output contract out, then opened in the viewer."""
from __future__ import annotations

import csv

import pytest

from plugin_helpers import run_mito_run

pytest.importorskip("napari", reason="napari is not installed: pip install -e '.[napari]' pytest-qt")

from mitotally.napari.batch_widget import BatchWidget  # noqa: E402


def _objects(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_folder_gives_mito_runs_outputs_and_opens_as_layers(viewer, qtbot, small_frame, det_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.tif", "b.tif"):
        (folder / name).write_bytes(small_frame.read_bytes())
    widget = BatchWidget(viewer)
    widget.input.set_path(folder)
    widget.output.set_path(tmp_path / "out")
    widget.model_form.model.set_path(det_model)
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=240_000)
    assert widget.summary is not None and not widget.summary.failed, widget.status.text()
    assert widget.bar.value() == widget.bar.maximum() == 2
    cli = run_mito_run([folder], tmp_path / "cli", det_model)
    assert _objects(tmp_path / "out" / "objects.csv") == _objects(cli / "objects.csv")
    widget.open_button.click()
    names = [layer.name for layer in viewer.layers]
    assert names == ["a.tif", "a.tif mitochondria", "b.tif", "b.tif mitochondria"]
    assert len(viewer.layers["a.tif mitochondria"].features) == len([r for r in _objects(cli / "objects.csv") if r["image"] == "a.tif"])
