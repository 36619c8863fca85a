"""Read a labelled dataset from a folder, whatever format the lab has.

`read_dataset` reads every image it can and reports the rest (`Dataset.skipped`,
each naming the file and cause) plus warnings; it never drops anything
silently. `load_dataset` is the strict entry for training: it refuses a
dataset in which any image had to be skipped, listing every such file, unless
`allow_skipped=True`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .coco import broken_json, is_coco, read_coco
from .imagej_rois import is_imagej_rois, read_imagej_rois
from .label_images import is_label_images, read_label_images
from .mask_folders import is_mask_folders, read_mask_folders
from .types import Dataset, DatasetError, LabelledImage, Problem
from .yolo import is_yolo, read_yolo

# name -> (probe, reader); the order is the order of the `--format` help text.
FORMATS: dict[str, tuple[Callable[[Path], bool], Callable[[Path], Dataset]]] = {
    "coco": (is_coco, read_coco),
    "masks": (is_mask_folders, read_mask_folders),
    "labels": (is_label_images, read_label_images),
    "imagej": (is_imagej_rois, read_imagej_rois),
    "yolo": (is_yolo, read_yolo),
}
FORMAT_HELP = {
    "coco": "COCO instance JSON (polygons or RLE)",
    "masks": "Images/<name>.* + Masks/<name>/<name>_Mask_K.* (one binary mask per mitochondrion)",
    "labels": "label images (0 = background): x_labels.tif / x_masks.png beside x, or images/ + labels/ (or masks/)",
    "imagej": "Fiji/ImageJ ROI sets: <stem>.zip or <stem>.roi beside the images or in rois/",
    "yolo": "images/ + labels/<stem>.txt YOLO segmentation polygons",
}

__all__ = ["FORMATS", "FORMAT_HELP", "Dataset", "DatasetError", "LabelledImage", "Problem", "detect_format", "load_dataset", "read_dataset"]


def detect_format(folder: Path) -> str:
    """The one format whose layout `folder` has; several or none is an error that says what to do."""
    folder = Path(folder)
    if folder.is_file():
        if is_coco(folder):
            return "coco"
        raise DatasetError(broken_json(folder)[0])
    found = [name for name, (probe, _) in FORMATS.items() if probe(folder)]
    if len(found) == 1:
        return found[0]
    if not found:
        broken = "".join(f"\nunusable JSON: {b}" for b in broken_json(folder))
        raise DatasetError(f"{folder}: no known label layout found; expected one of:\n" + "\n".join(f"  {k}: {v}" for k, v in FORMAT_HELP.items())
                           + "\n(use --format to force one)" + broken)
    raise DatasetError(f"{folder}: looks like several label formats ({', '.join(found)}); choose one with --format")


def read_dataset(folder: Path | str, fmt: str = "auto") -> Dataset:
    """Read everything usable; problems are collected, not raised. Raises DatasetError only when nothing can be read at all."""
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"{folder}: no such file or folder")
    if folder.is_file() and folder.suffix.lower() != ".json":
        raise DatasetError(f"{folder}: a dataset is a folder (or a COCO .json file)")
    name = detect_format(folder) if fmt == "auto" else fmt
    if name not in FORMATS:
        raise DatasetError(f"unknown format {name!r}; choose auto or one of {', '.join(FORMATS)}")
    if folder.is_file() and name != "coco":
        raise DatasetError(f"{folder}: only the coco format is read from a single file")
    try:
        return FORMATS[name][1](folder)
    except FileNotFoundError as exc:
        raise DatasetError(str(exc)) from None


def load_dataset(folder: Path | str, fmt: str = "auto", allow_skipped: bool = False) -> list[LabelledImage]:
    """The usable images; fails with every skipped file listed unless `allow_skipped`."""
    ds = read_dataset(folder, fmt)
    if ds.skipped and not allow_skipped:
        lines = "\n".join(f"  {p}" for p in ds.skipped)
        raise DatasetError(f"{folder}: {len(ds.skipped)} image(s) cannot be used (fix or remove them; `mito-train --data {folder} --check-data` lists every problem):\n{lines}")
    return ds.items
