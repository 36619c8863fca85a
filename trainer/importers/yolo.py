"""YOLO segmentation polygons: `images/<stem>.*` + `labels/<stem>.txt`, lines `class x1 y1 x2 y2 ...` normalised to 0-1."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import build_item, child_dir, dedupe_names, image_files, load_image, rel
from .rasterize import polygon_region
from .types import BAD_SHAPE, CLIPPED, EMPTY_MASK, MERGED_CLASSES, NO_LABELS, ORPHAN, UNREADABLE, Dataset, Problem

# A YOLO coordinate may overshoot 0-1 by rounding; beyond this it is a real error worth flagging.
_TOLERANCE = 0.01


def is_yolo(folder: Path) -> bool:
    images, labels = child_dir(folder, ("images",)), child_dir(folder, ("labels",))
    return images is not None and labels is not None and any(labels.glob("*.txt"))


def read_yolo(folder: Path) -> Dataset:
    folder = Path(folder)
    ds = Dataset(folder, "yolo")
    img_dir, lab_dir = child_dir(folder, ("images",)), child_dir(folder, ("labels",))
    if img_dir is None or lab_dir is None:
        raise FileNotFoundError(f"{folder}: YOLO layout needs images/ and labels/ sub-folders")
    stems = set()
    classes: set[str] = set()
    for img_path in image_files(img_dir):
        stems.add(img_path.stem)
        data = load_image(img_path, folder)
        if isinstance(data, Problem):
            ds.skipped.append(data)
            continue
        txt = lab_dir / f"{img_path.stem}.txt"
        name = rel(txt, folder)
        problems: list[Problem] = []
        regions = []
        if not txt.exists():
            problems.append(Problem(rel(img_path, folder), NO_LABELS, f"no {name} (treated as an image without mitochondria)"))
        else:
            try:
                text = txt.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                ds.skipped.append(Problem(name, UNREADABLE, f"{type(exc).__name__}: {exc}"))
                continue
            h, w = data.array.shape[:2]
            for lineno, line in enumerate(text.splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                where = f"{name}:{lineno}"
                try:
                    values = np.array(parts[1:], dtype=np.float64)
                except ValueError:
                    problems.append(Problem(where, BAD_SHAPE, "non-numeric coordinates"))
                    continue
                if len(values) == 4:
                    problems.append(Problem(where, BAD_SHAPE, "a box (class cx cy w h), not a segmentation polygon"))
                    continue
                if len(values) < 6 or len(values) % 2 or not np.isfinite(values).all():
                    problems.append(Problem(where, BAD_SHAPE, "a polygon needs >= 3 finite x,y pairs"))
                    continue
                classes.add(parts[0])
                xy = values.reshape(-1, 2)
                if (xy < -_TOLERANCE).any() or (xy > 1 + _TOLERANCE).any():
                    problems.append(Problem(where, CLIPPED, "coordinates beyond 0-1"))
                region = polygon_region(np.clip(xy, 0, 1) * [w, h], (h, w))
                if region is None:
                    problems.append(Problem(where, EMPTY_MASK, "polygon covers no pixel centre"))
                    continue
                regions.append(region)
        ds.items.append(build_item(img_path.stem, img_path, data, regions, name, problems))
    for txt in sorted(lab_dir.glob("*.txt")):
        if txt.stem not in stems:
            ds.notes.append(Problem(rel(txt, folder), ORPHAN, "no image with this stem in images/"))
    if len(classes) > 1:
        ds.notes.append(Problem(rel(lab_dir, folder), MERGED_CLASSES, f"class ids {', '.join(sorted(classes))} all read as mitochondria"))
    return dedupe_names(ds)
