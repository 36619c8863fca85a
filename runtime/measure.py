"""Per-mitochondrion and per-image measurements from an instance label image.

Every shape number comes from scikit-image `regionprops`, run once on the
whole label image (each region is measured on its own bounding-box crop, so a
4864x3704 frame with ~1000 instances takes well under a second or two). The
only hand-written part is the minimum Feret (caliper) width, which
scikit-image does not provide: it is taken from the same convex contour that
`feret_diameter_max` uses, so both Feret diameters share one definition.

Conventions (also in docs/measurements.md):
- perimeter is `perimeter_crofton` (Crofton formula, 4 directions): within
  ~1% of the analytic perimeter of ellipses of radius >= 10 px, where the
  boundary-pixel `perimeter` reads 2-5% high; circularity = 4*pi*A/P^2 uses
  it and is clipped to 1 as ImageJ does (tiny objects can read above 1);
- aspect ratio = major / minor axis of the ellipse with the same second
  moments (ImageJ's "AR");
- centroids are in array-index coordinates (pixel centres at integer
  positions, as numpy and napari); the um columns are px x pixel size;
- um columns are NaN when the pixel size is unknown;
- area_um2 = area_px * x_nm * y_nm / 1e6, for square and non-square pixels.

Non-square pixels (x_nm != y_nm): the *_px columns are the geometry of the
pixel grid (lengths in pixel steps, as if pixels were square); the *_um
columns and the shape ratios (aspect ratio, eccentricity, circularity) are
the physical shape: axes and eccentricity from regionprops with
`spacing=(y, x)`, Feret diameters from the scaled convex contour,
equivalent diameter from area_um2, and perimeter_um as the length of the
region's 0.5 iso-contour, less its pixel staircase, scaled by (y, x)
(`contour_length`: scikit-image's Crofton perimeter supports square pixels
only). Solidity is a ratio of areas: the same either
way.
"""
from __future__ import annotations

import math
from itertools import repeat

import numpy as np

from .pixel_size import PixelSize, as_pixel_size

OBJECT_COLUMNS: tuple[str, ...] = (
    "id",
    "area_px",
    "area_um2",
    "perimeter_px",
    "perimeter_um",
    "equivalent_diameter_px",
    "equivalent_diameter_um",
    "major_axis_px",
    "major_axis_um",
    "minor_axis_px",
    "minor_axis_um",
    "feret_max_px",
    "feret_max_um",
    "feret_min_px",
    "feret_min_um",
    "aspect_ratio",
    "eccentricity",
    "circularity",
    "solidity",
    "mean_intensity",
    "centroid_row_px",
    "centroid_col_px",
    "centroid_y_um",
    "centroid_x_um",
    "bbox_row0",
    "bbox_col0",
    "bbox_row1",
    "bbox_col1",
    "score",
    "touches_border",
)

IMAGE_COLUMNS: tuple[str, ...] = (
    "count",
    "total_area_px",
    "total_area_um2",
    "mean_area_px",
    "mean_area_um2",
    "median_area_px",
    "median_area_um2",
    "area_fraction",
    "image_area_px",
    "image_area_um2",
    "density_per_um2",
)

NAN = float("nan")


