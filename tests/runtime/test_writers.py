"""Each writer on its own: files that tifffile, roifile, pycocotools and Pillow read back as written."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import tifffile
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from roifile import roiread
from skimage.draw import ellipse, polygon

from mitotally.runtime.image_io import read_image
from mitotally.runtime.results import ImageResult, failed
from mitotally.runtime.writers import atomic_open
from mitotally.runtime.writers.atomic import remove_stale_temps, temp_path
from mitotally.runtime.writers.coco import annotations, crop_rle
from mitotally.runtime.writers.labels import write_labels
from mitotally.runtime.writers.overlay import render_overlay
from mitotally.runtime.writers.rois import instance_rois, pixel_edge_loops, signed_area, write_rois
from mitotally.trainer.importers.imagej_rois import roi_region
from mitotally.runtime.writers.tables import IMAGE_COLUMNS, read_record, rebuild_tables, write_record


def test_crop_rle_matches_pycocotools(rng):
    for trial in range(400):
        H, W = rng.integers(1, 25, 2)
        h, w = rng.integers(1, H + 1), rng.integers(1, W + 1)
        r0, c0 = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
        m = rng.random((h, w)) < rng.random()
        if trial % 5 == 0:
            m[:] = True  # full columns: runs continue across columns and to the last pixel
        full = np.zeros((H, W), np.uint8)
        full[r0 : r0 + h, c0 : c0 + w] = m
        assert crop_rle((r0, c0), m, (H, W))["counts"] == mask_utils.encode(np.asfortranarray(full))["counts"].decode()
    with pytest.raises(ValueError, match="does not fit"):
        crop_rle((5, 0), np.ones((3, 3), bool), (6, 6))


def test_labels_tiff_at_scale(tmp_path):
    labels = np.zeros((40, 50), np.uint16)
    labels[5:10, 5:20], labels[20:30, 30:45] = 1, 2
    path = write_labels(tmp_path / "l.tif", [labels], labels.shape, 1, 2, 4.2)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
        assert np.array_equal(tif.asarray(), labels) and tif.pages[0].dtype == np.uint16
    assert read_image(path).pixel_size_nm == pytest.approx(4.2, rel=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["l.tif"]  # no temp file left


def test_labels_stack_and_uint32(tmp_path):
    planes = [np.full((8, 9), i, np.uint16) for i in range(3)]
    path = write_labels(tmp_path / "s.tif", iter(planes), (8, 9), 3, 2, None)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].shape == (3, 8, 9) and np.array_equal(tif.asarray(), np.stack(planes))
        assert "unit" not in (tif.imagej_metadata or {})  # unknown pixel size: no unit claimed
    big = np.array([[70000, 0], [1, 2]], np.uint32)
    path = write_labels(tmp_path / "big.tif", [big], big.shape, 1, 70000, 5.0)
    assert tifffile.imread(path).dtype == np.uint32 and np.array_equal(tifffile.imread(path), big)
    assert read_image(path).pixel_size_nm == pytest.approx(5.0, rel=1e-6)


def _ellipse_masks(shape=(120, 160)):
    out = []
    for r, c, a, b, rot in [(30, 40, 12, 25, 0.3), (80, 110, 20, 9, 1.2), (60, 20, 5, 5, 0.0), (100, 60, 3, 14, 2.0)]:
        full = np.zeros(shape, bool)
        full[ellipse(r, c, a, b, shape=shape, rotation=rot)] = True
        rows, cols = np.flatnonzero(full.any(1)), np.flatnonzero(full.any(0))
        out.append(((rows[0], cols[0]), full[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], full))
    return out


def roi_pixels(roi, shape: tuple[int, int]) -> np.ndarray:
    """The pixels a ROI holds as Fiji fills it (centre inside, even-odd), read by mito-train's ImageJ importer."""
    region, _ = roi_region(roi, shape)
    out = np.zeros(shape, bool)
    if region is not None:
        (r, c), m = region.offset, region.mask
        out[r : r + m.shape[0], c : c + m.shape[1]] = m
    return out


