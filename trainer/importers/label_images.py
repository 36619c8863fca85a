"""Instance label images (0 = background, one integer id per mitochondrion), as napari and Cellpose save them.

Two layouts are recognised:
- beside the images: `x.tif` + `x_labels.tif` / `x_masks.png` (Cellpose) / `x_cp_masks.png` / `x_label.png` / `x_mask.tif` ...
- in a sibling folder: `images/x.tif` + `labels/x.tif` (or `masks/`, `label/`, `mask/`, `gt/`), optionally with the same suffixes.
Labels must be lossless (TIFF or PNG, 8/16/32-bit integer, or float with integer values).

A third, for scoring only (`mito-eval`, not `mito-train`: there is nothing to train on): a folder of
label images with no raw images beside them (`read_label_only`), as napari or a collaborator
exports them. Each file is one image's ground truth, named by its stem (`x_labels.tif` -> `x`).
Nothing in the folder says whether a TIFF holds labels or an EM image, so `is_label_only` looks at
the pixels (`label_image_problem`): labels are integers whose commonest value is 0 and whose
neighbouring pixels are mostly equal; noisy EM is neither.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from .common import child_dir, dedupe_names, image_files, image_folder, load_image, natural_key, rel
from .types import BAD_LABELS, BINARY_SPLIT, EXTRA_PAGES, MULTIPART, NO_INSTANCES, NO_LABELS, ORPHAN, SIZE_MISMATCH, UNREADABLE, Dataset, LabelledImage, Problem

LABEL_SUFFIXES = ("_cp_masks", "_labels", "_label", "_masks", "_mask", "_instances", "-labels", "-masks")
LABEL_DIR_NAMES = ("labels", "masks", "label", "mask", "gt", "ground_truth")
LOSSLESS = (".tif", ".tiff", ".png")
_LOSSY = (".jpg", ".jpeg")
_MAX_DIRECT_ID = 1 << 22  # larger ids are renumbered 1..N (order kept) so per-id tables stay small


class LabelReadError(Exception):
    """A label file that cannot be used: `kind` (UNREADABLE or BAD_LABELS) and a one-line message."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def label_stem(path: Path) -> str | None:
    """`x_labels.tif` -> `x`; None when the name carries no label suffix."""
    low = path.stem.lower()
    for s in LABEL_SUFFIXES:
        if low.endswith(s) and len(low) > len(s):
            return path.stem[: -len(s)]
    return None


LABEL_ONLY = "labels-only"
_MIN_EQUAL_NEIGHBOURS = 0.8  # of horizontally adjacent pixel pairs; instance labels ~0.99, noisy EM ~0.1


def label_files(folder: Path) -> list[Path]:
    """Lossless label images in `folder` and its sub-folders (hidden ones skipped), in natural order."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in LOSSLESS
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(files, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def label_image_problem(arr: np.ndarray) -> str | None:
    """None if `arr` looks like an instance label image, else why not (in words for the user)."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and all(np.array_equal(arr[..., 0], arr[..., k]) for k in range(1, 3)):
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        return f"a {arr.ndim}-D array of shape {arr.shape}, not one plane of ids"
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
        if not np.issubdtype(arr.dtype, np.floating) or not np.array_equal(arr, np.round(arr)):
            return f"{arr.dtype} values that are not whole numbers"
    values, counts = np.unique(arr, return_counts=True)
    if values[np.argmax(counts)] != 0:
        return f"its commonest value is {values[np.argmax(counts)]:g}, not 0 (background)"
    same = float(np.mean(arr[:, 1:] == arr[:, :-1])) if arr.shape[1] > 1 else 1.0
    if same < _MIN_EQUAL_NEIGHBOURS:
        return f"only {same:.0%} of neighbouring pixels are equal (labels: nearly all); an EM image?"
    return None


def _label_only_dir(folder: Path) -> Path:
    """Where a label-only folder keeps its files: itself, else its `labels/` (or `masks/`, `gt/` ...) sub-folder."""
    if any(p.is_file() and p.suffix.lower() in LOSSLESS for p in folder.iterdir()):
        return folder
    return child_dir(folder, LABEL_DIR_NAMES) or folder


