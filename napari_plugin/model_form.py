"""What both widgets share (Qt): the model settings (model folder, backend, device, thresholds, pixel size),
a folder field, and the buttons / progress / status block under each form that runs something."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                            QProgressBar, QPushButton, QVBoxLayout, QWidget)

from mitotally.runtime.backends.select import BACKEND_NAMES
from mitotally.runtime.pixel_size import parse_pixel_size
from mitotally.runtime.segmenter import ModelNotFound, default_model_dir

from .segmenting import SegmentSettings

DEVICES = ("auto", "cpu", "cuda")


def push_button(text: str, on_click: Callable[[], object], enabled: bool = True, tip: str = "") -> QPushButton:
    button = QPushButton(text)
    button.clicked.connect(lambda: on_click())  # not the slot itself: Qt would pass `checked` as its argument
    button.setEnabled(enabled)
    if tip:
        button.setToolTip(tip)
    return button


def run_panel(layout: QVBoxLayout, form: QFormLayout, buttons: Sequence[QPushButton],
              progress_max: int | None = None) -> tuple[QProgressBar, QLabel]:
    """Lay out `form`, a row of `buttons`, a progress bar (0..progress_max; Qt's 0..100 when None) and a
    wrapping status line into `layout`; returns the bar and the line."""
    row = QHBoxLayout()
    for b in buttons:
        row.addWidget(b)
    bar = QProgressBar()
    if progress_max is not None:
        bar.setRange(0, progress_max)
    status = QLabel("")
    status.setWordWrap(True)
    layout.addLayout(form)
    layout.addLayout(row)
    layout.addWidget(bar)
    layout.addWidget(status)
    return bar, status


def _threshold_box(tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(0.0, 0.99)
    box.setSingleStep(0.05)
    box.setDecimals(2)
    box.setSpecialValueText("model's")  # 0: the value the model chose on its validation images
    box.setToolTip(tip)
    return box


class FolderField(QWidget):
    """A path line edit with a Browse button (a folder)."""

    def __init__(self, placeholder: str = "", tip: str = "", parent=None):
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.setToolTip(tip)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit)
        row.addWidget(browse)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", self.edit.text() or str(Path.home()))
        if folder:
            self.edit.setText(folder)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text).expanduser() if text else None

    def set_path(self, path: Path | None) -> None:
        self.edit.setText("" if path is None else str(path))


class ModelForm:
    """Rows for a QFormLayout: model, backend, device, score and mask thresholds -> `SegmentSettings`."""

    def __init__(self, form: QFormLayout):
        try:
            shipped = f"the shipped model ({default_model_dir().name})"
        except ModelNotFound:
            shipped = "a model folder (none is shipped)"
        self.model = FolderField(shipped, "a model folder with model.json, as mito-train writes it; empty: the shipped model")
        self.backend = QComboBox()
        self.backend.addItems(BACKEND_NAMES)
        self.backend.setToolTip("inference engine; auto picks the fastest available (as mito-run --backend)")
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.score = _threshold_box("keep detections scoring at least this (mito-run --score-threshold)")
        self.mask = _threshold_box("a pixel belongs to a mitochondrion at this mask probability (mito-run --mask-threshold)")
        self.tta = QCheckBox("4 flipped views, fused")
        self.tta.setToolTip("test-time augmentation (mito-run --tta): more accurate on the held-out images, ~2.5x the time on a CPU")
        for label, widget in (("model", self.model), ("backend", self.backend), ("device", self.device),
                              ("score threshold", self.score), ("mask threshold", self.mask), ("test-time augmentation", self.tta)):
            form.addRow(label, widget)

    def settings(self) -> SegmentSettings:
        return SegmentSettings(model_dir=self.model.path(), backend=self.backend.currentText(),
                               device=self.device.currentText(), score_threshold=self.score.value() or None,
                               mask_threshold=self.mask.value() or None, tta=self.tta.isChecked())


def parse_override(text: str) -> float | None:
    """A pixel size typed by the user (`4.2`, `4.2nm`, `0.0042um`) in nm; None when empty. ValueError if unreadable."""
    text = text.strip()
    return parse_pixel_size(text) if text else None
