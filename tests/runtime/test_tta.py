"""Test-time augmentation: flips map back exactly, views fuse into one detection per object, the option reaches run.json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.measure import label, regionprops
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ellipse_labels, render_em_like  # noqa: E402

from mitotally.runtime.backends.tta import FLIPS, FlipTTA, flip_tiles, fuse_views, resample_mask, unflip  # noqa: E402
from mitotally.runtime.instances import Detections  # noqa: E402
from mitotally.runtime.segment import segment_scaled  # noqa: E402

M = 28


def _det(boxes, scores, probs=None) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    probs = np.ones((len(boxes), M, M), np.float32) if probs is None else np.asarray(probs, np.float32)
    return Detections(boxes, np.asarray(scores, np.float32), probs)


class DarkBlobs:
    """A stand-in detector that is exactly flip-equivariant: one detection per dark connected blob, box and
    mask probabilities from its pixels (isolates FlipTTA's bookkeeping from a network)."""

    name, batch, precision = "blobs", 1, "fp32"

    def __init__(self, tile: int):
        self.tile = tile

    def infer(self, tiles: np.ndarray, box_filters=None) -> list[Detections]:
        out = []
        for t in tiles:
            boxes, probs = [], []
            for r in regionprops(label(t < -0.5)):
                r0, c0, r1, c1 = r.bbox
                boxes.append([c0, r0, c1, r1])
                probs.append(resize(r.image.astype(np.float32), (M, M), order=1, anti_aliasing=False))
            n = len(boxes)
            out.append(_det(np.array(boxes).reshape(-1, 4), np.linspace(0.9, 0.8, n), np.array(probs).reshape(n, M, M)))
        return out


def test_flip_then_unflip_is_the_identity_and_boxes_land_where_the_object_is():
    tile = 100
    probs = np.zeros((1, M, M), np.float32)
    probs[0, :, : M // 2] = 1  # left half of the box
    det = _det([[10, 20, 40, 60]], [0.9], probs)
    h = unflip(det, "h", tile)
    assert h.boxes[0].tolist() == [60, 20, 90, 60]
    assert h.mask_probs[0, :, M // 2 :].all() and not h.mask_probs[0, :, : M // 2].any()  # now the right half
    v = unflip(det, "v", tile)
    assert v.boxes[0].tolist() == [10, 40, 40, 80]
    for view in FLIPS:
        back = unflip(unflip(det, view, tile), view, tile)
        np.testing.assert_array_equal(back.boxes, det.boxes)
        np.testing.assert_array_equal(back.mask_probs, det.mask_probs)
    tiles = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    np.testing.assert_array_equal(flip_tiles(tiles, "hv"), tiles[:, ::-1, ::-1])


def test_resample_mask_is_exact_on_the_same_box_and_zero_outside_the_source():
    rng = np.random.default_rng(0)
    probs = rng.random((M, M)).astype(np.float32)
    box = np.array([5.0, 7.0, 33.0, 40.0])
    np.testing.assert_allclose(resample_mask(probs, box, box), probs, atol=1e-6)
    right = resample_mask(np.ones((M, M), np.float32), box, box + np.array([28.0, 0, 28.0, 0]))  # a box beside it
    assert right.max() == 0.0


def test_fuse_views_one_detection_per_object_scored_by_its_mean_over_views():
    views = [_det([[0, 0, 20, 20], [50, 50, 70, 70]], [0.9, 0.8]), _det([[1, 0, 21, 20]], [0.7]),
             _det([[0, 1, 20, 21]], [0.8]), _det([[0, 0, 20, 20]], [0.6])]
    fused = fuse_views(views)
    order = np.argsort(-fused.scores)
    assert len(fused) == 2
    np.testing.assert_allclose(fused.scores[order], [(0.9 + 0.7 + 0.8 + 0.6) / 4, 0.8 / 4], rtol=1e-6)
    np.testing.assert_allclose(fused.boxes[order[0]], np.average([[0, 0, 20, 20], [1, 0, 21, 20], [0, 1, 20, 21], [0, 0, 20, 20]],
                                                                   axis=0, weights=[0.9, 0.7, 0.8, 0.6]), rtol=1e-5)
    assert len(fuse_views([_det([], []), _det([], [])])) == 0


def test_tta_of_an_equivariant_detector_gives_its_own_instances(rng):
    """Flipped views of a flip-equivariant detector agree after mapping back: TTA must not move or duplicate anything."""
    labels = ellipse_labels((200, 300), 12, rng, axes=(6, 18))
    image = ((render_em_like(labels, rng, noise=0.0).astype(np.float32) - 170) / 50).astype(np.float32)
    plain = segment_scaled(DarkBlobs(128), image, image.shape, 1.0, 32, score_threshold=0.5, mask_threshold=0.5)
    tta = segment_scaled(FlipTTA(DarkBlobs(128)), image, image.shape, 1.0, 32, score_threshold=0.5, mask_threshold=0.5)
    assert len(plain) >= 8 and len(tta) == len(plain)
    painted_plain, painted_tta = plain.to_label_image(image.shape) > 0, tta.to_label_image(image.shape) > 0
    assert (painted_plain != painted_tta).sum() <= 0.01 * painted_plain.sum()  # bilinear resampling of the masks only


def test_unknown_view_is_refused():
    with pytest.raises(ValueError, match="views"):
        FlipTTA(DarkBlobs(64), views=("rot90",))


def test_mito_run_tta_runs_the_real_model_and_records_it(tiny_model_dir, tmp_path, rng):
    from mitotally.runtime.run_cli import main

    import tifffile

    images = tmp_path / "in"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", render_em_like(ellipse_labels((300, 300), 8, rng), rng))
    assert main([str(images), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir), "--backend", "torch",
                 "--tta", "--quiet", "--pixel-size", "10nm"]) == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["backend"]["tta"] is True and run["config"]["tta"] is True
    assert "4 flips" in run["backend"]["reason"]


def test_tta_uses_its_own_threshold_and_the_probe_keeps_the_plain_one(tiny_model_dir, tmp_path):
    """`tta_score_threshold` applies only with --tta; an explicit --score-threshold wins over both;
    each view reports down to half the threshold; the scale probe sees one view at the plain threshold."""
    import shutil

    from mitotally.runtime.segmenter import TTA_MEMBER_FRACTION, Segmenter

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    manifest = json.loads((model / "model.json").read_text())
    manifest.update(score_threshold=0.8, tta_score_threshold=0.6)
    (model / "model.json").write_text(json.dumps(manifest))
    plain = Segmenter(model, backend="torch", device="cpu")
    tta = Segmenter(model, backend="torch", device="cpu", tta=True)
    asked = Segmenter(model, backend="torch", device="cpu", tta=True, score_threshold=0.9)
    assert plain.manifest.score_threshold == 0.8 and not isinstance(plain.backend, FlipTTA)
    assert tta.manifest.score_threshold == 0.6 and isinstance(tta.backend, FlipTTA)
    assert tta.probe_manifest.score_threshold == 0.8 and tta.plain_backend is tta.backend.inner
    assert tta.plain_backend.model.roi_heads.score_thresh == pytest.approx(0.6 * TTA_MEMBER_FRACTION)
    assert asked.manifest.score_threshold == 0.9 and asked.probe_manifest.score_threshold == 0.9
