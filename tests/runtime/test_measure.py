"""Measurements against analytic shapes: ellipses, disks, rectangles, and pixel-size scaling."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ellipe
from skimage.draw import ellipse, polygon
from skimage.measure import regionprops

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ellipse_labels  # noqa: E402

from mitotally.runtime.measure import IMAGE_COLUMNS, OBJECT_COLUMNS, convex_image, convex_outline, feret_diameters, measure_instances, summarize_image

UM_COLUMNS = [c for c in OBJECT_COLUMNS if c.endswith("_um") or c.endswith("_um2")]


def ellipse_image(a: float, b: float, rot: float, shape=(400, 400), centre=(200.3, 199.6)) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    rr, cc = ellipse(centre[0], centre[1], a, b, rotation=rot, shape=shape)
    labels[rr, cc] = 1
    return labels


def rectangle_image(w: float, h: float, rot: float, shape=(300, 300)) -> np.ndarray:
    c, s = math.cos(rot), math.sin(rot)
    corners = np.array([[-h / 2, -w / 2], [-h / 2, w / 2], [h / 2, w / 2], [h / 2, -w / 2]])
    pts = corners @ np.array([[c, -s], [s, c]]).T + np.array(shape) / 2
    labels = np.zeros(shape, np.int32)
    rr, cc = polygon(pts[:, 0], pts[:, 1], shape)
    labels[rr, cc] = 1
    return labels


def ellipse_perimeter(a: float, b: float) -> float:
    a, b = max(a, b), min(a, b)
    return 4 * a * ellipe(1 - (b / a) ** 2)


@pytest.mark.parametrize("a,b,rot", [(40, 40, 0.0), (60, 20, 0.3), (45, 15, 1.1), (90, 28, 2.0), (30, 24, 0.7)])
def test_ellipse_matches_analytic_values(a, b, rot):
    row = measure_instances(ellipse_image(a, b, rot), None, None, {})[0]
    assert row["area_px"] == pytest.approx(math.pi * a * b, rel=0.01)
    assert row["perimeter_px"] == pytest.approx(ellipse_perimeter(a, b), rel=0.02)
    assert row["equivalent_diameter_px"] == pytest.approx(2 * math.sqrt(a * b), rel=0.01)
    assert row["major_axis_px"] == pytest.approx(2 * max(a, b), rel=0.01)
    assert row["minor_axis_px"] == pytest.approx(2 * min(a, b), rel=0.01)
    assert row["aspect_ratio"] == pytest.approx(max(a, b) / min(a, b), rel=0.02)
    # near-circles have an ill-conditioned eccentricity; the axis ratio it encodes is what must match
    assert math.sqrt(1 - row["eccentricity"] ** 2) == pytest.approx(min(a, b) / max(a, b), rel=0.01)
    # Feret diameters span the outer corners of the boundary pixels: up to ~2 px above the analytic value
    assert 2 * max(a, b) - 0.5 <= row["feret_max_px"] <= 2 * max(a, b) + 2
    assert 2 * min(a, b) - 0.5 <= row["feret_min_px"] <= 2 * min(a, b) + 2
    assert row["solidity"] > 0.95  # the convex image spans outer pixel corners
    assert row["centroid_row_px"] == pytest.approx(200.3, abs=0.5)
    assert row["centroid_col_px"] == pytest.approx(199.6, abs=0.5)


@pytest.mark.parametrize("radius", [12, 25, 60])
def test_disk_is_circular(radius):
    row = measure_instances(ellipse_image(radius, radius, 0.0), None, None, {})[0]
    assert row["circularity"] == pytest.approx(1.0, abs=0.02)
    assert row["eccentricity"] < 0.15
    assert row["aspect_ratio"] == pytest.approx(1.0, abs=0.02)


def test_elongated_ellipse_is_not_circular():
    row = measure_instances(ellipse_image(80, 20, 0.4), None, None, {})[0]
    expected = 4 * math.pi * math.pi * 80 * 20 / ellipse_perimeter(80, 20) ** 2
    assert row["circularity"] == pytest.approx(expected, rel=0.03)
    assert row["circularity"] < 0.6


@pytest.mark.parametrize("w,h,rot", [(100, 40, 0.0), (100, 40, 0.5), (60, 20, 1.0), (150, 30, 0.25)])
def test_rectangle_feret(w, h, rot):
    labels = rectangle_image(w, h, rot)
    row = measure_instances(labels, None, None, {})[0]
    assert row["area_px"] == pytest.approx(w * h, rel=0.04)  # polygon() includes the boundary row/column
    assert np.hypot(w, h) - 0.5 <= row["feret_max_px"] <= np.hypot(w + 1, h + 1) + 1
    assert h - 0.5 <= row["feret_min_px"] <= h + 2
    assert row["solidity"] > 0.95


def test_feret_max_equals_scikit_image(rng):
    labels = ellipse_labels((300, 300), 15, rng, axes=(4, 40))
    rows = measure_instances(labels, None, None, {})
    skimage_max = {r.label: r.feret_diameter_max for r in regionprops(labels)}
    for row in rows:
        assert row["feret_max_px"] == pytest.approx(skimage_max[row["id"]], rel=1e-9)
        assert row["feret_min_px"] <= row["feret_max_px"]


def _blobs(rng, n: int):
    """Random connected shapes of every kind: smooth blobs, ragged ones with holes, thin lines, single pixels."""
    from scipy import ndimage
    from skimage.measure import label

    yield np.ones((1, 1), bool)
    yield np.ones((1, 7), bool)
    yield np.eye(9, dtype=bool)
    yield np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]], bool)  # two pixels apart: a hull of two diamonds
    for _ in range(n):
        h, w = rng.integers(2, 90, 2)
        field = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 6))
        for region in regionprops(label(field > np.quantile(field, rng.uniform(0.3, 0.7)))):
            yield region.image


def test_convex_image_is_scikit_images_pixel_for_pixel(rng):
    from skimage.morphology import convex_hull_image

    shapes = list(_blobs(rng, 300))
    assert len(shapes) > 500
    for image in shapes:
        np.testing.assert_array_equal(convex_image(image), convex_hull_image(image))


def test_convex_outline_gives_the_traced_contours_feret_diameters(rng):
    """The end midpoints of rows and columns span the same hull as skimage's traced contour of the
    convex image (what `feret_diameter_max` uses): identical Feret diameters, also with non-square spacing."""
    from skimage.measure import find_contours

    shapes = list(_blobs(rng, 300))
    assert len(shapes) > 500
    for image in shapes:
        convex = convex_image(image)
        traced = np.vstack(find_contours(np.pad(convex, 2), 0.5, fully_connected="high")) - 2
        outline = convex_outline(convex)
        assert set(map(tuple, outline)) <= set(map(tuple, traced))  # a subset of the contour's own vertices
        assert feret_diameters(outline) == feret_diameters(traced)
        spacing = np.array([0.004, 0.0075])
        assert feret_diameters(outline * spacing) == pytest.approx(feret_diameters(traced * spacing), rel=1e-12)


def test_solidity_equals_regionprops(rng):
    labels = ellipse_labels((300, 300), 15, rng, axes=(4, 40))
    labels[100:140, 100:104] = labels.max() + 1  # a thin bar (convex: solidity 1)
    rows = measure_instances(labels, None, None, {})
    expected = {r.label: r.solidity for r in regionprops(labels)}
    assert len(rows) == len(expected)
    for row in rows:
        assert row["solidity"] == pytest.approx(expected[row["id"]], rel=1e-12)


def test_feret_diameters_of_point_sets():
    square = np.array([[0, 0], [0, 10], [10, 10], [10, 0], [5, 5]], float)
    fmax, fmin = feret_diameters(square)
    assert fmax == pytest.approx(10 * math.sqrt(2))
    assert fmin == pytest.approx(10)
    theta = 0.3
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    rect = np.array([[0, 0], [0, 30], [8, 30], [8, 0]], float) @ rot.T + 7
    fmax, fmin = feret_diameters(rect)
    assert fmax == pytest.approx(math.hypot(30, 8))
    assert fmin == pytest.approx(8)
    triangle = np.array([[0, 0], [0, 4], [3, 0]], float)  # 3-4-5 right triangle: smallest height is 12/5
    assert feret_diameters(triangle) == pytest.approx((5.0, 2.4))
    line = np.array([[0, 0], [1, 1], [2, 2]], float)
    assert feret_diameters(line) == pytest.approx((2 * math.sqrt(2), 0.0))


def test_pixel_size_scales_physical_columns():
    labels = ellipse_image(50, 20, 0.2)
    px = measure_instances(labels, None, None, {})[0]
    at5 = measure_instances(labels, None, 5.0, {})[0]
    at10 = measure_instances(labels, None, 10.0, {})[0]
    assert all(math.isnan(px[c]) for c in UM_COLUMNS)
    assert at5["area_um2"] == pytest.approx(px["area_px"] * 0.005**2)
    assert at10["area_um2"] == pytest.approx(4 * at5["area_um2"])
    for name in ("perimeter", "equivalent_diameter", "major_axis", "minor_axis", "feret_max", "feret_min"):
        assert at5[f"{name}_um"] == pytest.approx(px[f"{name}_px"] * 0.005)
        assert at10[f"{name}_um"] == pytest.approx(2 * at5[f"{name}_um"])
        assert at10[f"{name}_px"] == px[f"{name}_px"]
    assert at5["centroid_y_um"] == pytest.approx(px["centroid_row_px"] * 0.005)
    assert at5["centroid_x_um"] == pytest.approx(px["centroid_col_px"] * 0.005)


def test_rows_ids_scores_intensity_bbox_and_border():
    labels = np.zeros((50, 60), np.uint16)
    labels[10:20, 10:30] = 7  # inside
    labels[0:5, 40:60] = 3  # touches the top and right borders
    labels[30:40, 5:15] = 12
    intensity = np.zeros((50, 60), np.uint8)
    intensity[labels == 7] = 100
    intensity[labels == 3] = 20
    intensity[labels == 12] = 200
    intensity[35, 10] = 0  # one dark pixel: the mean moves by 200/100
    rows = measure_instances(labels, intensity, 4.0, {3: 0.9, 7: 0.55})
    assert [r["id"] for r in rows] == [3, 7, 12]
    assert all(list(r) == list(OBJECT_COLUMNS) for r in rows)
    by_id = {r["id"]: r for r in rows}
    assert by_id[7]["area_px"] == 200 and by_id[3]["area_px"] == 100 and by_id[12]["area_px"] == 100
    assert by_id[7]["mean_intensity"] == pytest.approx(100)
    assert by_id[12]["mean_intensity"] == pytest.approx(198)
    assert by_id[3]["score"] == pytest.approx(0.9) and by_id[7]["score"] == pytest.approx(0.55)
    assert math.isnan(by_id[12]["score"])
    assert (by_id[7]["bbox_row0"], by_id[7]["bbox_col0"], by_id[7]["bbox_row1"], by_id[7]["bbox_col1"]) == (10, 10, 20, 30)
    assert by_id[3]["touches_border"] and not by_id[7]["touches_border"] and not by_id[12]["touches_border"]
    assert by_id[7]["centroid_row_px"] == pytest.approx(14.5) and by_id[7]["centroid_col_px"] == pytest.approx(19.5)
    assert by_id[7]["feret_min_px"] == pytest.approx(10, abs=1) and by_id[7]["feret_max_px"] == pytest.approx(math.hypot(10, 20), abs=1.5)


def test_rgb_intensity_is_averaged_and_shape_checked():
    labels = np.zeros((20, 20), np.int32)
    labels[5:10, 5:10] = 1
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30, 60, 90
    assert measure_instances(labels, rgb, None, {})[0]["mean_intensity"] == pytest.approx(60)
    with pytest.raises(ValueError, match="shape"):
        measure_instances(labels, np.zeros((10, 10)), None, {})


def test_empty_label_image():
    assert measure_instances(np.zeros((30, 30), np.uint16), None, 5.0, {}) == []
    summary = summarize_image([], (30, 30), 5.0)
    assert list(summary) == list(IMAGE_COLUMNS)
    assert summary["count"] == 0 and summary["total_area_px"] == 0 and summary["area_fraction"] == 0
    assert math.isnan(summary["mean_area_px"]) and math.isnan(summary["median_area_px"])
    assert summary["density_per_um2"] == 0


def test_summarize_image():
    labels = np.zeros((100, 200), np.int32)
    labels[0:10, 0:10] = 1  # 100 px
    labels[50:70, 50:60] = 2  # 200 px
    labels[80:90, 100:160] = 3  # 600 px
    rows = measure_instances(labels, None, 10.0, {})
    s = summarize_image(rows, labels.shape, 10.0)
    assert list(s) == list(IMAGE_COLUMNS)
    assert s["count"] == 3
    assert s["total_area_px"] == 900 and s["mean_area_px"] == 300 and s["median_area_px"] == 200
    assert s["total_area_um2"] == pytest.approx(900 * 0.01**2)
    assert s["median_area_um2"] == pytest.approx(200 * 0.01**2)
    assert s["area_fraction"] == pytest.approx(900 / 20000)
    assert s["image_area_um2"] == pytest.approx(20000 * 1e-4)
    assert s["density_per_um2"] == pytest.approx(3 / 2.0)
    unknown = summarize_image(rows, labels.shape, None)
    assert unknown["area_fraction"] == pytest.approx(900 / 20000)
    assert all(math.isnan(unknown[k]) for k in IMAGE_COLUMNS if k.endswith("um2"))


def physical_ellipse(a_nm: float, b_nm: float, rot: float, x_nm: float, y_nm: float, shape=(200, 300)) -> np.ndarray:
    """Label image of an ellipse (semi-axes in nm, `rot` from the x axis) sampled on x_nm by y_nm pixels."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    y, x = (rows - shape[0] / 2 + 0.3) * y_nm, (cols - shape[1] / 2 - 0.4) * x_nm
    u, v = x * math.cos(rot) + y * math.sin(rot), -x * math.sin(rot) + y * math.cos(rot)
    return ((u / a_nm) ** 2 + (v / b_nm) ** 2 <= 1).astype(np.int32)


