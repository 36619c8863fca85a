"""Writers: each takes a result and returns the paths it wrote; every file is written atomically.

One module per output: `labels` (label TIFF), `rois` (ImageJ ROI set), `overlay`
(QC PNG), `coco` (RLE annotations), `tables` (records -> CSV/COCO tables).
"""
from .atomic import atomic_open, atomic_write_bytes

__all__ = ["atomic_open", "atomic_write_bytes"]
