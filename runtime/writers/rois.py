"""ImageJ ROI sets (a `.zip` for Fiji's ROI Manager), one ROI per mitochondrion, exactly its pixels.

Each outline follows the pixel edges (ImageJ puts pixel corners at whole
coordinates, so pixel (row, col) is the square x = col..col+1, y = row..row+1),
the way Fiji's wand traces a label: the polygon holds exactly the object's
pixels, its shoelace area is `area_px`, and Fiji's Measure gives the area in
`objects.csv`. The painting rule (`instances.paint_instances`) keeps one
8-connected piece per object, so an object has one outer outline; one with
holes (a ring, or a smaller object inside it) is written as a composite ROI
(outline and holes as one shape), any other as a traced polygon. Two pixels
touching only at a corner belong to one outline that passes through that corner
twice. ROI names are the label ids (`0001`); in a stack `z0003-0001` (plane 3,
id 1), with the plane as the ROI's stack position.
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from roifile import ROI_TYPE, ImagejRoi

from .atomic import temp_path

# Directions of travel along a pixel edge, in ImageJ coordinates (x right, y down), turning clockwise.
_STEP = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)])


def pixel_edge_loops(mask: np.ndarray) -> list[np.ndarray]:
    """Closed outlines of a bool mask along its pixel edges: (N, 2) int x, y corners, crop coordinates.

    Each edge is walked with the object on its right, so outer outlines run clockwise on screen
    (positive shoelace area) and holes anticlockwise (negative): the signed areas sum to the pixel
    count. Where two pixels meet only at a corner, the walk turns so that it goes round both
    (8-connected object, 4-connected holes, as `paint_instances` splits pieces). Only corners
    where the outline turns are returned; the closing corner is not repeated.
    """
    m = np.pad(np.asarray(mask, bool), 1)
    h, w = m.shape[0] - 1, m.shape[1] - 1  # corner grid of the padded mask: (h + 1) x (w + 1)
    inner = m[1:-1, 1:-1]
    rows, cols = np.nonzero(inner)
    rows, cols = rows + 1, cols + 1
    # one directed edge per object pixel side facing background: (start corner x, y, direction)
    sides = [
        (~m[rows - 1, cols], cols, rows, 0),  # top: left to right
        (~m[rows, cols + 1], cols + 1, rows, 1),  # right: downwards
        (~m[rows + 1, cols], cols + 1, rows + 1, 2),  # bottom: right to left
        (~m[rows, cols - 1], cols, rows + 1, 3),  # left: upwards
    ]
    x = np.concatenate([sx[f] for f, sx, _, _ in sides])
    y = np.concatenate([sy[f] for f, _, sy, _ in sides])
    d = np.concatenate([np.full(int(f.sum()), k) for f, _, _, k in sides])
    if not len(d):
        return []
    leaving = np.full((h + 1) * (w + 1) * 4, -1, np.int64)  # (corner, direction) -> edge leaving it
    leaving[(y * (w + 1) + x) * 4 + d] = np.arange(len(d))
    ex, ey = x + _STEP[d, 0], y + _STEP[d, 1]  # end corner of each edge
    end = (ey * (w + 1) + ex) * 4
    nxt = np.full(len(d), -1, np.int64)
    for turn in (3, 0, 1):  # a left turn (d - 1) first, then straight on, then right; never back
        free = nxt < 0
        nxt[free] = leaving[end[free] + (d[free] + turn) % 4]
    loops = []
    seen = bytearray(len(d))
    nxt_list = nxt.tolist()
    for start in range(len(d)):  # each cycle of `nxt` is one closed outline
        if seen[start]:
            continue
        loop = []
        e = start
        while not seen[e]:
            seen[e] = 1
            loop.append(e)
            e = nxt_list[e]
        idx = np.array(loop)
        corner = d[idx] != d[np.roll(idx, 1)]  # keep the corners where the direction changes
        loops.append(np.stack([x[idx][corner] - 1, y[idx][corner] - 1], axis=1))
    return loops


def signed_area(loop: np.ndarray) -> float:
    """Shoelace area of a closed x, y polygon: positive for the clockwise-on-screen outer outlines."""
    x, y = loop[:, 0].astype(np.float64), loop[:, 1].astype(np.float64)
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def mask_roi(offset: tuple[int, int], mask: np.ndarray, name: str, plane: int | None = None) -> ImagejRoi:
    """One ROI holding exactly the pixels of a mask crop at `offset` (row, col): traced polygon or composite."""
    loops = pixel_edge_loops(mask)
    if not loops:
        raise ValueError("empty mask has no outline")
    shift = np.array([offset[1], offset[0]])
    loops = [loop + shift for loop in loops]
    if len(loops) == 1:
        roi = ImagejRoi.frompoints(loops[0].astype(np.int32), name=name, position=plane)
        roi.roitype = ROI_TYPE.TRACED  # what Fiji's wand makes: integer corners, area = enclosed pixels
        roi.right, roi.bottom = int(loops[0][:, 0].max()), int(loops[0][:, 1].max())
        return roi
    path = []  # java.awt.geom path: 0 MOVETO x y, 1 LINETO x y, 4 CLOSE
    for loop in loops:
        path += [0.0, float(loop[0, 0]), float(loop[0, 1])]
        for px, py in loop[1:].tolist():
            path += [1.0, float(px), float(py)]
        path.append(4.0)
    allxy = np.concatenate(loops)
    roi = ImagejRoi(roitype=ROI_TYPE.RECT, name=name, multi_coordinates=np.array(path, np.float32),
                    shape_roi_size=len(path), left=int(allxy[:, 0].min()), top=int(allxy[:, 1].min()),
                    right=int(allxy[:, 0].max()), bottom=int(allxy[:, 1].max()))
    if plane is not None:
        roi.position = plane + 1
    return roi


def instance_rois(offsets: np.ndarray, masks: list[np.ndarray], ids: Iterable[int], plane: int | None = None) -> list[ImagejRoi]:
    """One ROI per mask, named by its label id; `plane` (0-based) sets the stack position."""
    prefix = "" if plane is None else f"z{plane + 1:04d}-"
    return [mask_roi((int(r), int(c)), m, f"{prefix}{int(lab):04d}", plane) for (r, c), m, lab in zip(offsets, masks, ids)]


def write_rois(path: Path, rois: list[ImagejRoi]) -> Path:
    """Write a ROI Manager zip (an empty zip when there are no ROIs, so every image has its file)."""
    with temp_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for roi in rois:
                zf.writestr(f"{roi.name}.roi", roi.tobytes())
    return Path(path)