def test_rois_reproduce_masks(tmp_path):
    items = _ellipse_masks()
    offsets = np.array([o for o, _, _ in items])
    rois = instance_rois(offsets, [m for _, m, _ in items], [1, 2, 3, 4])
    path = write_rois(tmp_path / "r.zip", rois)
    back = roiread(path)
    assert [r.name for r in back] == ["0001", "0002", "0003", "0004"]
    for roi, (_, _, full) in zip(back, items):
        xy = roi.coordinates()  # ImageJ: pixel (col, row) covers [col, col+1); its centre is col + 0.5
        inside = np.zeros(full.shape, bool)
        inside[polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, full.shape)] = True
        assert np.array_equal(inside, full)  # the polygon holds exactly the mask's pixel centres
        assert signed_area(xy) == full.sum()  # and its shoelace area is the pixel count
        assert np.array_equal(roi_pixels(roi, full.shape), full)


def test_roi_of_a_mask_with_a_hole_or_a_corner_contact(tmp_path):
    ring = np.ones((9, 12), bool)
    ring[3:6, 4:9] = False
    corner = np.zeros((6, 6), bool)
    corner[:3, :3] = corner[3:, 3:] = True  # one object whose pixels meet at a corner
    back = roiread(write_rois(tmp_path / "h.zip", instance_rois(np.array([[5, 7], [20, 2]]), [ring, corner], [1, 2])))
    assert back[0].composite and not back[1].composite  # a hole needs a composite ROI (outline minus hole)
    for roi, (r, c), m in zip(back, [(5, 7), (20, 2)], [ring, corner]):
        full = np.zeros((40, 40), bool)
        full[r : r + m.shape[0], c : c + m.shape[1]] = m
        assert sum(signed_area(xy) for xy in roi.coordinates(multi=True)) == m.sum()
        assert np.array_equal(roi_pixels(roi, full.shape), full)


def test_pixel_edge_loops_sum_to_the_pixel_count(rng):
    for _ in range(200):
        m = rng.random(tuple(rng.integers(1, 14, 2))) < rng.uniform(0.2, 0.9)
        assert sum(signed_area(loop) for loop in pixel_edge_loops(m)) == m.sum()
    assert pixel_edge_loops(np.zeros((3, 3), bool)) == []


def test_rois_of_a_stack_carry_their_plane(tmp_path):
    (o, m, _), = _ellipse_masks()[:1]
    rois = instance_rois(np.array([o]), [m], [7], plane=2)
    back = roiread(write_rois(tmp_path / "s.zip", rois))
    assert back[0].name == "z0003-0007" and back[0].position == 3
    assert zipfile.ZipFile(write_rois(tmp_path / "e.zip", [])).namelist() == []  # no ROIs: still a valid zip


def test_overlay_png(rng):
    labels = np.zeros((3000, 2000), np.uint16)
    labels[100:400, 200:600] = 1
    labels[2000:2600, 1000:1500] = 2
    image = rng.integers(0, 65535, labels.shape).astype(np.uint16)
    png = Image.open(io.BytesIO(render_overlay(image, labels, max_side=600)))
    assert png.size == (400, 600) and png.mode == "RGB"  # shrunk 5x: the smallest whole factor to fit 600
    arr = np.asarray(png)
    coloured = (arr.max(-1).astype(int) - arr.min(-1)) > 60  # outlines and numbers are coloured, the image is gray
    assert coloured[20:80, 40:120].any() and coloured[400:520, 200:300].any()
    assert not coloured[250:350, 20:150].any()  # far from both objects: gray only
    with pytest.raises(ValueError, match="differ"):
        render_overlay(image[:10], labels)


