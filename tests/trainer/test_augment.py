"""Augmentations keep image and labels aligned."""
import numpy as np

from mitotally.trainer.augment import AugmentConfig, augment


def test_geometric_augmentations_move_image_and_labels_together(rng):
    labels = np.zeros((40, 60), np.int32)
    labels[5:12, 10:30] = 1
    labels[20:35, 40:50] = 2
    image = labels.astype(np.float32) * 0.4  # intensity encodes the label
    cfg = AugmentConfig(brightness=0, contrast=0, gamma=0, noise=0, blur=0)
    seen_shapes = set()
    for _ in range(20):
        img, lab = augment(image, labels, rng, cfg)
        seen_shapes.add(img.shape)
        np.testing.assert_allclose(img, lab.astype(np.float32) * 0.4)
    assert seen_shapes == {(40, 60), (60, 40)}  # 90-degree rotations happened


def test_intensity_augmentations_leave_labels_untouched(rng):
    labels = np.zeros((32, 32), np.int32)
    labels[4:10, 4:10] = 1
    image = rng.random((32, 32)).astype(np.float32)
    cfg = AugmentConfig(flips=False, rot90=False)
    img, lab = augment(image, labels, rng, cfg)
    np.testing.assert_array_equal(lab, labels)
    assert img.dtype == np.float32 and not np.allclose(img, image)
    assert img.min() >= -0.5 and img.max() <= 1.5


def test_gamma_keeps_the_sign_of_values_below_zero_instead_of_clipping_them(rng):
    # percentile-normalised images run below 0 (inference feeds them so); a clip would flatten dark membranes
    image = np.linspace(-0.3, 1.2, 64, dtype=np.float32).reshape(8, 8)
    labels = np.zeros((8, 8), np.int32)
    cfg = AugmentConfig(flips=False, rot90=False, brightness=0, contrast=0, noise=0, blur=0, gamma=0.5)
    img, _ = augment(image, labels, rng, cfg)
    assert (img[image < 0] < 0).all()
    assert len(np.unique(img[image < 0])) == np.count_nonzero(image < 0)  # still ordered, nothing collapsed


def test_inversion_flips_intensities():
    image = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    cfg = AugmentConfig(flips=False, rot90=False, brightness=0, contrast=0, gamma=0, noise=0, blur=0, invert=1.0)
    img, _ = augment(image, np.zeros((4, 4), np.int32), np.random.default_rng(0), cfg)
    np.testing.assert_allclose(img, 1 - image)
