"""Fiji/ImageJ ROI sets via `roifile`: `<stem>.roi` or `<stem>.zip` (ROI Manager "Save") per image.

ROI files are looked up beside the images, in the dataset folder, or in a
`rois/` (or `RoiSet/`) sub-folder, named `<stem>.zip`, `<stem>.roi`,
`<stem>_RoiSet.zip`, `<stem>_rois.zip` or `RoiSet_<stem>.zip`; a single image
with a single `RoiSet.zip` also pairs. Area ROIs become instances: polygon,
freehand and traced ROIs through roifile's coordinates (composite ROIs with
the even-odd rule, so inner paths are holes), rectangles and ovals from their
bounds. Like ImageJ, a pixel belongs to a ROI when its centre lies inside.
Line, angle and point ROIs carry no area and are skipped with a warning;
ROIs placed on another slice of a stack (position > 1) too, since the first
plane is the one read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import build_item, child_dir, dedupe_names, image_files, image_folder, load_image, rel
from .rasterize import Region, paths_region, region_from_mask
from .types import CLIPPED, EMPTY_MASK, IGNORED, NO_LABELS, UNREADABLE, Dataset, Problem

ROI_DIR_NAMES = ("rois", "roi", "roiset", "roisets")
_NAME_PATTERNS = ("{s}.zip", "{s}.roi", "{s}_roiset.zip", "{s}_rois.zip", "{s}-roiset.zip", "roiset_{s}.zip")


def _search_dirs(folder: Path) -> list[Path]:
    dirs = [image_folder(folder), folder, child_dir(folder, ROI_DIR_NAMES)]
    out = []
    for d in dirs:
        if d is not None and d not in out:
            out.append(d)
    return out


def _roi_files(folder: Path) -> dict[str, Path]:
    files = {}
    for d in _search_dirs(folder):
        for p in d.iterdir():
            if p.is_file() and p.suffix.lower() in (".roi", ".zip"):
                files.setdefault(p.name.lower(), p)
    return files


def _find_rois(stem: str, files: dict[str, Path], single_image: bool) -> Path | None:
    for pat in _NAME_PATTERNS:
        p = files.get(pat.format(s=stem.lower()))
        if p is not None:
            return p
    if single_image and list(files) == ["roiset.zip"]:
        return files["roiset.zip"]
    return None


def is_imagej_rois(folder: Path) -> bool:
    images = image_files(image_folder(folder))
    files = _roi_files(folder)
    return any(_find_rois(p.stem, files, len(images) == 1) for p in images)


def _oval_region(left: float, top: float, right: float, bottom: float, shape: tuple[int, int]) -> Region | None:
    """Pixels whose centre is inside the ellipse inscribed in the bounds (ImageJ's OvalRoi mask)."""
    r0, r1 = max(int(np.floor(top)), 0), min(int(np.ceil(bottom)), shape[0])
    c0, c1 = max(int(np.floor(left)), 0), min(int(np.ceil(right)), shape[1])
    if r1 <= r0 or c1 <= c0 or right <= left or bottom <= top:
        return None
    cy, cx, ry, rx = (top + bottom) / 2, (left + right) / 2, (bottom - top) / 2, (right - left) / 2
    yy = (np.arange(r0, r1) + 0.5 - cy)[:, None] / ry
    xx = (np.arange(c0, c1) + 0.5 - cx)[None, :] / rx
    reg = region_from_mask(yy**2 + xx**2 <= 1.0)
    return None if reg is None else Region((reg.offset[0] + r0, reg.offset[1] + c0), reg.mask)


def roi_region(roi, shape: tuple[int, int]) -> tuple[Region | None, bool]:
    """Rasterise one area ROI; also says whether it reached outside the image."""
    from roifile import ROI_TYPE

    h, w = shape
    if roi.roitype == ROI_TYPE.OVAL and not roi.composite:
        bounds = _bounds(roi)
        outside = bounds[0] < 0 or bounds[1] < 0 or bounds[2] > w or bounds[3] > h
        return _oval_region(*bounds, shape), outside
    paths = roi.coordinates(multi=True)
    paths = [np.asarray(p, np.float64) for p in paths if len(p)]
    if not paths:
        return None, False
    pts = np.concatenate(paths)
    outside = bool((pts < 0).any() or (pts[:, 0] > w).any() or (pts[:, 1] > h).any())
    return paths_region(paths, shape), outside


def _bounds(roi) -> tuple[float, float, float, float]:
    """left, top, right, bottom; sub-pixel when the ROI stores them."""
    if getattr(roi, "subpixelrect", False) and roi.widthd:
        return roi.xd, roi.yd, roi.xd + roi.widthd, roi.yd + roi.heightd
    return float(roi.left), float(roi.top), float(roi.right), float(roi.bottom)


def read_imagej_rois(folder: Path) -> Dataset:
    from roifile import ROI_TYPE, ImagejRoi

    area_types = {ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED, ROI_TYPE.RECT, ROI_TYPE.OVAL}
    folder = Path(folder)
    ds = Dataset(folder, "imagej")
    images = image_files(image_folder(folder))
    files = _roi_files(folder)
    used = set()
    for img_path in images:
        data = load_image(img_path, folder)
        if isinstance(data, Problem):
            ds.skipped.append(data)
            continue
        shape = data.array.shape[:2]
        path = _find_rois(img_path.stem, files, len(images) == 1)
        if path is None:
            ds.items.append(build_item(img_path.stem, img_path, data, [], rel(img_path, folder),
                                       [Problem(rel(img_path, folder), NO_LABELS, f"no {img_path.stem}.zip or {img_path.stem}.roi (treated as an image without mitochondria)")]))
            continue
        used.add(path)
        name = rel(path, folder)
        try:
            rois = ImagejRoi.fromfile(path)
        except Exception as exc:  # zip and ROI decoders raise many types
            ds.skipped.append(Problem(name, UNREADABLE, f"cannot read ROIs: {type(exc).__name__}: {exc}".splitlines()[0]))
            continue
        rois = rois if isinstance(rois, list) else [rois]
        problems: list[Problem] = []
        regions = []
        ignored: dict[str, int] = {}
        for k, roi in enumerate(rois, 1):
            where = f"{name}:{roi.name or k}"
            kind = ROI_TYPE(roi.roitype)
            if kind not in area_types and not roi.composite:
                ignored[f"{kind.name.lower()} ROI (no area)"] = ignored.get(f"{kind.name.lower()} ROI (no area)", 0) + 1
                continue
            if max(roi.position, roi.z_position, roi.t_position) > 1:
                ignored["ROI on another stack slice"] = ignored.get("ROI on another stack slice", 0) + 1
                continue
            try:
                region, outside = roi_region(roi, shape)
            except (NotImplementedError, RuntimeError, ValueError) as exc:
                problems.append(Problem(where, UNREADABLE, f"cannot rasterise: {exc}"))
                continue
            if outside:
                problems.append(Problem(where, CLIPPED, "reaches outside the image"))
            if region is None:
                problems.append(Problem(where, EMPTY_MASK, "covers no pixel centre inside the image"))
                continue
            regions.append(region)
        if ignored:
            problems.append(Problem(name, IGNORED, ", ".join(f"{n} x {what}" for what, n in ignored.items())))
        if not rois:
            problems.append(Problem(name, EMPTY_MASK, "ROI set is empty"))
        ds.items.append(build_item(img_path.stem, img_path, data, regions, name, problems))
    return dedupe_names(ds)
