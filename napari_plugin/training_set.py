"""Corrected results -> a training folder that `mito-train --data FOLDER` reads as it is.

The layout is the sibling-folder one of `trainer/importers/label_images.py`:
`FOLDER/images/<stem>.tif` (the image, with its pixel size as ImageJ TIFF calibration, so the trainer
scales it to the model's pixel size as mito-run did) and `FOLDER/labels/<stem>.tif` (instance ids,
0 = background, written by the runtime's label writer with the same calibration). Adding the same
image again (same stem, same pixels) replaces its labels: the latest correction wins. Another image
with a stem already taken gets `<stem>_2`, `<stem>_3`, ...
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mitotally.runtime.image_io import IMAGE_SUFFIXES, ImageReadError, read_image
from mitotally.runtime.pixel_size import PixelSize
from mitotally.runtime.writers.labels import write_labels

from .image_tiff import imagej_array, write_image_tiff

IMAGES, LABELS = "images", "labels"


@dataclass(frozen=True)
class Added:
    image: Path
    labels: Path
    instances: int
    replaced: bool  # the same image was in the folder already: its labels were replaced


def _taken(folder: Path, stem: str) -> list[Path]:
    """Images in `folder/images` the trainer would name `stem` (any image suffix, any case)."""
    d = folder / IMAGES
    if not d.is_dir():
        return []
    return [p for p in d.iterdir() if p.stem.lower() == stem.lower() and p.suffix.lower() in IMAGE_SUFFIXES]


def _same_image(path: Path, array: np.ndarray) -> bool:
    try:
        return np.array_equal(read_image(path).array, imagej_array(array))  # as written
    except ImageReadError:
        return False


def free_stem(folder: Path, stem: str, array: np.ndarray) -> tuple[str, bool]:
    """(stem to write, whether it replaces the same image): `stem` if free or the same image, else stem_2, ..."""
    candidate, n = stem, 1
    while True:
        taken = _taken(folder, candidate)
        if not taken:
            return candidate, False
        if any(p.suffix.lower() in (".tif", ".tiff") and _same_image(p, array) for p in taken):
            return candidate, True
        n += 1
        candidate = f"{stem}_{n}"


def add_to_training_set(folder: Path, stem: str, image: np.ndarray, labels: np.ndarray,
                        pixel_size: PixelSize | None) -> Added:
    """Write `image` and its instance `labels` into `folder` (see the module doc)."""
    from skimage.segmentation import relabel_sequential

    folder = Path(folder)
    labels = np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} differ from the image's {image.shape[:2]}")
    stem, replaced = free_stem(folder, stem, image)
    ids = relabel_sequential(labels)[0]
    n = int(ids.max()) if ids.size else 0
    xy = (pixel_size.x_nm, pixel_size.y_nm) if pixel_size is not None else None
    label_path = write_labels(folder / LABELS / f"{stem}.tif", [ids], ids.shape, 1, n, xy)
    image_path = write_image_tiff(folder / IMAGES / f"{stem}.tif", image, pixel_size)
    return Added(image_path, label_path, n, replaced)
