"""COCO instance JSON (polygons, compressed and uncompressed RLE) via pycocotools.

The JSON is found in the dataset folder or its `annotations/` sub-folder (or
named directly). Each `file_name` is looked up, in order, beside the JSON, in
`images/` beside it, in the dataset folder and its `images/`; a name that
would leave the dataset folder (absolute, or with `..`) is only looked up by
its base name inside it. With several categories, those whose name contains
"mito" are used (all of them when none does); crowd regions (`iscrowd: 1`)
are left out, since they are not single mitochondria. Both are reported.
"""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np

from .common import build_item, child_dir, dedupe_names, inside, load_image, rel
from .rasterize import region_from_mask
from .types import BAD_SHAPE, CLIPPED, EMPTY_MASK, IGNORED, MERGED_CLASSES, NO_LABELS, SIZE_MISMATCH, UNREADABLE, Dataset, DatasetError, Problem

_MAX_PROBE_BYTES = 2 << 30


def _candidates(folder: Path) -> list[Path]:
    dirs = [folder, child_dir(folder, ("annotations", "annotation"))]
    return sorted(p for d in dirs if d is not None for p in d.glob("*.json") if p.is_file())


def _coco_problem(path: Path) -> str | None:
    """Why `path` is not a usable COCO instance file (None when it is)."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        if path.stat().st_size >= _MAX_PROBE_BYTES:
            return "larger than 2 GiB"
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return f"cannot parse JSON: {type(exc).__name__}: {exc}".splitlines()[0]
    if not (isinstance(doc, dict) and isinstance(doc.get("images"), list) and isinstance(doc.get("annotations"), list)):
        return "not a COCO instance file (needs 'images' and 'annotations' lists)"
    return None


def _is_coco_file(path: Path) -> bool:
    return _coco_problem(path) is None


def broken_json(folder: Path) -> list[str]:
    """'file: cause' for JSON files where a COCO file would be that cannot be read, to explain a failed detection."""
    paths = [folder] if folder.is_file() else _candidates(folder)
    return [f"{p}: {why}" for p in paths if (why := _coco_problem(p)) is not None]


def coco_files(folder: Path) -> list[Path]:
    """COCO instance files that define a dataset at `folder` (a folder, or a .json file itself)."""
    folder = Path(folder)
    if folder.is_file():
        return [folder] if _is_coco_file(folder) else []
    return [p for p in _candidates(folder) if _is_coco_file(p)]


def is_coco(folder: Path) -> bool:
    return bool(coco_files(folder))


def dataset_root(json_path: Path) -> Path:
    """The folder a COCO file speaks for: its own folder, or the parent of an `annotations/` folder."""
    parent = json_path.parent
    return parent.parent if parent.name.lower() in ("annotations", "annotation") else parent


def _resolve(file_name: str, json_path: Path, root: Path) -> Path | None:
    bases = [json_path.parent, json_path.parent / "images", root, root / "images"]
    pure = PurePosixPath(file_name.replace("\\", "/"))
    names = [Path(*pure.parts)] if not pure.is_absolute() and ".." not in pure.parts else []
    names.append(Path(pure.name))
    for name in names:
        for base in bases:
            cand = base / name
            if inside(root, cand) and cand.is_file():
                return cand
    return None


def load_coco_json(json_path: Path) -> dict:
    try:
        doc = json.loads(Path(json_path).read_bytes())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{json_path}: cannot read COCO JSON: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not (isinstance(doc, dict) and isinstance(doc.get("images"), list) and isinstance(doc.get("annotations"), list)):
        raise DatasetError(f"{json_path}: not a COCO instance file (needs 'images' and 'annotations' lists)")
    return doc


def chosen_categories(doc: dict) -> tuple[set, list[tuple[str, str]]]:
    """Category ids read as mitochondria, and a (kind, note) when that is a choice."""
    cats = {c.get("id"): str(c.get("name", "")) for c in doc.get("categories") or [] if isinstance(c, dict)}
    if len(cats) <= 1:
        return set(cats) | {a.get("category_id") for a in doc["annotations"] if isinstance(a, dict)}, []
    mito = {i for i, n in cats.items() if "mito" in n.lower()}
    if mito:
        others = sorted(n for i, n in cats.items() if i not in mito)
        return mito, [(IGNORED, f"categories {others} are not mitochondria: their annotations are ignored")]
    return set(cats), [(MERGED_CLASSES, f"categories {sorted(cats.values())} all read as mitochondria (none is named 'mito...')")]


def decode_segmentation(seg, h: int, w: int) -> np.ndarray:
    """A full-size bool mask from polygons, uncompressed RLE or compressed RLE; raises ValueError when malformed."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
        if not polys:
            raise ValueError("no polygon with >= 3 x,y pairs")
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if [int(v) for v in seg["size"]] != [h, w]:
            raise SizeError(f"RLE size {seg['size'][1]}x{seg['size'][0]} vs image {w}x{h}")
        if isinstance(seg["counts"], list):
            if sum(int(c) for c in seg["counts"]) != h * w:
                raise ValueError("uncompressed RLE counts do not add up to the image size")
            rle = mask_utils.frPyObjects({"counts": [int(c) for c in seg["counts"]], "size": [h, w]}, h, w)
        else:
            counts = seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"]
            rle = {"counts": counts, "size": [h, w]}
    else:
        raise ValueError("segmentation is neither polygons nor RLE")
    return mask_utils.decode(rle).astype(bool)


