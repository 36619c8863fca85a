"""ImageJ ROI sets (a `.zip` for Fiji's ROI Manager), one polygon per mitochondrion.

Each outline is the mask's 0.5 iso-contour (skimage `find_contours`), which
runs through the middle of the edges between inside and outside pixels; in
ImageJ's corner-based coordinates that is `(col + 0.5, row + 0.5)`, so the
polygon contains exactly the centres of the mask's pixels and Fiji's Measure
gives the same area as `objects.csv`. A mask in several pieces keeps its
largest outline; holes are not drawn. ROI names are the label ids (`0001`);
in a stack `z0003-0001` (plane 3, id 1), with the plane as the ROI's stack position.
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from roifile import ImagejRoi
from skimage.measure import find_contours

from .atomic import temp_path


def outline(offset: tuple[int, int], mask: np.ndarray) -> np.ndarray:
    """(N, 2) float x, y polygon in ImageJ coordinates for one mask crop at `offset` (row, col)."""
    padded = np.pad(mask.astype(np.float32), 1)
    contours = find_contours(padded, 0.5)
    if not contours:
        raise ValueError("empty mask has no outline")
    best = max(contours, key=_polygon_area)
    rows = best[:-1, 0] - 1 + offset[0] + 0.5  # drop the repeated closing point, undo the pad
    cols = best[:-1, 1] - 1 + offset[1] + 0.5
    return np.stack([cols, rows], axis=1)


def _polygon_area(c: np.ndarray) -> float:
    y, x = c[:, 0], c[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def instance_rois(offsets: np.ndarray, masks: list[np.ndarray], ids: Iterable[int], plane: int | None = None) -> list[ImagejRoi]:
    """One ROI per mask, named by its label id; `plane` (0-based) sets the stack position."""
    prefix = "" if plane is None else f"z{plane + 1:04d}-"
    return [
        ImagejRoi.frompoints(outline((int(r), int(c)), m), name=f"{prefix}{int(lab):04d}", position=plane)
        for (r, c), m, lab in zip(offsets, masks, ids)
    ]


def write_rois(path: Path, rois: list[ImagejRoi]) -> Path:
    """Write a ROI Manager zip (an empty zip when there are no ROIs, so every image has its file)."""
    with temp_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for roi in rois:
                zf.writestr(f"{roi.name}.roi", roi.tobytes())
    return Path(path)
