"""The Segment widget: segment an image layer, inspect each object, correct, export, train on the corrections.

Every long step runs off the GUI thread (napari's thread workers for segmenting and exporting, a
subprocess for fine-tuning, polled by a timer), with a progress bar and a Cancel button. What each
step does lives in the non-Qt modules: `segmenting` (mito-run's segment -> paint -> measure),
`export` (mito-run's outputs), `training_set` (mito-train's label-image layout), `finetune`.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLineEdit,
                            QPushButton, QVBoxLayout, QWidget)

from mitotally.runtime.image_io import ImageData
from mitotally.runtime.names import stem_name

from .export import Exported, export_result
from .finetune import FineTune, Training
from .layers import META, features_of, layer_pixel_size, pixel_size_meta
from .model_form import FolderField, ModelForm, parse_override, push_button, run_panel
from .objects_table import ObjectsTable
from .segmenting import Cancelled, Control, Models, Result, segment_one
from .training_set import add_to_training_set


def _px_text(px) -> str:
    if px is None:
        return ""
    return f"{px.x_nm:.6g}" if px.is_square else f"{px.x_nm:.6g} x {px.y_nm:.6g}"


def _cancellable(fn, *args):
    """`fn(*args)`, or None when cancelled (`Cancelled` is a BaseException the worker would not catch)."""
    try:
        return fn(*args)
    except Cancelled:
        return None


class SegmentWidget(QWidget):
    """Dock widget: Segment (image, pixel size, model, thresholds), Objects, Export, Training."""

    _tiles = Signal(int)  # tiles inferred so far, emitted from the worker thread

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.models = Models()
        self.result: Result | None = None  # the last segmentation
        self.labels_layer = None  # its Labels layer
        self.worker = None  # the thread worker in flight
        self.control: Control | None = None
        self.training: Training | None = None
        self.last_export: Exported | None = None
        self.loader = None  # the worker loading a fine-tuned model
        self._layer_px = None  # the chosen layer's own pixel size, shown in the pixel size field

        layout = QVBoxLayout(self)
        layout.addWidget(self._segment_box())
        layout.addWidget(self._objects_box(), stretch=1)
        layout.addWidget(self._export_box())
        layout.addWidget(self._training_box())
        self._tiles.connect(lambda n: self.status.setText(f"segmenting: {n} tiles"))
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._poll_training)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    # ---- layout
    def _segment_box(self) -> QGroupBox:
        box = QGroupBox("Segment")
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.currentTextChanged.connect(self._image_chosen)
        form.addRow("image", self.image_combo)
        self.pixel_size = QLineEdit()
        self.pixel_size.setPlaceholderText("unknown: scale estimated, areas in px")
        self.pixel_size.setToolTip("nm per pixel (4.2, 4.2nm or 0.0042um); filled from the image's calibration. "
                                   "A value typed here overrides it, as mito-run --pixel-size does")
        form.addRow("pixel size (nm)", self.pixel_size)
        self.model_form = ModelForm(form)
        self.segment_button = push_button("Segment", self.segment)
        self.cancel_button = push_button("Cancel", self.cancel, enabled=False)
        self.progress, self.status = run_panel(QVBoxLayout(box), form, (self.segment_button, self.cancel_button), 1)
        return box

    def _objects_box(self) -> QGroupBox:
        box = QGroupBox("Objects (click a row to select the mitochondrion)")
        self.table = ObjectsTable()
        self.table.object_selected.connect(self.select_object)
        QVBoxLayout(box).addWidget(self.table)
        return box

    def _export_box(self) -> QGroupBox:
        box = QGroupBox("Export as mito-run does (objects.csv, labels/, rois/ for Fiji)")
        self.export_folder = FolderField("output folder", "objects.csv, images.csv, labels/<name>.tif, rois/<name>.zip ...")
        self.export_button = QPushButton("Export")
        self.export_button.clicked.connect(lambda: self.export_to(self.export_folder.path() or self._ask_folder()))
        row = QHBoxLayout(box)
        row.addWidget(self.export_folder, stretch=1)
        row.addWidget(self.export_button)
        return box

    def _training_box(self) -> QGroupBox:
        box = QGroupBox("Train on corrections")
        form = QFormLayout()
        self.training_folder = FolderField("training folder (images/ + labels/)", "read by mito-train --data FOLDER as it is")
        form.addRow("training set", self.training_folder)
        self.add_button = QPushButton("Add to training set")
        self.add_button.setToolTip("write the image and the Labels layer as you corrected it into the training folder")
        self.add_button.clicked.connect(lambda: self.add_to_training())
        form.addRow("", self.add_button)
        self.new_model = FolderField("new model folder (default: beside the training folder)")
        form.addRow("new model", self.new_model)
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.5, 24 * 60)
        self.minutes.setValue(10)
        self.minutes.setSuffix(" min")
        form.addRow("training time", self.minutes)
        self.finetune_button = push_button("Fine-tune", self.fine_tune,
                                           tip="mito-train --data <training set> --init <current model> -o <new model>, in the background")
        self.stop_button = push_button("Stop", self.stop_training, enabled=False)
        self.train_progress, self.train_status = run_panel(QVBoxLayout(box), form, (self.finetune_button, self.stop_button), 1000)
        return box

    def _ask_folder(self) -> Path | None:
        folder = QFileDialog.getExistingDirectory(self, "Export into")
        return Path(folder) if folder else None

    # ---- the image
    def _image_layers(self) -> list:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self, *_) -> None:
        current = self.image_combo.currentText()
        names = [layer.name for layer in self._image_layers()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        self.image_combo.blockSignals(False)
        if current in names:
            self.image_combo.setCurrentText(current)
        elif names:
            self.image_combo.setCurrentIndex(len(names) - 1)
        self._image_chosen(self.image_combo.currentText())

    def _image_chosen(self, name: str) -> None:
        layer = self.image_layer()
        self._layer_px = None if layer is None else layer_pixel_size(layer.metadata, layer.scale, layer.units)
        self.pixel_size.setText(_px_text(self._layer_px))

    def image_layer(self):
        name = self.image_combo.currentText()
        return next((layer for layer in self._image_layers() if layer.name == name), None)

    def _current_image(self, layer) -> tuple[ImageData, str, float | None]:
        """The layer's displayed 2-D plane as mito-run would read it, its key, and a typed pixel size override."""
        entry = layer.metadata.get(META) or {}
        data = layer.data
        plane = None
        spatial = 3 if layer.rgb else 2
        if np.ndim(data) > spatial:  # a stack: the plane on screen
            lead = tuple(int(i) for i in self.viewer.dims.current_step[: np.ndim(data) - spatial])
            plane = lead[-1] if lead else 0
            data = data[lead]
        array = np.asarray(data)
        if layer.rgb and array.shape[-1] == 4:
            array = array[..., :3]
        path = Path(entry.get("path") or (layer.source.path or "") or f"{layer.name}.tif")
        key = path.name if plane is None else f"{stem_name(path.name)}_plane{plane + 1}.tif"
        typed = self.pixel_size.text().strip()
        override = None if typed == _px_text(self._layer_px) else parse_override(typed)
        px = self._layer_px if override is None and typed else None
        return ImageData(path, array, px, entry.get("calibration_note", "")), key, override

    # ---- segment
    def _busy(self, busy: bool) -> None:
        for button in (self.segment_button, self.export_button, self.add_button):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setRange(0, 0 if busy else 1)  # 0..0: busy indicator
        self.progress.setValue(0 if busy else 1)

    def segment(self) -> None:
        """Segment the chosen image layer in a thread worker; the result becomes a Labels layer with features."""
        from napari.qt.threading import create_worker

        layer = self.image_layer()
        if layer is None:
            self.status.setText("open an image first")
            return
        try:
            image, key, override = self._current_image(layer)
        except ValueError as exc:
            self.status.setText(f"pixel size: {exc}")
            return
        self.control = Control(on_tiles=self._tiles.emit)
        settings = self.model_form.settings()
        self.status.setText("segmenting ..." if self.models.is_loaded(settings) else "loading the model ...")
        self._busy(True)
        self._t0 = time.perf_counter()
        self.worker = create_worker(_cancellable, segment_one, image, key, settings, override, self.models, self.control,
                                    _start_thread=False)
        self.worker.returned.connect(lambda result: self._show(result, layer))
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(lambda: self._busy(False))
        self.worker.start()

    def cancel(self) -> None:
        if self.control is not None:
            self.control.cancel.set()
            self.status.setText("cancelling (after the current tiles) ...")

    def _failed(self, exc: Exception) -> None:
        self.status.setText(f"failed: {type(exc).__name__}: {exc}")

    def _show(self, result: Result | None, image_layer) -> None:
        if result is None:
            self.status.setText("cancelled")
            return
        self.result = result
        rows = result.measured.rows
        name = f"{image_layer.name} mitochondria"
        meta = {META: {"key": result.key, "image": str(result.image.path), "pixel_size": pixel_size_meta(result.segmented.px)}}
        kwargs = dict(scale=image_layer.scale[-2:], translate=image_layer.translate[-2:], units=image_layer.units[-2:],
                      features=features_of(rows), metadata=meta)
        existing = next((la for la in self.viewer.layers if la.name == name), None)
        if existing is not None:
            self.viewer.layers.remove(existing)
        self.labels_layer = self.viewer.add_labels(result.measured.labels, name=name, **kwargs)
        self.labels_layer.events.selected_label.connect(lambda e: self.table.select_label(int(self.labels_layer.selected_label)))
        self.table.set_rows(rows)
        px = result.segmented.px
        unit = "µm²" if px is not None else "px (no pixel size)"
        self.status.setText("\n".join([f"{len(rows)} mitochondria in {time.perf_counter() - self._t0:.1f} s; areas in {unit}"]
                                      + result.warnings))

    def select_object(self, label: int) -> None:
        """Select `label` in the Labels layer (for painting) and centre the view on it."""
        layer = self.labels_layer
        if layer is None or layer not in self.viewer.layers:
            return
        layer.selected_label = label
        row = next((r for r in self.result_rows() if int(r["id"]) == label), None)
        if row is not None:
            y = layer.translate[-2] + layer.scale[-2] * row["centroid_row_px"]
            x = layer.translate[-1] + layer.scale[-1] * row["centroid_col_px"]
            scene = getattr(self.viewer, "scene", None)  # napari >= 0.9 moved the camera there
            camera = scene.camera if scene is not None and hasattr(scene, "camera") else self.viewer.camera
            center = list(camera.center)
            center[-2:] = [y, x]
            camera.center = tuple(center)

    def result_rows(self) -> list[dict]:
        """The rows now shown: the last export's (labels as corrected) or the segmentation's."""
        if self.last_export is not None and self.result is not None and self.last_export.record.key == self.result.key:
            return self.last_export.record.object_rows
        return self.result.measured.rows if self.result is not None else []

    def _check_result(self) -> bool:
        if self.result is None or self.labels_layer is None or self.labels_layer not in self.viewer.layers:
            self.status.setText("segment an image first (its Labels layer is what is exported or added)")
            return False
        return True

    # ---- export
    def export_to(self, folder: Path | None) -> None:
        """Write mito-run's outputs for the current result, with the Labels layer as it is now."""
        from napari.qt.threading import create_worker

        if folder is None or not self._check_result():
            return
        result, labels, models = self.result, np.array(self.labels_layer.data), self.models  # a copy: painting may go on
        self._busy(True)
        self.status.setText(f"exporting to {folder} ...")
        self.worker = create_worker(lambda: export_result(result, labels, Path(folder), models.get(result.settings)),
                                    _start_thread=False)
        self.worker.returned.connect(self._exported)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(lambda: self._busy(False))
        self.worker.start()

    def _exported(self, exported: Exported) -> None:
        self.last_export = exported
        layer = self.labels_layer
        if not np.array_equal(layer.data, exported.labels):  # ids renumbered 1..N after edits
            layer.data = exported.labels
        rows = exported.record.object_rows
        layer.features = features_of(rows)
        self.table.set_rows(rows)
        self.status.setText(f"exported {len(rows)} mitochondria to {exported.out} "
                            f"({', '.join(o for o in exported.record.outputs if not o.startswith('records'))}, objects.csv)")

    # ---- training
    def add_to_training(self, folder: Path | None = None):
        """Write the image and the (corrected) Labels layer into the training folder; returns `training_set.Added`."""
        folder = folder or self.training_folder.path()
        if folder is None:
            self.train_status.setText("choose a training folder first")
            return None
        if not self._check_result():
            return None
        self.training_folder.set_path(folder)
        stem = stem_name(self.result.key).replace("/", "_")
        added = add_to_training_set(folder, stem, self.result.image.array, np.asarray(self.labels_layer.data),
                                    self.result.segmented.px)
        how = "replaced the labels of" if added.replaced else "added"
        px = self.result.segmented.px
        scale = f"at {px.describe()}" if px is not None else "without a pixel size (mito-train assumes its default)"
        self.train_status.setText(f"{how} {added.image.name} ({added.instances} mitochondria) {scale} in {folder}")
        return added

    def fine_tune(self, out: Path | None = None, steps: int | None = None) -> Training | None:
        """Start `mito-train --init <current model>` on the training folder in the background."""
        folder = self.training_folder.path()
        if folder is None or not (folder / "images").is_dir():
            self.train_status.setText("add corrected images to a training folder first")
            return None
        out = out or self.new_model.path() or folder.parent / f"{folder.name}-model-{time.strftime('%Y%m%d-%H%M%S')}"
        self.new_model.set_path(out)
        job = FineTune(folder, out, self.model_form.model.path(), minutes=self.minutes.value(), steps=steps,
                       device=self.model_form.device.currentText())
        try:
            self.training = job.start()
        except (OSError, ValueError) as exc:
            self.train_status.setText(f"cannot start mito-train: {exc}")
            return None
        self.finetune_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.train_progress.setValue(0)
        reset = job.not_carried()
        self.train_status.setText("mito-train started ..." + (f" (the new model gets mito-train's defaults for "
                                                               f"{', '.join(reset)})" if reset else ""))
        self._timer.start()
        return self.training

    def stop_training(self) -> None:
        if self.training is not None:
            self.training.cancel()
        self._poll_training()

    def _poll_training(self) -> None:
        if self.training is None:
            return
        progress = self.training.poll()
        self.train_progress.setValue(int(progress.fraction * 1000))
        self.train_status.setText(progress.text)
        if not progress.finished:
            return
        self._timer.stop()
        self.finetune_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        model = self.training.model_dir
        if progress.ok and model is not None:
            self._load_new_model(model, progress.text)

    def _load_new_model(self, model: Path, done: str) -> None:
        """Make the fine-tuned model the current one and load it (off the GUI thread)."""
        from napari.qt.threading import create_worker

        self.model_form.model.set_path(model)
        self.models.forget()
        self.train_status.setText(f"{done}; loading it ...")
        self.loader = create_worker(self.models.get, self.model_form.settings(), _start_thread=False)
        self.loader.returned.connect(lambda _: self.train_status.setText(f"{done}; loaded: Segment now uses it"))
        self.loader.errored.connect(lambda exc: self.train_status.setText(f"{done}, but it does not load: {exc}"))
        self.loader.start()