def hull_points(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull of 2-D points (counter-clockwise); the points themselves if degenerate."""
    from scipy.spatial import ConvexHull, QhullError

    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) < 3:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # all points on one line
        return points


def feret_diameters(points: np.ndarray) -> tuple[float, float]:
    """(max, min) caliper width of a point set.

    The minimum width of a convex polygon is attained with one caliper flush
    against a hull edge (the rotating-calipers theorem), so it is the smallest,
    over hull edges, of the largest vertex distance from that edge's line.
    """
    hull = hull_points(points)
    if len(hull) < 2:
        return 0.0, 0.0
    diff = hull[:, None, :] - hull[None, :, :]
    fmax = float(np.sqrt((diff**2).sum(-1).max()))
    if len(hull) < 3:
        return fmax, 0.0
    edges = np.roll(hull, -1, axis=0) - hull
    length = np.hypot(edges[:, 0], edges[:, 1])
    ok = length > 0
    edges, start, length = edges[ok], hull[ok], length[ok]
    rel = hull[None, :, :] - start[:, None, :]
    dist = np.abs(edges[:, None, 0] * rel[..., 1] - edges[:, None, 1] * rel[..., 0]) / length[:, None]
    return fmax, float(dist.max(1).min())


def contour_length(image: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0), tolerance: float = 1.0) -> float:
    """Boundary length of a binary image (outer boundary and holes) with pixels `spacing` (rows, cols) apart.

    The 0.5 iso-contour follows the pixel staircase (5-15% long on ellipses); simplified to within
    `tolerance` px (Douglas-Peucker) it is within 1.2% of the analytic perimeter of ellipses with 4 x 8 nm
    pixels, and 2.2% for one only 10 x 5 px across (tests/runtime/test_measure.py).
    """
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(np.asarray(image, dtype=np.float32), 1, mode="constant", constant_values=0)
    scale = np.asarray(spacing, dtype=np.float64)
    total = 0.0
    for contour in find_contours(padded, 0.5):
        steps = np.diff(approximate_polygon(contour, tolerance), axis=0) * scale
        total += float(np.hypot(steps[:, 0], steps[:, 1]).sum())
    return total


_DIAMOND = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, -0.5], [0.0, 0.5]])


def convex_image(image: np.ndarray) -> np.ndarray:
    """skimage's `convex_hull_image(image)` (the hull of the pixels' edge midpoints, border pixels
    included), pixel for pixel, ~3x faster on mitochondria: the hull is taken from each row's and
    column's end pixels only, and filled row by row from its half-planes instead of testing every pixel
    against the polygon. Equality with skimage is tested on thousands of shapes (tests/runtime/test_measure.py)."""
    from scipy.spatial import ConvexHull

    image = np.asarray(image, dtype=bool)
    h, w = image.shape
    rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
    ends = np.concatenate([
        np.c_[rows, image[rows].argmax(1)], np.c_[rows, w - 1 - image[rows, ::-1].argmax(1)],
        np.c_[image[:, cols].argmax(0), cols], np.c_[h - 1 - image[::-1, cols].argmax(0), cols],
    ]).astype(np.float64)
    a, b, d = ConvexHull((ends[:, None, :] + _DIAMOND).reshape(-1, 2)).equations.T  # inside: a*r + b*c + d <= 0
    tol = 1e-6  # a pixel centre off a hull edge is >= 1e-3 px from it; one on it counts as inside, as in skimage
    rhs = -d[None, :] - a[None, :] * np.arange(h, dtype=np.float64)[:, None]  # per row and edge: b*c <= rhs
    upper, lower, level = b > tol, b < -tol, np.abs(b) <= tol
    hi = np.min(np.where(upper, rhs / np.where(upper, b, 1.0), np.inf), axis=1)
    lo = np.max(np.where(lower, rhs / np.where(lower, b, 1.0), -np.inf), axis=1)
    row_inside = np.all(np.where(level, rhs >= -tol, True), axis=1)
    c = np.arange(w)
    return row_inside[:, None] & (c >= lo[:, None] - tol) & (c <= hi[:, None] + tol)


def convex_outline(convex: np.ndarray) -> np.ndarray:
    """The points of the 0.5 iso-contour of a convex image that can lie on its hull, as (row, col).

    skimage's `feret_diameter_max` takes `find_contours` of the padded convex image; on a binary image
    that contour's vertices are the midpoints of the edges between a region pixel and a background
    pixel. A convex image's rows and columns are single runs, so those midpoints are exactly each row's
    and each column's two end midpoints: the same hull, hence the same Feret diameters, without tracing
    the contour (tests/runtime/test_measure.py checks equality on thousands of shapes)."""
    convex = np.asarray(convex, dtype=bool)
    h, w = convex.shape
    rows, cols = np.flatnonzero(convex.any(1)), np.flatnonzero(convex.any(0))
    first_c, last_c = convex[rows].argmax(1), w - 1 - convex[rows, ::-1].argmax(1)
    first_r, last_r = convex[:, cols].argmax(0), h - 1 - convex[::-1, cols].argmax(0)
    return np.concatenate([
        np.c_[rows, first_c - 0.5], np.c_[rows, last_c + 0.5],
        np.c_[first_r - 0.5, cols], np.c_[last_r + 0.5, cols],
    ]).astype(np.float64)


def _check_intensity(intensity: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The input image as given (gray or HxWx3): no full-frame float copy, regionprops reads only crops."""
    if intensity is None:
        return None
    intensity = np.asarray(intensity)
    if intensity.shape[:2] != shape or intensity.ndim not in (2, 3):
        raise ValueError(f"intensity image shape {intensity.shape} differs from label image shape {shape}")
    return intensity