def is_label_only(folder: Path, probe: int = 3) -> bool:
    """True for a folder of label images without raw images: no image/label pairs, and its first
    `probe` files look like labels (`label_image_problem`)."""
    folder = Path(folder)
    if not folder.is_dir() or is_label_images(folder) or child_dir(folder, ("images", "imgs", "image", "raw")) is not None:
        return False
    files = label_files(_label_only_dir(folder))[:probe]
    if not files:
        return False
    for p in files:
        try:
            raw, _ = read_label_image(p)
        except LabelReadError:
            return False
        if label_image_problem(raw) is not None:
            return False
    return True


def read_label_only(folder: Path) -> Dataset:
    """Ground truth from label images alone, one per file, named by stem; for scoring, so `image` is a
    zero-size-in-memory placeholder. A file that does not look like labels is skipped and says why."""
    folder = Path(folder)
    ds = Dataset(folder, LABEL_ONLY)
    for path in label_files(_label_only_dir(folder)):
        name = rel(path, folder)
        try:
            raw, notes = read_label_image(path)
            why = label_image_problem(raw)
            if why is not None:
                raise LabelReadError(BAD_LABELS, f"does not look like a label image: {why}")
            labels, found = to_instance_labels(raw)
        except LabelReadError as exc:
            ds.skipped.append(Problem(name, exc.kind, str(exc)))
            continue
        data = load_image(path, folder)  # only for the file's pixel size
        pixel_size = None if isinstance(data, Problem) else data.pixel_size_nm
        problems = [Problem(name, kind, detail) for kind, detail in found] + [Problem(name, EXTRA_PAGES, n) for n in notes]
        placeholder = np.broadcast_to(np.uint8(0), labels.shape)  # no raw image: scoring needs only the labels
        item = LabelledImage(label_stem(path) or path.stem, path, placeholder, labels, pixel_size, problems)
        if item.n_instances == 0:
            problems.append(Problem(name, NO_INSTANCES, "all zero: no ground-truth objects"))
        ds.items.append(item)
    return dedupe_names(ds)


def _sibling_dir(folder: Path) -> Path | None:
    if child_dir(folder, ("images", "imgs", "image", "raw")) is None:
        return None
    d = child_dir(folder, LABEL_DIR_NAMES)
    if d is None or not any(p.suffix.lower() in LOSSLESS + _LOSSY for p in d.iterdir() if p.is_file()):
        return None
    return d


def is_label_images(folder: Path) -> bool:
    if _sibling_dir(folder) is not None:
        return True
    files = image_files(image_folder(folder))
    stems = {p.stem for p in files}
    return any(label_stem(p) in stems for p in files)


def _find_label(stem: str, candidates: dict[str, Path]) -> Path | None:
    keys = [stem] + [stem + s for s in LABEL_SUFFIXES]
    for k in keys:
        if k.lower() in candidates:
            return candidates[k.lower()]
    return None


