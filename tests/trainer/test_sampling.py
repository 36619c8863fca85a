"""Training crops and how often each image is drawn."""
import numpy as np
import pytest

from mitotally.runtime.tiling import Tile, TileGrid
from mitotally.trainer.sampling import ScaledImage, crop_weights, labels_to_target, random_crop


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


def _gradient_with_edge_object() -> ScaledImage:
    """30 x 20 image; object 1 touches the right edge, object 2 is interior."""
    image = np.arange(600, dtype=np.float32).reshape(30, 20) / 600
    labels = np.zeros((30, 20), np.int32)
    labels[5:10, 15:20] = 1
    labels[20:25, 3:8] = 2
    return ScaledImage("x", image, labels)


def test_a_crop_larger_than_the_image_is_mirrored_like_an_inference_tile():
    item = _gradient_with_edge_object()
    img, lab = random_crop(item, 64, np.random.default_rng(0))
    assert img.shape == lab.shape == (64, 64) and img.dtype == np.float32
    tile = TileGrid((30, 20), 64, 0).crop(item.image, Tile(0, 0, (0, 0, 30, 20)))  # what inference feeds the model
    np.testing.assert_array_equal(img, tile)


def test_mirrored_objects_are_separate_instances():
    item = _gradient_with_edge_object()
    _, lab = random_crop(item, 64, np.random.default_rng(0))
    np.testing.assert_array_equal(lab[:30, :20], item.labels)  # the original keeps its ids
    # 64 / 20 -> 4 copies across, 64 / 30 -> 3 down; object 1 is whole in each column copy, cut in the last
    ids = np.unique(lab[lab > 0])
    assert len(ids) > 2
    # the edge object and its reflection touch at column 20 but are two instances
    assert lab[7, 19] == 1 and lab[7, 20] not in (0, 1)
    target = labels_to_target(lab)
    assert len(target["boxes"]) == len(ids)
    assert (target["boxes"][:, 2] - target["boxes"][:, 0]).max() <= 5  # objects are 5 wide: none spans a mirror line


def test_a_crop_inside_a_large_image_is_a_plain_window():
    item = _gradient_with_edge_object()
    img, lab = random_crop(item, 16, np.random.default_rng(3))
    rows, cols = np.nonzero(np.isin(item.image, img))
    r, c = rows.min(), cols.min()
    np.testing.assert_array_equal(img, item.image[r : r + 16, c : c + 16])
    np.testing.assert_array_equal(lab, item.labels[r : r + 16, c : c + 16])


def test_scale_jitter_resizes_image_and_labels_together():
    labels = np.zeros((200, 200), np.int32)
    labels[40:80, 40:80] = 1  # 1,600 px
    labels[120:150, 100:170] = 2
    item = ScaledImage("x", (labels > 0).astype(np.float32), labels)
    areas = []
    for seed in range(12):
        img, lab = random_crop(item, 160, np.random.default_rng(seed), scale_jitter=0.3)
        assert img.shape == lab.shape == (160, 160) and lab.dtype == np.int32
        inside = lab > 0
        assert ((img > 0.5) == inside).mean() > 0.98  # image and labels stay aligned after resizing
        if 1 in lab and not (lab[0] == 1).any() and not (lab[-1] == 1).any() and not (lab[:, 0] == 1).any() and not (lab[:, -1] == 1).any():
            areas.append(int((lab == 1).sum()))
    assert len(areas) >= 3 and max(areas) / min(areas) > 1.2  # object sizes in pixels vary with the zoom
    assert min(areas) > 1600 * np.exp(-0.6) * 0.9 and max(areas) < 1600 * np.exp(0.6) * 1.1


def test_a_training_image_with_a_data_bar_is_what_mito_run_feeds_the_model(tiny_model_dir, monkeypatch):
    """The trainer's sample and the runtime's input are one function's output: the specimen only, normalised
    by the specimen's percentiles (the bar's black would otherwise be the 1st percentile), at one scale."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
    from mito_run_helpers import with_data_bar

    import mitotally.runtime.segmenter as segmenter_module
    from mitotally.runtime.image_io import ImageData
    from mitotally.runtime.instances import Instances
    from mitotally.runtime.normalize import Normalization, normalize
    from mitotally.runtime.scale import rescale_image
    from mitotally.trainer.importers.types import LabelledImage
    from mitotally.trainer.sampling import scale_dataset

    rng = np.random.default_rng(5)
    specimen = np.clip(rng.normal(150, 30, (300, 400)), 20, 255).astype(np.uint8)  # nothing near 0: the bar is darker
    frame = with_data_bar(specimen, 40)
    labels = np.zeros(frame.shape, np.int32)
    labels[100:140, 200:260] = 1
    norm = Normalization()
    (scaled,) = scale_dataset([LabelledImage("bar", Path("bar.png"), frame, labels, 5.0)], norm, 10.0, None, 5.0)

    seen = {}

    def capture(backend, array, out_shape, *args):  # what the runtime hands the model, and no instances
        seen["input"] = array
        return Instances.from_label_image(np.zeros(out_shape, np.int32))

    monkeypatch.setattr(segmenter_module, "segment_scaled", capture)
    segmenter = segmenter_module.Segmenter(tiny_model_dir, "torch", "cpu", scale_estimate="off")
    segmenter.segment(ImageData(Path("bar.png"), frame, 5.0), 5.0)
    np.testing.assert_array_equal(scaled.image, seen["input"])  # the very numbers mito-run segments
    assert scaled.content is not None and scaled.content.bottom == 300 and scaled.image.shape == (150, 200)
    assert scaled.labels.shape == scaled.image.shape and scaled.labels.max() == 1
    np.testing.assert_array_equal(scaled.specimen_labels(labels), labels[:300])
    # what training used to see: the whole frame normalised, the bar setting the low percentile
    old = rescale_image(normalize(frame, norm), 0.5)[:150]
    assert np.abs(old - scaled.image).mean() > 0.05
