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
