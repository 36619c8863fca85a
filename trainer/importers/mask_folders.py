"""One binary mask file per mitochondrion: `Images/<name>.jpg` + `Masks/<name>/<name>_Mask_K.jpg`.

Masks saved as JPEG are noisy: edges carry grey values and isolated specks
appear away from the object. Each mask is thresholded at 127 (half of 8-bit
white; 0.5 for 0/1 masks, 32767 for 16-bit), then only its largest
8-connected component is kept, because a mitochondrion is one connected object
and the other components are compression specks; holes up to
`MAX_HOLE_PX` pixels are filled for the same reason. A dropped part larger than
a speck (> `SPECK_PX` px and > 1% of the kept part) is flagged: it usually
means two objects were drawn into one mask file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ...runtime.image_io import IMAGE_SUFFIXES
from .common import build_item, child_dir, dedupe_names, image_files, image_folder, load_image, natural_key, rel
from .rasterize import Region, region_from_mask
from .types import EMPTY_MASK, EXTRA_PARTS, NO_LABELS, ORPHAN, SIZE_MISMATCH, Dataset, Problem

MASK_DIR_NAMES = ("masks", "mask")
MAX_HOLE_PX = 64
SPECK_PX = 20
_EIGHT = np.ones((3, 3), bool)


def _mask_dir(folder: Path) -> Path | None:
    return child_dir(folder, MASK_DIR_NAMES)


def is_mask_folders(folder: Path) -> bool:
    masks = _mask_dir(folder)
    if masks is None:
        return False
    stems = {p.stem for p in image_files(image_folder(folder))}
    return any(d.is_dir() and d.name in stems for d in masks.iterdir())


def binarize(mask: np.ndarray) -> np.ndarray:
    """Threshold a possibly lossy mask: > 127 for 8-bit, > 0 for 0/1 masks, > 32767 for 16-bit."""
    if mask.ndim == 3:
        mask = mask.max(axis=-1)
    if mask.dtype == bool:
        return mask
    top = float(mask.max()) if mask.size else 0.0
    if top <= 1:
        return mask > 0.5 if np.issubdtype(mask.dtype, np.floating) else mask > 0
    return mask > (32767 if top > 255 else 127)


def clean_mask(mask: np.ndarray) -> tuple[Region | None, list[int]]:
    """Largest 8-connected component with small holes filled; also returns the sizes of dropped parts that are not specks."""
    region = region_from_mask(mask)
    if region is None:
        return None, []
    lab, n = ndimage.label(region.mask, _EIGHT)
    sizes = np.bincount(lab.ravel())[1:]
    keep = int(np.argmax(sizes)) + 1
    big_dropped = [int(s) for k, s in enumerate(sizes, 1) if k != keep and s > SPECK_PX and s > 0.01 * sizes[keep - 1]]
    obj = lab == keep
    holes = ndimage.binary_fill_holes(obj) & ~obj
    if holes.any():
        hl, _ = ndimage.label(holes)
        small = np.bincount(hl.ravel()) <= MAX_HOLE_PX
        small[0] = False
        obj |= small[hl]
    tight = region_from_mask(obj)
    (r, c), (dr, dc) = region.offset, tight.offset
    return Region((r + dr, c + dc), tight.mask), big_dropped


def read_mask_folders(folder: Path) -> Dataset:
    folder = Path(folder)
    ds = Dataset(folder, "masks")
    mask_root = _mask_dir(folder)
    if mask_root is None:
        raise FileNotFoundError(f"{folder}: mask-folder layout needs a Masks/ sub-folder with one folder per image")
    stems = set()
    for img_path in image_files(image_folder(folder)):
        stems.add(img_path.stem)
        data = load_image(img_path, folder)
        if isinstance(data, Problem):
            ds.skipped.append(data)
            continue
        shape = data.array.shape[:2]
        mdir = mask_root / img_path.stem
        problems: list[Problem] = []
        regions: list[Region] = []
        if not mdir.is_dir():
            problems.append(Problem(rel(img_path, folder), NO_LABELS, f"no mask folder {rel(mdir, folder)}/ (treated as an image without mitochondria)"))
        files = sorted((p for p in mdir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name)) if mdir.is_dir() else []
        fatal = None
        for mpath in files:
            m = load_image(mpath, folder)
            if isinstance(m, Problem):
                fatal = m
                break
            if m.array.shape[:2] != shape:
                fatal = Problem(rel(mpath, folder), SIZE_MISMATCH, f"mask {m.array.shape[1]}x{m.array.shape[0]} vs image {shape[1]}x{shape[0]}")
                break
            region, dropped = clean_mask(binarize(m.array))
            if region is None:
                problems.append(Problem(rel(mpath, folder), EMPTY_MASK, "nothing above the threshold"))
                continue
            if dropped:
                problems.append(Problem(rel(mpath, folder), EXTRA_PARTS, f"kept {region.area} px, dropped parts of {', '.join(map(str, dropped))} px"))
            regions.append(region)
        if fatal is not None:
            ds.skipped.append(fatal)
            continue
        ds.items.append(build_item(img_path.stem, img_path, data, regions, rel(mdir, folder) + "/", problems))
    for d in sorted(mask_root.iterdir()):
        if d.is_dir() and d.name not in stems:
            ds.notes.append(Problem(rel(d, folder) + "/", ORPHAN, "no image with this name"))
    return dedupe_names(ds)
