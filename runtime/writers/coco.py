"""COCO annotations with RLE masks at the input's full resolution.

RLE is built straight from each mask crop and its offset (COCO run lengths
run down the columns of the full image), so a 4864x3704 frame never needs one
full-size mask per instance; pycocotools compresses the counts.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

CATEGORIES = [{"id": 1, "name": "mitochondrion", "supercategory": "organelle"}]


def crop_rle(offset: tuple[int, int], mask: np.ndarray, shape: tuple[int, int]) -> dict:
    """Compressed COCO RLE (`{"size": [h, w], "counts": str}`) of a bool crop placed at `offset` in `shape`."""
    height, width = int(shape[0]), int(shape[1])
    r0, c0 = int(offset[0]), int(offset[1])
    m = np.asarray(mask, dtype=bool)
    if r0 < 0 or c0 < 0 or r0 + m.shape[0] > height or c0 + m.shape[1] > width:
        raise ValueError(f"mask crop at {offset} of shape {m.shape} does not fit an image of shape {shape}")
    col_major = np.pad(m.T, ((0, 0), (1, 1))).astype(np.int8)  # one row per column, zero-padded ends
    d = np.diff(col_major, axis=1)
    cols_on, rows_on = np.nonzero(d == 1)
    cols_off, rows_off = np.nonzero(d == -1)
    starts = (c0 + cols_on) * height + r0 + rows_on  # full-image column-major index of each run
    ends = (c0 + cols_off) * height + r0 + rows_off
    if len(starts) > 1:  # a run ending at the bottom row continues at the top of the next column
        joined = ends[:-1] == starts[1:]
        starts = np.concatenate([starts[:1], starts[1:][~joined]])
        ends = np.concatenate([ends[:-1][~joined], ends[-1:]])
    bounds = np.empty(2 * len(starts) + 2, np.int64)
    bounds[0], bounds[-1] = 0, height * width
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    counts = np.diff(bounds).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # pycocotools' own encoder ends on the last run
        counts.pop()
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def annotations(offsets: np.ndarray, masks: list[np.ndarray], ids, scores, shape: tuple[int, int]) -> list[dict]:
    """COCO annotation dicts (without `id`/`image_id`, set when tables are built); `label` is the label-image id."""
    out = []
    for (r, c), m, lab, s in zip(offsets, masks, ids, scores):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        out.append(
            {
                "category_id": 1,
                "label": int(lab),
                "segmentation": crop_rle((int(r), int(c)), m, shape),
                "area": int(m.sum()),
                "bbox": [int(c + cols[0]), int(r + rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)],
                "score": round(float(s), 5),
                "iscrowd": 0,
            }
        )
    return out