def _result(key, n_obj, shape=(10, 12)):
    m = np.ones((2, 3), bool)
    anns = annotations(np.array([[i, i] for i in range(n_obj)]), [m] * n_obj, range(1, n_obj + 1), [0.9] * n_obj, shape)
    return ImageResult(
        key, f"/data/{key}", planes=1,
        image_rows=[{"image": key, "plane": 1, "status": "ok", "error": "", "width": shape[1], "height": shape[0], "count": n_obj}],
        object_rows=[{"image": key, "plane": 1, "id": i + 1, "area_px": 6, "area_um2": None} for i in range(n_obj)],
        annotations=[{**a, "plane": 1} for a in anns],
    )


def test_tables_rebuilt_from_records(tmp_path):
    write_record(tmp_path, _result("b.tif", 2))
    write_record(tmp_path, _result("sub/a é.png", 3))
    write_record(tmp_path, failed("zz.jpg", "/data/zz.jpg", "cannot decode image: image file is truncated"))
    counts = rebuild_tables(tmp_path)
    assert (counts.images, counts.failed, counts.objects) == (3, 1, 5)
    images = (tmp_path / "images.csv").read_text(encoding="utf-8").splitlines()
    assert images[0].startswith("image,plane,status,error,width,height,pixel_size_nm,") and len(images) == 4
    assert images[0].split(",") == list(IMAGE_COLUMNS)
    assert images[3].startswith("zz.jpg,,failed,cannot decode image: image file is truncated")
    objects = (tmp_path / "objects.csv").read_text(encoding="utf-8").splitlines()
    assert objects[0].startswith("image,plane,id,area_px,area_um2,") and len(objects) == 6
    assert objects[1].startswith("b.tif,1,1,6,,")  # unknown pixel size: an empty cell, not 'nan'
    coco = COCO(str(tmp_path / "predictions.json"))
    assert sorted(i["file_name"] for i in coco.dataset["images"]) == ["b.tif", "sub/a é.png"]
    assert len(coco.getAnnIds()) == 5 and coco.annToMask(coco.anns[1]).sum() == 6
    assert read_record(tmp_path, "sub/a é.png").n_objects == 3
    (tmp_path / "records" / "b.tif.json").unlink()  # tables follow the records, whatever happened before
    assert rebuild_tables(tmp_path).objects == 3
    assert json.loads((tmp_path / "predictions.json").read_text())["images"][0]["file_name"] == "sub/a é.png"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_atomic_open_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half a ta")
            raise RuntimeError("disk gone")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_stale_temps_of_interrupted_writes_are_removed_and_nothing_else(tmp_path):
    """What kill -9 between creating a temp file and renaming it leaves: removed by age, results untouched."""
    import os
    import time

    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.tif").write_bytes(b"result")
    (tmp_path / ".hidden_user_file").write_text("keep")  # not our pattern
    (tmp_path / "notes.tmp").write_text("keep")  # not ours either: no leading dot, no random part
    with temp_path(labels / "b.tif") as tmp:
        real_name = tmp.name  # the name a crash would leave behind
        tmp.write_bytes(b"done")
    stale = labels / real_name
    stale.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    young = labels / ".c.tif.k3j2h1g0.tmp"
    young.write_bytes(b"being written")
    assert remove_stale_temps(tmp_path, older_than_s=3600) == [stale]
    assert young.exists()
    assert remove_stale_temps(tmp_path) == [young]  # a folder's exclusive holder removes them all
    assert sorted(p.name for p in labels.iterdir()) == ["a.tif", "b.tif"]
    assert (tmp_path / ".hidden_user_file").exists() and (tmp_path / "notes.tmp").exists()


def test_outputs_get_ordinary_permissions(tmp_path):
    """Temp files are created 0600; the renamed result must be readable as a plain write would make it."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    write_labels(tmp_path / "l.tif", [np.zeros((4, 4), np.uint16)], (4, 4), 1, 0, None)
    write_record(tmp_path, failed("x.tif", "/x.tif", "boom"))
    for path in [tmp_path / "l.tif", tmp_path / "records" / "x.tif.json"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask
