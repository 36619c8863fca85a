"""Training crops and how often each image is drawn."""
import numpy as np
import pytest

from mitotally.trainer.sampling import ScaledImage, crop_weights


def _image(h: int, w: int) -> ScaledImage:
    return ScaledImage("x", np.zeros((h, w), np.float32), np.zeros((h, w), np.int32))


def test_crops_are_drawn_by_area_by_default():
    w = crop_weights([_image(10, 10), _image(10, 30)])
    assert w == pytest.approx([0.25, 0.75])


def test_shares_give_each_folder_its_fraction_of_crops_and_area_within_it():
    # a large public set (3 images) and a lab's two small images: the lab gets 30% of crops whatever the areas
    items = [_image(100, 100), _image(100, 100), _image(100, 200), _image(10, 10), _image(10, 30)]
    w = crop_weights(items, groups=[0, 0, 0, 1, 1], shares=[0.7, 0.3])
    assert w.sum() == pytest.approx(1.0)
    assert w[:3] == pytest.approx([0.7 * 0.25, 0.7 * 0.25, 0.7 * 0.5])
    assert w[3:] == pytest.approx([0.3 * 0.25, 0.3 * 0.75])


def test_shares_are_normalised_and_checked():
    items = [_image(10, 10), _image(10, 10)]
    assert crop_weights(items, [0, 1], [2.0, 2.0]) == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="no training images"):
        crop_weights(items, [0, 0], [0.5, 0.5])
    with pytest.raises(ValueError, match=">= 0"):
        crop_weights(items, [0, 1], [-1.0, 2.0])