def read_label_image(path: Path) -> tuple[np.ndarray, list[str]]:
    """The raw label array (first page of a TIFF, palette indices of a PNG) and notes about it."""
    notes = []
    suffix = path.suffix.lower()
    if suffix in _LOSSY:
        raise LabelReadError(BAD_LABELS, "JPEG is lossy and corrupts label ids; save labels as TIFF or PNG")
    try:
        if path.stat().st_size == 0:
            raise LabelReadError(UNREADABLE, "empty file (0 bytes)")
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if len(tif.pages) > 1:
                    notes.append(f"{len(tif.pages)} pages; the first is used")
                arr = tif.pages[0].asarray()
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                arr = np.array(im)  # palette ('P') images give their indices, which are the ids
    except LabelReadError:
        raise
    except Exception as exc:  # decoders raise many types; the user needs one line
        raise LabelReadError(UNREADABLE, f"cannot decode: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    return arr, notes


def to_instance_labels(arr: np.ndarray) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Validate raw label values and return int32 ids plus (kind, detail) findings; raises LabelReadError when unusable."""
    found: list[tuple[str, str]] = []
    if arr.ndim == 3:
        if arr.shape[-1] in (3, 4) and all(np.array_equal(arr[..., 0], arr[..., k]) for k in range(1, 3)):
            arr = arr[..., 0]
        else:
            raise LabelReadError(BAD_LABELS, f"{arr.shape[-1]}-channel image; expected one channel of instance ids (colour-coded labels are not supported)")
    if arr.ndim != 2:
        raise LabelReadError(BAD_LABELS, f"unsupported label array shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise LabelReadError(BAD_LABELS, "float labels with non-integer values; expected integer instance ids")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise LabelReadError(BAD_LABELS, f"unsupported label dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise LabelReadError(BAD_LABELS, "negative label values")
    if np.issubdtype(arr.dtype, np.integer) and arr.size and int(arr.max()) <= _MAX_DIRECT_ID:
        ids = np.flatnonzero(np.bincount(arr.ravel().astype(np.int64))[1:]) + 1  # much faster than np.unique on a frame
    else:
        ids = np.unique(arr)
        ids = ids[ids != 0]
    if len(ids) and ids[-1] > _MAX_DIRECT_ID:
        _, inv = np.unique(arr, return_inverse=True)  # sparse huge ids: renumber 1..N, order kept
        labels = inv.reshape(arr.shape).astype(np.int32)
    else:
        labels = arr.astype(np.int32)
    if len(ids) == 1:
        comps, n = ndimage.label(labels > 0, np.ones((3, 3), bool))
        if n > 1:
            found.append((BINARY_SPLIT, f"one value ({ids[0]:g}) in {n} separate objects: read as a binary mask and split (touching mitochondria stay merged)"))
            labels = comps.astype(np.int32)
            return labels, found
    multipart = 0
    for k, sl in enumerate(ndimage.find_objects(labels), 1):
        if sl is not None and ndimage.label(labels[sl] == k, np.ones((3, 3), bool))[1] > 1:
            multipart += 1
    if multipart:
        found.append((MULTIPART, f"{multipart} id(s) cover several separate parts"))
    return labels, found


def read_label_images(folder: Path) -> Dataset:
    folder = Path(folder)
    ds = Dataset(folder, "labels")
    sib = _sibling_dir(folder)
    img_dir = image_folder(folder)
    all_files = image_files(img_dir)
    if sib is not None:
        images = all_files
        label_files = {p.stem.lower(): p for p in sib.iterdir() if p.is_file() and p.suffix.lower() in LOSSLESS + _LOSSY}
    else:
        images = [p for p in all_files if label_stem(p) is None or label_stem(p) not in {q.stem for q in all_files}]
        label_files = {p.stem.lower(): p for p in all_files if p not in images}
    used = set()
    for img_path in images:
        data = load_image(img_path, folder)
        if isinstance(data, Problem):
            ds.skipped.append(data)
            continue
        lpath = _find_label(img_path.stem, label_files)
        if lpath is None:
            labels = np.zeros(data.array.shape[:2], np.int32)
            hint = f"{rel(sib, folder)}/{img_path.stem}.tif" if sib else f"{img_path.stem}_labels.tif"
            ds.items.append(LabelledImage(img_path.stem, img_path, data.array, labels, data.pixel_size_nm,
                                          [Problem(rel(img_path, folder), NO_LABELS, f"no label image such as {hint} (treated as an image without mitochondria)")]))
            continue
        used.add(lpath)
        name = rel(lpath, folder)
        try:
            raw, notes = read_label_image(lpath)
            if raw.shape[:2] != data.array.shape[:2]:
                ds.skipped.append(Problem(name, SIZE_MISMATCH, f"labels {raw.shape[1]}x{raw.shape[0]} vs image {data.array.shape[1]}x{data.array.shape[0]} ({rel(img_path, folder)})"))
                continue
            labels, found = to_instance_labels(raw)
        except LabelReadError as exc:
            ds.skipped.append(Problem(name, exc.kind, str(exc)))
            continue
        problems = [Problem(name, kind, detail) for kind, detail in found] + [Problem(name, EXTRA_PAGES, n) for n in notes]
        item = LabelledImage(img_path.stem, img_path, data.array, labels, data.pixel_size_nm, problems)
        if item.n_instances == 0:
            problems.append(Problem(name, NO_INSTANCES, "all zero (kept as a negative example)"))
        ds.items.append(item)
    stems = {p.stem.lower() for p in images}
    for key, p in sorted(label_files.items()):
        if p not in used and (label_stem(p) or p.stem).lower() not in stems:
            ds.notes.append(Problem(rel(p, folder), ORPHAN, "no image with this stem"))
    return dedupe_names(ds)
