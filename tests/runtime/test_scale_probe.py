"""Scale estimate for images without a pixel size: the decision rule, the probe window, and the shipped
model finding the scale of a cardiac frame shown at its true and at 4x finer resolution."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mitotally.runtime.image_io import ImageData, read_image
from mitotally.runtime.scale_probe import MIN_GAIN, candidates, centre_window, choose
from mitotally.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[2]
CARDIAC = REPO / "samples" / "cardiac_tem_3.jpg"  # uncalibrated; 5 nm is the scale the shipped model was trained at


def test_candidates_span_two_times_coarser_to_eight_times_finer():
    assert candidates(5.0) == [10.0, 5.0, 2.5, 1.25, 0.625]


def test_default_is_kept_unless_another_scale_covers_clearly_more():
    # measured at the true scale (Lucchi slice 160): the best other candidate covered 1.11x the default
    assert choose(5.0, {10.0: 0.011, 5.0: 0.035, 2.5: 0.039}).pixel_size_nm == 5.0
    # a full-resolution cardiac frame read at the default: the true scale covers far more
    moved = choose(5.0, {10.0: 0.04, 5.0: 0.03, 1.25: 0.38, 0.625: 0.11})
    assert moved.pixel_size_nm == 1.25 and moved.moved and moved.coverage[5.0] == 0.03
    just_under = choose(5.0, {5.0: 0.1, 2.5: 0.1 * MIN_GAIN - 1e-6})
    assert just_under.pixel_size_nm == 5.0 and not just_under.moved
    assert choose(5.0, {5.0: 0.1, 2.5: 0.1 * MIN_GAIN}).pixel_size_nm == 2.5
    # nothing found anywhere (a blank or non-EM image), or only crumbs: stay at the default
    assert choose(5.0, {10.0: 0.0, 5.0: 0.0, 2.5: 0.0}).pixel_size_nm == 5.0
    assert choose(5.0, {5.0: 0.0, 2.5: 0.004}).pixel_size_nm == 5.0
    assert choose(5.0, {5.0: 0.2, 2.5: 0.2}).pixel_size_nm == 5.0  # a tie goes to the default


def test_centre_window_is_central_and_never_larger_than_the_image():
    image = np.arange(100 * 60).reshape(100, 60)
    w = centre_window(image, 20)
    assert w.shape == (20, 20) and w[0, 0] == image[40, 20]
    assert centre_window(image, 500).shape == (100, 60)
    rgb = np.zeros((50, 50, 3))
    assert centre_window(rgb, 10).shape == (10, 10, 3)


@pytest.fixture(scope="module")
def shipped() -> Segmenter:
    return Segmenter(backend="torch", device="cpu")


def _upsampled(array: np.ndarray, f: int) -> np.ndarray:
    from skimage.transform import rescale

    gray = array[..., 0] if array.ndim == 3 else array
    return rescale(gray.astype(np.float32), f, order=1, preserve_range=True).astype(np.uint8)


def test_shipped_model_finds_the_scale_of_a_full_resolution_frame(shipped):
    """The sample frame at its own scale stays at the default; shown 4x larger (a full-resolution
    instrument frame), the probe finds 4x finer pixels and the frame's mitochondria are found again."""
    image = read_image(CARDIAC)
    assert image.pixel_size_nm is None
    at_default = shipped.segment(image, None)
    assert at_default.scaling_source == "default" and at_default.scaling_pixel_size_nm == 5.0
    big = ImageData(Path("cardiac_x4.png"), _upsampled(image.array, 4), None)
    found = shipped.segment(big, None)
    assert found.scaling_source == "estimated" and found.scaling_pixel_size_nm == pytest.approx(1.25)
    assert found.estimate.coverage[1.25] > 3 * found.estimate.coverage[5.0]
    # the same mitochondria as at the original size, within a few (16 on the original; labelling partial)
    assert abs(len(found.instances) - len(at_default.instances)) <= 3 and len(at_default.instances) >= 12
    # given the right pixel size, the check agrees and nothing moves
    given = shipped.segment(big, 1.25)
    assert given.scaling_source == "given" and given.scaling_pixel_size_nm == 1.25 and not given.scale_disputed
    assert given.estimate.default_nm == 1.25 and len(given.instances) == len(found.instances)


