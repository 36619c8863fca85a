"""Per-input records and the tables rebuilt from them.

`records/<key>.json` is written last for each input, atomically: if it
exists, every other output of that input exists too. `rebuild_tables` then
rewrites `objects.csv`, `images.csv` and `predictions.json` from all records
in one streaming pass (memory does not grow with the number of images), each
atomically, so after any crash a rerun leaves tables that match the per-image
files exactly.
"""
from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import measure
from ..results import ImageResult
from .atomic import atomic_open, atomic_write_bytes
from .coco import CATEGORIES

RECORDS = "records"
# pixel_size_nm: the square pixel of the same area (x when x == y), kept for tables written before x and y;
# pixel_size_source: `pixel_size.SOURCES`; pixel_size_note: an implausible calibration ignored, or disagreeing ones
IMAGE_COLUMNS = ["image", "plane", "status", "error", "width", "height", "pixel_size_nm", "pixel_size_x_nm",
                 "pixel_size_y_nm", "pixel_size_source", "pixel_size_note",
                 "scaling_pixel_size_nm", "scaling_source", "scale_estimate", "path", *measure.IMAGE_COLUMNS, "time_s"]
OBJECT_COLUMNS = ["image", "plane", *measure.OBJECT_COLUMNS]


def record_path(out_dir: Path, key: str) -> Path:
    return Path(out_dir) / RECORDS / f"{key}.json"


def write_record(out_dir: Path, result: ImageResult) -> Path:
    path = record_path(out_dir, result.key)
    atomic_write_bytes(path, json.dumps(result.to_record(), ensure_ascii=False).encode("utf-8"))
    return path


def read_record(out_dir: Path, key: str) -> ImageResult | None:
    """The finished record of `key`, or None if absent or unreadable (then the input is redone)."""
    path = record_path(out_dir, key)
    try:
        return ImageResult.from_record(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def iter_records(out_dir: Path) -> Iterator[ImageResult]:
    """Every readable record, sorted by key; unreadable ones are skipped (their input is redone on rerun)."""
    root = Path(out_dir) / RECORDS
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            yield ImageResult.from_record(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue


@dataclass(frozen=True)
class TableCounts:
    images: int  # image rows (planes), failed inputs included
    failed: int
    objects: int


def rebuild_tables(out_dir: Path) -> TableCounts:
    """Rewrite `objects.csv`, `images.csv`, `predictions.json` from `records/` (atomically, streaming)."""
    out_dir = Path(out_dir)
    counts = [0, 0, 0]  # image rows, failed rows, objects
    with (
        atomic_open(out_dir / "images.csv", "w", newline="", encoding="utf-8") as fi,
        atomic_open(out_dir / "objects.csv", "w", newline="", encoding="utf-8") as fo,
        atomic_open(out_dir / "predictions.json", "w", encoding="utf-8") as fp,
        tempfile.TemporaryFile("w+", encoding="utf-8", dir=out_dir) as fa,  # COCO lists all images first
    ):
        fp.write('{"info": {"description": "mitotally mito-run predictions"}, "categories": ')
        fp.write(json.dumps(CATEGORIES) + ', "images": [')
        _stream(iter_records(out_dir), fi, fo, fp, fa, counts)
        fp.write('], "annotations": [')
        fa.seek(0)
        while chunk := fa.read(1 << 20):
            fp.write(chunk)
        fp.write("]}\n")
    return TableCounts(*counts)


def _stream(records: Iterator[ImageResult], fi, fo, fp, fa, counts: list[int]) -> None:
    wi = csv.DictWriter(fi, IMAGE_COLUMNS, extrasaction="ignore", restval="")
    wo = csv.DictWriter(fo, OBJECT_COLUMNS, extrasaction="ignore", restval="")
    wi.writeheader()
    wo.writeheader()
    coco_id = ann_id = 0
    for rec in records:
        for row in rec.image_rows:
            wi.writerow(row)
            counts[0] += 1
            counts[1] += row.get("status") != "ok"
        for row in rec.object_rows:
            wo.writerow(row)
            counts[2] += 1
        if not rec.ok:
            continue
        plane_ids = {}
        for row in rec.image_rows:
            coco_id += 1
            plane_ids[row["plane"]] = coco_id
            image = {"id": coco_id, "file_name": rec.key, "width": row["width"], "height": row["height"], "plane": row["plane"]}
            fp.write(("," if coco_id > 1 else "") + json.dumps(image, ensure_ascii=False))
        for ann in rec.annotations:
            ann_id += 1
            body = {k: v for k, v in ann.items() if k != "plane"}
            fa.write(("," if ann_id > 1 else "") + json.dumps({"id": ann_id, "image_id": plane_ids[ann["plane"]], **body}))