@pytest.mark.parametrize("a,b,rot", [(400, 400, 0.0), (600, 200, math.pi / 4), (500, 250, 1.2)])
def test_non_square_pixels_measure_the_physical_shape(a, b, rot):
    """4 x 8 nm pixels: a physical circle is a 2:1 ellipse in pixels; the um columns and ratios are the circle's."""
    from mitotally.runtime.pixel_size import PixelSize

    size = PixelSize(4.0, 8.0, "imagej")
    row = measure_instances(physical_ellipse(a, b, rot, 4.0, 8.0), None, size, {})[0]
    assert row["area_um2"] == pytest.approx(row["area_px"] * 4.0 * 8.0 / 1e6, rel=1e-12)  # exactly px x pixel area
    assert row["area_um2"] == pytest.approx(math.pi * a * b / 1e6, rel=0.01)
    assert row["perimeter_um"] == pytest.approx(ellipse_perimeter(a, b) / 1e3, rel=0.02)
    assert row["major_axis_um"] == pytest.approx(2 * a / 1e3, rel=0.02)
    assert row["minor_axis_um"] == pytest.approx(2 * b / 1e3, rel=0.02)
    assert row["equivalent_diameter_um"] == pytest.approx(2 * math.sqrt(a * b) / 1e3, rel=0.01)
    assert row["aspect_ratio"] == pytest.approx(a / b, rel=0.03)
    assert 2 * a / 1e3 - 0.005 <= row["feret_max_um"] <= 2 * a / 1e3 + 0.02  # + up to a pixel diagonal
    assert 2 * b / 1e3 - 0.005 <= row["feret_min_um"] <= 2 * b / 1e3 + 0.02
    assert row["circularity"] == pytest.approx(min(1.0, 4 * math.pi * math.pi * a * b / ellipse_perimeter(a, b) ** 2), rel=0.04)
    assert row["centroid_y_um"] == pytest.approx(row["centroid_row_px"] * 0.008)
    assert row["centroid_x_um"] == pytest.approx(row["centroid_col_px"] * 0.004)
    if a == b:  # in pixels it is a 2:1 ellipse: the px columns describe the grid, not the specimen
        assert row["major_axis_px"] == pytest.approx(2 * row["minor_axis_px"], rel=0.02)


