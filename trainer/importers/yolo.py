"""YOLO segmentation polygons: `images/<stem>.*` + `labels/<stem>.txt`, `class x1 y1 x2 y2 ...` normalised."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .rasterize import polygons_to_labels
from .types import LabelledImage
from ...runtime.image_io import IMAGE_SUFFIXES, read_image


def is_yolo(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "labels").is_dir() and any((folder / "labels").glob("*.txt"))


def read_yolo(folder: Path) -> list[LabelledImage]:
    folder = Path(folder)
    out = []
    for img_path in sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        data = read_image(img_path)
        h, w = data.array.shape[:2]
        txt = folder / "labels" / f"{img_path.stem}.txt"
        problems: list[str] = []
        polygons = []
        if not txt.exists():
            problems.append(f"{img_path.name}: no label file {txt.name} (treated as an image without mitochondria)")
        else:
            for lineno, line in enumerate(txt.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                values = np.array(parts[1:], dtype=np.float64)
                if len(values) < 6 or len(values) % 2:
                    problems.append(f"{txt.name}:{lineno}: polygon needs >= 3 x,y pairs")
                    continue
                xy = values.reshape(-1, 2)
                if (xy < -0.01).any() or (xy > 1.01).any():
                    problems.append(f"{txt.name}:{lineno}: polygon outside the image (clipped)")
                polygons.append(np.clip(xy, 0, 1) * [w, h])
        labels, overlap_px = polygons_to_labels(polygons, (h, w))
        if overlap_px:
            problems.append(f"{txt.name}: overlapping instances, {overlap_px} px given to the smaller one")
        out.append(LabelledImage(img_path.stem, img_path, data.array, labels, data.pixel_size_nm, problems))
    return out