def measure_instances(
    labels: np.ndarray, intensity: np.ndarray | None, pixel_size_nm: PixelSize | float | None, scores: dict[int, float],
    field_of_view: tuple[int, int, int, int] | None = None,
) -> list[dict]:
    """One row per label id (ascending), keys in `OBJECT_COLUMNS` order.

    `pixel_size_nm`: a `PixelSize` (x and y), a number of nm (square pixels) or None (um columns NaN).
    `field_of_view` (row0, col0, row1, col1) is the specimen region when an instrument's data bar was
    left out: an object cut by it counts as touching the border, as one cut by the frame's edge does.
    """
    from skimage.measure import regionprops

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label image must be 2-D, got shape {labels.shape}")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    image = _check_intensity(intensity, labels.shape)
    size = as_pixel_size(pixel_size_nm)
    um_y, um_x = (size.y_nm / 1000.0, size.x_nm / 1000.0) if size is not None else (NAN, NAN)
    px_um2 = size.area_nm2 / 1e6 if size is not None else NAN
    # non-square pixels: a second, lazy pass with the physical spacing for the um columns and shape ratios
    physical = regionprops(labels, spacing=(um_y, um_x)) if size is not None and not size.is_square else repeat(None)
    top, left, height, width = field_of_view if field_of_view is not None else (0, 0, *labels.shape)
    rows = []
    for region, phys in zip(regionprops(labels, intensity_image=image), physical):
        area = float(region.area)
        perimeter = float(region.perimeter_crofton)
        major, minor = float(region.axis_major_length), float(region.axis_minor_length)
        convex = convex_image(region.image)
        contour = convex_outline(convex)
        fmax, fmin = feret_diameters(contour)
        r0, c0, r1, c1 = (int(v) for v in region.bbox)
        cy, cx = (float(v) for v in region.centroid)
        lengths = {
            "perimeter": perimeter,
            "equivalent_diameter": float(region.equivalent_diameter_area),
            "major_axis": major,
            "minor_axis": minor,
            "feret_max": fmax,
            "feret_min": fmin,
        }
        row = {"id": int(region.label), "area_px": int(region.area), "area_um2": area * px_um2}
        for name, value in lengths.items():
            row[f"{name}_px"] = value
            row[f"{name}_um"] = value * um_x  # square pixels (or NaN); replaced below when they are not
        shape = {"major": major, "minor": minor, "eccentricity": float(region.eccentricity), "area": area, "perimeter": perimeter}
        if phys is not None:
            shape = _physical(region, phys, contour, (um_y, um_x), row["area_um2"])
            row.update({f"{name}_um": shape[name] for name in lengths})
        row.update(
            aspect_ratio=shape["major"] / shape["minor"] if shape["minor"] > 0 else NAN,
            eccentricity=shape["eccentricity"],
            circularity=min(1.0, 4 * math.pi * shape["area"] / shape["perimeter"]**2) if shape["perimeter"] > 0 else NAN,
            solidity=area / float(np.count_nonzero(convex)),  # regionprops' `solidity`, from the same convex image
            # RGB: the mean of the channel means, i.e. the mean of the gray (channel-averaged) image
            mean_intensity=float(np.mean(region.intensity_mean)) if image is not None else NAN,
            centroid_row_px=cy,
            centroid_col_px=cx,
            centroid_y_um=cy * um_y,
            centroid_x_um=cx * um_x,
            bbox_row0=r0,
            bbox_col0=c0,
            bbox_row1=r1,
            bbox_col1=c1,
            score=float(scores.get(int(region.label), NAN)),
            touches_border=bool(r0 <= top or c0 <= left or r1 >= height or c1 >= width),
        )
        rows.append({k: row[k] for k in OBJECT_COLUMNS})
    return rows


def _physical(region, phys, contour: np.ndarray, spacing: tuple[float, float], area_um2: float) -> dict:
    """Lengths (um) and the inputs of the shape ratios of one region with non-square pixels (see the module doc)."""
    perimeter = contour_length(region.image, spacing)
    fmax, fmin = feret_diameters(contour * np.asarray(spacing))
    major, minor = float(phys.axis_major_length), float(phys.axis_minor_length)
    return {"perimeter": perimeter, "equivalent_diameter": math.sqrt(4 * area_um2 / math.pi), "major_axis": major,
            "minor_axis": minor, "feret_max": fmax, "feret_min": fmin, "major": major, "minor": minor,
            "eccentricity": float(phys.eccentricity), "area": area_um2}


def summarize_image(rows: list[dict], image_shape: tuple[int, int], pixel_size_nm: PixelSize | float | None) -> dict:
    """Per-image totals, keys in `IMAGE_COLUMNS` order; um values NaN without a pixel size."""
    size = as_pixel_size(pixel_size_nm)
    areas = np.array([r["area_px"] for r in rows], dtype=np.float64)
    image_px = float(image_shape[0]) * float(image_shape[1])
    px_um2 = size.area_nm2 / 1e6 if size is not None else NAN
    count = len(rows)
    total = float(areas.sum())
    mean = float(areas.mean()) if count else NAN
    median = float(np.median(areas)) if count else NAN
    out = {
        "count": count,
        "total_area_px": total,
        "total_area_um2": total * px_um2,
        "mean_area_px": mean,
        "mean_area_um2": mean * px_um2,
        "median_area_px": median,
        "median_area_um2": median * px_um2,
        "area_fraction": total / image_px if image_px else NAN,
        "image_area_px": image_px,
        "image_area_um2": image_px * px_um2,
        "density_per_um2": count / (image_px * px_um2) if size is not None and image_px else NAN,
    }
    return {k: out[k] for k in IMAGE_COLUMNS}