def test_non_square_pixels_summary_uses_the_pixel_area():
    from mitotally.runtime.pixel_size import PixelSize

    labels = physical_ellipse(400, 300, 0.3, 4.0, 8.0)
    rows = measure_instances(labels, None, PixelSize(4.0, 8.0, "ome"), {})
    summary = summarize_image(rows, labels.shape, PixelSize(4.0, 8.0, "ome"))
    assert summary["total_area_um2"] == pytest.approx(rows[0]["area_px"] * 32e-6, rel=1e-12)
    assert summary["image_area_um2"] == pytest.approx(labels.size * 32e-6, rel=1e-12)


@pytest.mark.parametrize("a,b,rot,rel", [(40, 40, 0.0, 0.025), (60, 30, 0.4, 0.012), (100, 40, 1.0, 0.013),
                                         (200, 100, 0.2, 0.012), (2000, 800, 0.3, 0.012)])
def test_contour_length_with_non_square_pixels_against_analytic_perimeter(a, b, rot, rel):
    """The numbers `measure.contour_length` quotes: 4 x 8 nm pixels, ellipses down to 10 x 5 px across."""
    from mitotally.runtime.measure import contour_length

    region = regionprops(physical_ellipse(a, b, rot, 4.0, 8.0, shape=(600, 1100)))[0]
    assert contour_length(region.image, (8.0, 4.0)) == pytest.approx(ellipse_perimeter(a, b), rel=rel)