class SizeError(ValueError):
    """A mask whose declared size differs from its image."""


def _polygon_outside(seg, h: int, w: int) -> bool:
    if not isinstance(seg, list):
        return False
    pts = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in seg if isinstance(p, list) and len(p) >= 2 and len(p) % 2 == 0] or [np.zeros((0, 2))])
    return bool(len(pts) and ((pts < -1).any() or (pts[:, 0] > w + 1).any() or (pts[:, 1] > h + 1).any()))


def read_coco(folder: Path) -> Dataset:
    folder = Path(folder)
    files = coco_files(folder)
    if not files:
        hints = "".join(f"\n  {b}" for b in broken_json(folder))
        raise DatasetError(f"{folder}: no COCO instance JSON found (looked in the folder and annotations/){hints}")
    if len(files) > 1:
        raise DatasetError(f"{folder}: several COCO files ({', '.join(p.name for p in files)}); pass one of them as the dataset path")
    json_path = files[0]
    root = dataset_root(json_path) if folder.is_file() else folder
    doc = load_coco_json(json_path)
    jname = rel(json_path, root)
    ds = Dataset(root, "coco")
    keep_cats, cat_notes = chosen_categories(doc)
    ds.notes.extend(Problem(jname, kind, note) for kind, note in cat_notes)
    by_image: dict = {}
    crowd = orphans = 0
    known = {im.get("id") for im in doc["images"] if isinstance(im, dict)}
    for a in doc["annotations"]:
        if not isinstance(a, dict):
            continue
        if a.get("image_id") not in known:
            orphans += 1
            continue
        if a.get("category_id") not in keep_cats:
            continue
        if a.get("iscrowd", 0):
            crowd += 1
            continue
        by_image.setdefault(a.get("image_id"), []).append(a)
    if crowd:
        ds.notes.append(Problem(jname, IGNORED, f"{crowd} crowd region(s) (iscrowd=1) are not single mitochondria"))
    if orphans:
        ds.notes.append(Problem(jname, IGNORED, f"{orphans} annotation(s) refer to an image id not in 'images'"))
    for im in doc["images"]:
        if not isinstance(im, dict) or "file_name" not in im:
            ds.notes.append(Problem(jname, BAD_SHAPE, f"image entry without file_name: {str(im)[:80]}"))
            continue
        fname = str(im["file_name"])
        path = _resolve(fname, json_path, root)
        if path is None:
            ds.skipped.append(Problem(f"{jname}: {fname}", UNREADABLE, "image file not found inside the dataset folder"))
            continue
        data = load_image(path, root)
        if isinstance(data, Problem):
            ds.skipped.append(data)
            continue
        h, w = data.array.shape[:2]
        iname = rel(path, root)
        if (im.get("height"), im.get("width")) not in ((h, w), (None, None)):
            ds.skipped.append(Problem(f"{jname}: {fname}", SIZE_MISMATCH, f"JSON says {im.get('width')}x{im.get('height')}, file is {w}x{h}"))
            continue
        anns = by_image.get(im.get("id"), [])
        problems: list[Problem] = []
        regions = []
        fatal = None
        for a in anns:
            where = f"{jname}: annotation {a.get('id')}"
            seg = a.get("segmentation")
            if _polygon_outside(seg, h, w):
                problems.append(Problem(where, CLIPPED, f"polygon outside {iname}"))
            try:
                mask = decode_segmentation(seg, h, w)
            except SizeError as exc:
                fatal = Problem(where, SIZE_MISMATCH, f"{exc} ({iname})")
                break
            except (ValueError, TypeError, KeyError) as exc:
                problems.append(Problem(where, BAD_SHAPE, str(exc)))
                continue
            region = region_from_mask(mask)
            if region is None:
                problems.append(Problem(where, EMPTY_MASK, "covers no pixel"))
                continue
            regions.append(region)
        if fatal is not None:
            ds.skipped.append(fatal)
            continue
        if not anns:
            problems.append(Problem(iname, NO_LABELS, f"no annotations in {jname} (treated as an image without mitochondria)"))
        ds.items.append(build_item(path.stem, path, data, regions, f"{jname}: {fname}", problems))
    return dedupe_names(ds)
