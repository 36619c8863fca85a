"""Scale estimate for images without a pixel size: the decision rule, the one region every candidate is
scored on, and the shipped model finding the scale of a cardiac frame shown at its true and at 4x finer
resolution."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mitotally.runtime.image_io import ImageData, read_image
from mitotally.runtime.scale_probe import MAX_TILES, MIN_GAIN, candidates, centre_crop, choose, cost, probe_region
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


def test_centre_crop_is_central_and_never_larger_than_the_image():
    image = np.arange(100 * 60).reshape(100, 60)
    w = centre_crop(image, (20, 20))
    assert w.shape == (20, 20) and w[0, 0] == image[40, 20]
    assert centre_crop(image, (500, 500)).shape == (100, 60)
    assert centre_crop(image, (500, 30)).shape == (100, 30)
    rgb = np.zeros((50, 50, 3))
    assert centre_crop(rgb, (10, 10)).shape == (10, 10, 3)


def _manifest():
    from mitotally.runtime.normalize import Normalization

    # the shipped model's geometry: 10 nm model pixels, 5 nm default input, 512 px tiles overlapping by 128
    return SimpleNamespace(default_input_pixel_size_nm=5.0, pixel_size_nm=10.0, overlap=128, normalization=Normalization(),
                           score_threshold=0.5, mask_threshold=0.5)


def test_every_candidate_is_scored_on_one_region_within_the_tile_budget():
    m = _manifest()
    px = candidates(5.0)
    # a 1024x768 slice: all of it (7 tiles: 6 at 10 nm, 1 at 5 nm; at 2.5 nm it is under a quarter tile)
    assert probe_region((768, 1024), m, 512, px, 5.0) == (768, 1024) and cost((768, 1024), m, 512, px, 5.0) == 7
    # a 2000x2000 SBF-SEM frame: all of it, 25 + 9 + 1 tiles at 10, 5 and 2.5 nm
    assert probe_region((2000, 2000), m, 512, px, 5.0) == (2000, 2000) and cost((2000, 2000), m, 512, px, 5.0) == 35
    # a full-resolution 4864x3264 frame: the central 2048 px, on which 1.25 nm (4x finer) is just usable
    region = probe_region((3264, 4864), m, 512, px, 5.0)
    assert region == (2048, 2048) and cost(region, m, 512, px, 5.0) == 36 <= MAX_TILES
    assert cost((2049, 2049), m, 512, px, 5.0) > MAX_TILES
    # a 20000 px frame gets the same region: the budget, not the image, sets it
    assert probe_region((20000, 20000), m, 512, px, 5.0) == (2048, 2048)
    # a tighter budget gives a smaller region, never one over budget
    small = probe_region((3264, 4864), m, 512, px, 5.0, max_tiles=10)
    assert cost(small, m, 512, px, 5.0) <= 10 < cost((small[0] + 1, small[1] + 1), m, 512, px, 5.0)


def test_a_sparse_centre_does_not_push_the_estimate_finer(monkeypatch):
    """The failure the one region fixes: a 2000x2000 frame at the coarse candidate's scale whose centre is empty.
    Each candidate used to see one tile's worth of the centre (512 px at 10 nm, 4096 at 1.25 nm), so only the
    fine candidates saw the mitochondria. Now all see the whole frame, and coverage says which scale fits."""
    from mitotally.runtime import scale_probe

    seen = []

    def fake_coverage(backend, region, manifest, px, limits=None):
        seen.append((px, region.shape))
        # the model "fits" at 10 nm: mitochondria cover 20% of a region that has them, seen at 10 nm
        has_mito = region.max() > 0
        return (0.2 if px == 10.0 else 0.05) if has_mito else 0.0

    frame = np.zeros((2000, 2000), np.uint8)
    frame[:300] = frame[-300:] = 1  # mitochondria only near the top and bottom edges: an empty centre
    monkeypatch.setattr(scale_probe, "coverage", fake_coverage)
    est = scale_probe.estimate_pixel_size(SimpleNamespace(tile=512), frame, _manifest())
    assert {shape for _, shape in seen} == {(2000, 2000)}  # one region for every candidate
    assert est.pixel_size_nm == 10.0 and est.region == (2000, 2000) and est.tiles <= MAX_TILES + scale_probe.REFINE_TILES


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
        return lambda backend, image, manifest, px, limits=None: values.get(round(px, 2), 0.0)

    frame = np.zeros((3264, 4864), np.uint8)  # a full-resolution frame: 10 ... 1.25 nm usable on its 2048 px region
    backend = SimpleNamespace(tile=512)

    # release 3 on cardiac Image_3 upsampled 4x: 1.77 nm covered 9% more than the true 1.25 nm
    measured = {10.0: 0.0, 5.0: 0.004, 2.5: 0.093, 1.25: 0.409, 0.62: 0.319, 1.77: 0.446, 0.88: 0.359}
    monkeypatch.setattr(scale_probe, "coverage", fake_coverage(measured))
    est = scale_probe.estimate_pixel_size(backend, frame, _manifest())
    assert est.pixel_size_nm == 1.25 and 0.625 not in est.coverage and 1.77 in {round(p, 2) for p in est.coverage}
    clearly = {**measured, 1.77: 0.409 * scale_probe.REFINE_GAIN + 1e-6}
    monkeypatch.setattr(scale_probe, "coverage", fake_coverage(clearly))
    assert scale_probe.estimate_pixel_size(backend, frame, _manifest()).pixel_size_nm == pytest.approx(1.25 * 2**0.5)


def test_a_half_octave_neighbour_is_tried_only_within_the_tile_budget(monkeypatch):
    from mitotally.runtime import scale_probe

    tried = []
    monkeypatch.setattr(scale_probe, "coverage", lambda b, im, m, px, limits=None: tried.append(px) or (0.3 if px >= 10 else 0.05))
    # 2000x2000: 35 tiles for the octaves; 14.1 nm would add 64, so only 7.07 nm (16) is tried next to the winner 10 nm
    est = scale_probe.estimate_pixel_size(SimpleNamespace(tile=512), np.zeros((2000, 2000), np.uint8), _manifest())
    assert est.pixel_size_nm == 10.0 and max(tried) == 10.0 and 10 / 2**0.5 in tried
    assert est.tiles == 35 + 16 <= MAX_TILES + scale_probe.REFINE_TILES


def test_scales_at_which_the_image_is_a_handful_of_pixels_are_not_tried(monkeypatch):
    from mitotally.runtime import scale_probe

    tried = []
    monkeypatch.setattr(scale_probe, "coverage", lambda b, im, m, px, limits=None: tried.append(px) or (0.9 if px < 3 else 0.04))
    # a 1024x768 slice: at 2.5 nm it is 256x192 model px (< a quarter of a 512 tile), so only 10 and 5 nm are tried
    est = scale_probe.estimate_pixel_size(SimpleNamespace(tile=512), np.zeros((768, 1024), np.uint8), _manifest())
    assert sorted(tried) == [5.0, 10.0] and est.pixel_size_nm == 5.0 and not est.moved