def test_a_calibration_the_model_disagrees_with_is_kept_and_flagged_unless_always(shipped, monkeypatch):
    """The full-resolution frame *calibrated* as 5 nm (as if the model's training scale were physical): by
    default the calibration is what the model sees, and the check says the model disagrees; with
    --scale-estimate always the model sees it at the estimated scale, while µm values keep 5 nm."""
    big = ImageData(Path("cardiac_x4.tif"), _upsampled(read_image(CARDIAC).array, 4), 5.0)
    kept = shipped.segment(big, 5.0)
    assert kept.scaling_source == "given" and kept.scaling_pixel_size_nm == 5.0 and kept.scale_disputed
    assert kept.estimate.default_nm == 5.0 and kept.estimate.pixel_size_nm == pytest.approx(1.25)
    at_true_scale = shipped.segment(big, 1.25)
    monkeypatch.setattr(shipped, "scale_estimate", "always")
    moved = shipped.segment(big, 5.0)
    assert moved.scaling_source == "estimated" and moved.scaling_pixel_size_nm == pytest.approx(1.25)
    # exactly what the model gives at the true scale (at 5 nm it cut fragments: F1 0.00)
    assert len(moved.instances) == len(at_true_scale.instances) >= 12
    np.testing.assert_array_equal(moved.instances.offsets, at_true_scale.instances.offsets)


def test_one_estimate_per_image_size(shipped, monkeypatch):
    import mitotally.runtime.segmenter as segmenter_module

    calls = []
    real = segmenter_module.estimate_pixel_size
    monkeypatch.setattr(segmenter_module, "estimate_pixel_size", lambda *a: calls.append(1) or real(*a))
    shipped.scale_estimates.clear()
    array = read_image(CARDIAC).array
    for name in ("a.jpg", "b.jpg"):
        seg = shipped.segment(ImageData(Path(name), array, None), None)
        assert seg.estimated_from == "a.jpg"
    shipped.segment(ImageData(Path("c.jpg"), array[:400, :600], None), None)
    assert len(calls) == 2 and len(shipped.scale_estimates) == 2


def test_no_scale_estimate_assumes_the_default():
    seg = Segmenter(backend="torch", device="cpu", scale_estimate="off")
    out = seg.segment(ImageData(Path("x.png"), read_image(CARDIAC).array, None), None)
    assert out.scaling_source == "default" and out.estimate is None and out.scaling_pixel_size_nm == 5.0
    assert not seg.scale_estimates


def test_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="scale_estimate"):
        Segmenter(backend="torch", device="cpu", scale_estimate="sometimes")


def test_a_half_octave_neighbour_needs_a_clear_gain_over_the_octave_winner(monkeypatch):
    from mitotally.runtime import scale_probe

    def fake_coverage(values):  # a stand-in for the model's coverage, to isolate the rule
        return lambda backend, image, manifest, px: values.get(round(px, 2), 0.0)

    from types import SimpleNamespace

    M = lambda: SimpleNamespace(default_input_pixel_size_nm=5.0, pixel_size_nm=10.0)  # noqa: E731
    frame = np.zeros((3264, 4864), np.uint8)  # a full-resolution frame: every candidate has context
    backend = SimpleNamespace(tile=512)

    # release 3 on cardiac Image_3 upsampled 4x: 1.77 nm covered 9% more than the true 1.25 nm
    measured = {10.0: 0.0, 5.0: 0.004, 2.5: 0.093, 1.25: 0.409, 0.62: 0.319, 1.77: 0.446, 0.88: 0.359}
    monkeypatch.setattr(scale_probe, "coverage", fake_coverage(measured))
    assert scale_probe.estimate_pixel_size(backend, frame, M()).pixel_size_nm == 1.25
    clearly = {**measured, 1.77: 0.409 * scale_probe.REFINE_GAIN + 1e-6}
    monkeypatch.setattr(scale_probe, "coverage", fake_coverage(clearly))
    assert scale_probe.estimate_pixel_size(backend, frame, M()).pixel_size_nm == pytest.approx(1.25 * 2**0.5)


def test_scales_at_which_the_image_is_a_handful_of_pixels_are_not_tried(monkeypatch):
    from types import SimpleNamespace

    from mitotally.runtime import scale_probe

    tried = []
    monkeypatch.setattr(scale_probe, "coverage", lambda b, im, m, px: tried.append(px) or (0.9 if px < 3 else 0.04))
    manifest = SimpleNamespace(default_input_pixel_size_nm=5.0, pixel_size_nm=10.0)
    # a 1024x768 slice: at 2.5 nm it is 256x192 model px (< a quarter of a 512 tile), so only 10 and 5 nm are tried
    est = scale_probe.estimate_pixel_size(SimpleNamespace(tile=512), np.zeros((768, 1024), np.uint8), manifest)
    assert sorted(tried) == [5.0, 10.0] and est.pixel_size_nm == 5.0 and not est.moved
