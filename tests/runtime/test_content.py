"""Leaving an instrument's data bar out: which frames are cropped, by how much, and that the shipped
model then finds the same mitochondria as on the frame without the bar."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mitotally.runtime.content import content_box
from mitotally.runtime.image_io import ImageData, read_image
from mitotally.runtime.measure import measure_instances

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mito_run_helpers import with_data_bar  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CARDIAC = REPO / "samples" / "cardiac_tem_3.jpg"


def _em(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Noisy mid-gray texture with darker blobs: never flat along a line."""
    rng = np.random.default_rng(seed)
    img = rng.normal(140, 25, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(8):
        cy, cx, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(10, 40)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] -= 60
    return np.clip(img, 1, 254).astype(np.uint8)


def test_a_frame_without_a_bar_is_whole():
    box = content_box(_em((300, 400)))
    assert box.is_whole and box.content_shape == (300, 400) and box.describe() == ""


@pytest.mark.parametrize("value,text", [(0, 255), (255, 0), (3, 250)])
def test_a_bottom_data_bar_with_text_and_scale_bar_is_left_out(value, text):
    frame = with_data_bar(_em((300, 400)), 40, value, text)
    box = content_box(frame)
    assert (box.top, box.bottom, box.left, box.right) == (0, 300, 0, 400), box
    assert box.describe() == "bottom 40 px"
    np.testing.assert_array_equal(box.crop(frame), frame[:300])


def test_a_top_bar_and_a_16_bit_frame():
    frame = with_data_bar(_em((300, 400)), 30, side="top").astype(np.uint16) * 200
    box = content_box(frame)
    assert (box.top, box.bottom) == (30, 330) and box.describe() == "top 30 px"


def test_a_full_size_frame_is_judged_on_a_subsample_and_never_cut_into_the_specimen():
    frame = with_data_bar(np.kron(_em((820, 1200)), np.ones((4, 4), np.uint8)), 440)  # 4800 x 3720, like 4864 x 3704
    box = content_box(frame)
    assert 3280 <= box.bottom <= 3280 + 8 and box.top == 0  # at most a subsample step of bar stays in


def test_mostly_flat_or_tiny_bands_are_not_bars():
    blank = np.zeros((200, 200), np.uint8)
    blank[90:110, 90:110] = 255
    assert content_box(blank).is_whole  # cropping would leave less than half the image
    thin = with_data_bar(_em((300, 400)), 2)  # under 1% of the side: noise, not a bar
    assert content_box(thin).is_whole


def test_shipped_images_are_never_cropped():
    for path in sorted((REPO / "samples").glob("*.*[gf]")):
        assert content_box(read_image(path).array).is_whole, path


def test_real_training_and_validation_images_are_never_cropped(shared_data):
    paths = sorted((shared_data / "lucchi/train/images").glob("*.png")) + sorted((shared_data / "seed-cardiac/Images").glob("*.jpg"))
    assert len(paths) == 168
    assert [p.name for p in paths if not content_box(read_image(p).array).is_whole] == []


def test_objects_cut_by_the_bar_touch_the_border():
    labels = np.zeros((50, 40), np.int32)
    labels[30:40, 5:15] = 1  # ends at row 40, where a bar starts
    labels[10:20, 10:20] = 2
    rows = measure_instances(labels, None, None, {1: 1.0, 2: 1.0}, field_of_view=(0, 0, 40, 40))
    assert [r["touches_border"] for r in rows] == [True, False]
    assert [r["touches_border"] for r in measure_instances(labels, None, None, {1: 1.0, 2: 1.0})] == [False, False]


@pytest.mark.slow
def test_shipped_model_finds_the_same_mitochondria_with_a_data_bar():
    """Cardiac sample + a 110-row black bar (the instrument's 440 rows at this 4x-downscaled size): with the bar
    left out, the same instances as without it; segmented whole, far fewer (measured F1@0.5 0.81 -> 0.48)."""
    from mitotally.runtime.segmenter import Segmenter

    image = read_image(CARDIAC)
    gray = image.array if image.array.ndim == 2 else image.array[..., 0]
    framed = ImageData(Path("with_bar.png"), with_data_bar(gray, 110), None)
    seg = Segmenter(backend="torch", device="cpu")
    plain = seg.segment(ImageData(Path("plain.png"), gray, None), None)
    cropped = seg.segment(framed, None)
    assert cropped.content is not None and cropped.content.describe() == "bottom 110 px" and plain.content is None
    assert len(cropped.instances) == len(plain.instances) >= 12
    np.testing.assert_array_equal(cropped.instances.offsets, plain.instances.offsets)
    whole = Segmenter(backend="torch", device="cpu", skip_data_bars=False).segment(framed, None)
    assert whole.content is None and len(whole.instances) < len(plain.instances) - 5
