"""Polygons to an instance label image, with a deterministic rule for overlaps."""
from __future__ import annotations

import numpy as np
from skimage.draw import polygon as draw_polygon


def polygons_to_labels(polygons: list[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Rasterise (K, 2) x/y polygons in pixel-edge coordinates; ids follow input order.

    Where instances overlap, the smaller instance keeps the pixels (it would
    otherwise vanish inside the larger one). Returns labels and overlapping px.
    """
    masks = []
    for xy in polygons:
        rr, cc = draw_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape)
        masks.append((rr, cc))
    labels = np.zeros(shape, np.int32)
    painted = np.zeros(shape, np.int32)
    for i in sorted(range(len(masks)), key=lambda k: -len(masks[k][0])):
        rr, cc = masks[i]
        labels[rr, cc] = i + 1
        painted[rr, cc] += 1
    return labels, int((painted > 1).sum())
