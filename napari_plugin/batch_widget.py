"""The Batch widget: a folder in, mito-run's output contract out (`pipeline.run`), with progress and Cancel (Qt)."""
from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QFormLayout, QLineEdit, QVBoxLayout, QWidget

from .model_form import FolderField, ModelForm, parse_override, push_button, run_panel
from .segmenting import Cancelled, Control, Models, segment_folder


class BatchWidget(QWidget):
    """Segment every image of a folder into an output folder, as `mito-run FOLDER -o OUT` does."""

    _progress = Signal(int, int, str)  # done, total, last input's line (emitted from the worker thread)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.models = Models()
        self.worker = None
        self.control: Control | None = None
        self.summary = None  # the last run's `pipeline.RunSummary`
        form = QFormLayout()
        self.input = FolderField("folder of images", "TIFF, PNG, JPEG (DM3/DM4, MRC with the [em] extra)")
        self.output = FolderField("output folder", "objects.csv, images.csv, labels/, rois/, overlays/, records/; "
                                  "rerunning into it skips finished images")
        self.recursive = QCheckBox("also subfolders")
        self.pixel_size = QLineEdit()
        self.pixel_size.setPlaceholderText("from each file (as mito-run)")
        self.pixel_size.setToolTip("nm per pixel for every image, overriding the files' calibration (mito-run --pixel-size)")
        form.addRow("input", self.input)
        form.addRow("", self.recursive)
        form.addRow("output", self.output)
        form.addRow("pixel size (nm)", self.pixel_size)
        self.model_form = ModelForm(form)
        self.run_button = push_button("Run", self.start)
        self.cancel_button = push_button("Cancel", self.cancel, enabled=False)
        self.open_button = push_button("Open results", self.open_results, enabled=False)
        layout = QVBoxLayout(self)
        self.bar, self.status = run_panel(layout, form, (self.run_button, self.cancel_button, self.open_button))
        layout.addStretch(1)
        self._progress.connect(self._show_progress)

    def start(self) -> None:
        from napari.qt.threading import create_worker

        folder, out = self.input.path(), self.output.path()
        if folder is None or out is None:
            self.status.setText("choose an input and an output folder")
            return
        try:
            override = parse_override(self.pixel_size.text())
        except ValueError as exc:
            self.status.setText(f"pixel size: {exc}")
            return
        control, settings, recursive = Control(), self.model_form.settings(), self.recursive.isChecked()
        self.control = control
        self._busy(True)
        self.status.setText("loading the model ...")

        def job():  # on the worker thread: no widget is read here
            try:
                return segment_folder(folder, out, settings, self.models, control, recursive, override, on_result=self._report)
            except Cancelled:
                return None

        self.worker = create_worker(job, _start_thread=False)
        self.worker.returned.connect(self._done)
        self.worker.errored.connect(lambda exc: self.status.setText(f"failed: {type(exc).__name__}: {exc}"))
        self.worker.finished.connect(lambda: self._busy(False))
        self.worker.start()

    def _report(self, result, done: int, total: int) -> None:
        line = (f"{result.key}: failed: {result.error}" if not result.ok else
                f"{result.key}: {result.n_objects} mitochondria" + (" (done before)" if result.skipped else ""))
        self._progress.emit(done, total, line)

    def _show_progress(self, done: int, total: int, line: str) -> None:
        self.bar.setRange(0, total)
        self.bar.setValue(done)
        self.status.setText(f"{done}/{total}: {line}")

    def cancel(self) -> None:
        if self.control is not None:
            self.control.cancel.set()
            self.status.setText("cancelling: finished images are kept; Run again to continue")

    def _busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if busy:
            self.bar.setRange(0, 0)

    def _done(self, summary) -> None:
        out = self.output.path()
        self.open_button.setEnabled(out is not None and (Path(out) / "records").is_dir())
        if summary is None:
            self.status.setText(f"cancelled; finished images are in {out} (Run again to continue)")
            self.bar.setRange(0, 1)
            return
        self.summary = summary
        failed = len(summary.failed)
        self.bar.setRange(0, max(len(summary.results), 1))
        self.bar.setValue(len(summary.results))
        self.status.setText(f"{len(summary.results)} images, {summary.n_objects} mitochondria, {failed} failed "
                            f"({summary.wall_s:.1f} s): results in {out}" + (f"; {summary.table_error}" if summary.table_error else ""))

    def open_results(self) -> None:
        """Open the output folder in the viewer: every image with its labels and objects table."""
        out = self.output.path()
        if out is not None:
            self.viewer.open(str(out), plugin="mitotally")
