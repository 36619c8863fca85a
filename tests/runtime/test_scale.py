"""Rescaling images and label images to the model's pixel size: shape, values, area and placement."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk

from mitotally.runtime.scale import rescale_image, rescale_labels, scaled_shape

FACTORS = [0.5, 2.0, 1.5, 0.7, 1 / 3, 0.37, 1.25]


def expected_centre(centre: float, factor: float) -> float:
    """Where a point (array-index coordinates, pixel centres at integers) lands after rescaling."""
    return (centre + 0.5) * factor - 0.5


def test_scaled_shape_rounds_and_never_vanishes():
    assert scaled_shape((1000, 768), 0.5) == (500, 384)
    assert scaled_shape((3704, 4864), 5 / 8) == (2315, 3040)
    assert scaled_shape((101, 99), 1 / 3) == (34, 33)
    assert scaled_shape((3, 3), 0.01) == (1, 1)


def test_rescale_image_identity_block_mean_and_constant():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60)).astype(np.uint8)
    same = rescale_image(img, 1.0)
    assert same.dtype == np.float32 and np.array_equal(same, img.astype(np.float32))
    half = rescale_image(img, 0.5)
    assert half.shape == (20, 30)
    np.testing.assert_allclose(half, img.astype(np.float32).reshape(20, 2, 30, 2).mean((1, 3)), rtol=1e-6)
    flat = np.full((33, 47), 7.0, np.float32)
    for f in FACTORS:
        out = rescale_image(flat, f)
        assert out.shape == scaled_shape(flat.shape, f)
        np.testing.assert_allclose(out, 7.0, rtol=1e-6)


@pytest.mark.parametrize("factor", FACTORS)
def test_rescale_image_keeps_placement_and_mass(factor):
    yy, xx = np.mgrid[:240, :260]
    img = np.exp(-((yy - 101.3) ** 2 + (xx - 77.8) ** 2) / (2 * 15**2)).astype(np.float32)
    out = rescale_image(img, factor)
    fy, fx = out.shape[0] / img.shape[0], out.shape[1] / img.shape[1]
    cy, cx = ndimage.center_of_mass(img)
    qy, qx = ndimage.center_of_mass(out)
    assert qy == pytest.approx(expected_centre(cy, fy), abs=0.1)
    assert qx == pytest.approx(expected_centre(cx, fx), abs=0.1)
    assert out.sum() == pytest.approx(img.sum() * fy * fx, rel=0.01)


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("centre", [(100.0, 120.0), (101.3, 77.8), (57.5, 150.2)])
def test_rescale_labels_keeps_area_and_placement(factor, centre):
    labels = np.zeros((240, 260), np.int32)
    labels[disk(centre, 30, shape=labels.shape)] = 5
    out = rescale_labels(labels, factor)
    assert out.shape == scaled_shape(labels.shape, factor) and out.dtype == labels.dtype
    assert set(np.unique(out)) == {0, 5}
    fy, fx = out.shape[0] / labels.shape[0], out.shape[1] / labels.shape[1]
    assert (out == 5).sum() == pytest.approx((labels == 5).sum() * fy * fx, rel=0.025)  # a 15-30 px radius disk out
    cy, cx = ndimage.center_of_mass(labels == 5)
    qy, qx = ndimage.center_of_mass(out == 5)
    assert qy == pytest.approx(expected_centre(cy, fy), abs=0.25)
    assert qx == pytest.approx(expected_centre(cx, fx), abs=0.25)


@pytest.mark.parametrize("factor", [0.5, 0.37, 2.0, 1.5])
def test_rescale_labels_agrees_with_rescale_image_of_each_mask(factor):
    """The label image is what thresholding the image-resampled mask at 0.5 gives (up to boundary pixels)."""
    rng = np.random.default_rng(3)
    labels = np.zeros((120, 140), np.int32)
    for k, (r, c) in enumerate(rng.uniform(20, 100, (5, 2)), start=1):
        rr, cc = disk((r, c), rng.uniform(6, 14), shape=labels.shape)
        free = labels[rr, cc] == 0
        labels[rr[free], cc[free]] = k
    out = rescale_labels(labels, factor)
    for k in np.unique(labels[labels > 0]):
        ref = rescale_image((labels == k).astype(np.float32), factor) >= 0.5
        got = out == k
        assert (ref ^ got).sum() <= 0.05 * max(ref.sum(), 1) + 2


def test_rescale_labels_identity_touching_and_border():
    labels = np.zeros((64, 64), np.uint16)
    labels[0:20, 0:32] = 1  # touches the image border
    labels[0:20, 32:64] = 2  # touches object 1
    labels[40:60, 10:50] = 300
    assert np.array_equal(rescale_labels(labels, 1.0), labels)
    half = rescale_labels(labels, 0.5)
    expected = labels[::2, ::2]  # exact 2x2 blocks: every block lies inside one object or the background
    assert np.array_equal(half, expected)
    double = rescale_labels(labels, 2.0)
    assert np.array_equal(double[::2, ::2], labels) and double.dtype == np.uint16
    assert (double == 1).sum() == 4 * (labels == 1).sum()  # the object at the border keeps its edge pixels


# --- non-square input pixels: (rows, cols) factors --------------------------------------------------------------

@pytest.mark.parametrize("factor", [(0.8, 0.4), (1.6, 0.8), (0.5, 2.0), (2.0, 3.0)])
def test_rescale_image_per_axis_is_each_axis_alone(factor):
    """(rows, cols): the result is the rows rescaled alone, then the columns alone (each axis its own mode)."""
    from mitotally.runtime.scale import axis_factors

    image = np.random.default_rng(3).random((60, 50)).astype(np.float32)
    fy, fx = axis_factors(factor)
    got = rescale_image(image, factor)
    h, w = scaled_shape(image.shape, factor)
    assert got.shape == (h, w)
    expected = rescale_image(rescale_image(image, (fy, 1.0)), (1.0, fx))
    assert np.allclose(got, expected, atol=1e-5)
    assert got.mean() == pytest.approx(image.mean(), rel=0.02)


@pytest.mark.parametrize("shape,factor,block", [((301, 257), (0.8, 0.4), 16), ((200, 190), (0.3, 0.55), 5),
                                                 ((90, 70), (1.6, 0.8), 8), ((64, 80, 3), (0.5, 0.25), 7)])
def test_prepare_with_rows_cols_factors_is_the_trainers_preprocessing(shape, factor, block):
    from mitotally.runtime.normalize import Normalization, normalize
    from mitotally.runtime.prepare import prepare

    image = np.random.default_rng(5).integers(0, 65535, shape).astype(np.uint16)
    expected = rescale_image(normalize(image, Normalization()), factor)
    got = prepare(image, Normalization(), factor, block_rows=block)
    assert got.shape == expected.shape == scaled_shape(shape[:2], factor) and np.allclose(got, expected, atol=1e-5)
