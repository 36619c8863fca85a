"""Helpers every importer shares: finding images, naming files in messages, reading safely."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ...runtime.image_io import IMAGE_SUFFIXES, ImageData, ImageReadError, read_image
from .types import DUPLICATE, NO_INSTANCES, NO_LABELS, OVERLAP, UNREADABLE, Dataset, LabelledImage, Problem

IMAGE_DIR_NAMES = ("images", "imgs", "image", "raw")


def rel(path: Path, root: Path) -> str:
    """The path as the user sees it in messages: relative to the dataset folder when inside it."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def natural_key(text: str) -> list:
    """Sort 'Mask_2' before 'Mask_10'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def child_dir(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first sub-folder whose name matches one of `names`, case-insensitively."""
    if not folder.is_dir():
        return None
    wanted = [n.lower() for n in names]
    found = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    for n in wanted:
        if n in found:
            return found[n]
    return None


def image_files(folder: Path) -> list[Path]:
    """Image files directly in `folder`, in natural order (hidden files skipped)."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def image_folder(root: Path) -> Path:
    """Where a dataset keeps its images: an `images/` (or `Images/`, `imgs/`) sub-folder if present, else the folder itself."""
    return child_dir(root, IMAGE_DIR_NAMES) or root


def inside(root: Path, candidate: Path) -> bool:
    """True when `candidate` stays inside `root` lexically (no `..` or absolute escape); symlinks the user made are allowed."""
    root_n = os.path.normpath(os.path.abspath(root))
    cand_n = os.path.normpath(os.path.abspath(candidate))
    return cand_n == root_n or cand_n.startswith(root_n + os.sep)


def load_image(path: Path, root: Path) -> ImageData | Problem:
    """The image, or the problem that makes it unusable (named by file)."""
    try:
        return read_image(path)
    except ImageReadError as exc:
        return Problem(rel(path, root), UNREADABLE, str(exc))


def dedupe_names(ds: Dataset) -> Dataset:
    """Names are file stems and must be unique (predictions are matched by stem): later duplicates are skipped."""
    seen: dict[str, LabelledImage] = {}
    kept = []
    for it in ds.items:
        if it.name in seen:
            ds.skipped.append(Problem(rel(it.path, ds.root), DUPLICATE, f"same name {it.name!r} as {rel(seen[it.name].path, ds.root)}; rename one"))
            continue
        seen[it.name] = it
        kept.append(it)
    ds.items = kept
    return ds


def build_item(name: str, path: Path, data: ImageData, regions: list, label_file: str, problems: list[Problem]) -> LabelledImage:
    """Paint the regions (smaller wins on overlap) and record overlaps and lost instances as problems."""
    from .rasterize import overlap_message, paint_regions

    painted = paint_regions(regions, data.array.shape[:2])
    if painted.overlap_px:
        problems.append(Problem(label_file, OVERLAP, overlap_message(painted)))
    if not regions and not any(p.kind == NO_LABELS for p in problems):
        problems.append(Problem(label_file, NO_INSTANCES, "no mitochondria in this image (kept as a negative example)"))
    return LabelledImage(name, path, data.array, painted.labels, data.pixel_size_nm, problems)
