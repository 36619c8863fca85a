"""The per-object table under the Segment widget: one row per mitochondrion; clicking a row selects it (Qt)."""
from __future__ import annotations

import math

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem

# objects.csv columns shown (all of them are in the Labels layer's features and in objects.csv)
COLUMNS = ("id", "area_px", "area_um2", "feret_max_um", "feret_min_um", "circularity", "aspect_ratio", "solidity",
           "score", "touches_border")


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class _Number(QTableWidgetItem):
    """Sorts by value, not by text."""

    def __init__(self, value):
        super().__init__(_text(value))
        self.value = value if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)) else -math.inf

    def __lt__(self, other):
        return self.value < getattr(other, "value", -math.inf)


class ObjectsTable(QTableWidget):
    """`set_rows(rows)` with objects.csv rows; emits `object_selected(label id)` when a row is chosen."""

    object_selected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.itemSelectionChanged.connect(self._selected)

    def set_rows(self, rows: list[dict]) -> None:
        self.setSortingEnabled(False)
        self.blockSignals(True)
        self.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, col in enumerate(COLUMNS):
                self.setItem(i, j, _Number(row.get(col)))
        self.blockSignals(False)
        self.setSortingEnabled(True)
        self.sortItems(0, Qt.AscendingOrder)  # by id, as objects.csv
        self.resizeColumnsToContents()

    def label_at(self, row: int) -> int:
        return int(self.item(row, 0).value)

    def select_label(self, label: int) -> None:
        """Select the row of `label` (e.g. picked in the viewer); no row if it has none."""
        for i in range(self.rowCount()):
            if self.label_at(i) == label:
                self.selectRow(i)
                self.scrollToItem(self.item(i, 0))
                return
        self.clearSelection()

    def _selected(self) -> None:
        rows = {i.row() for i in self.selectedItems()}
        if len(rows) == 1:
            self.object_selected.emit(self.label_at(rows.pop()))
