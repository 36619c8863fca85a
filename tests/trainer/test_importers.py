"""Each importer on small datasets the tests write, on the real data when present, and each validation problem."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from pycocotools import mask as mask_utils
from roifile import ROI_TYPE, ImagejRoi, roiwrite

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ellipse_labels, render_em_like  # noqa: E402
from mitotally.trainer.importers import DatasetError, detect_format, load_dataset, read_dataset  # noqa: E402
from mitotally.trainer.importers import types as T  # noqa: E402


def same_instances(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a renumbering of ids."""
    if a.shape != b.shape or ((a > 0) != (b > 0)).any():
        return False
    pairs = np.unique(np.stack([a[a > 0], b[a > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def kinds(problems) -> list[str]:
    return [p.kind for p in problems]


def square(r0, c0, r1, c1, shape=(48, 64), value=1):
    lab = np.zeros(shape, np.int32)
    lab[r0:r1, c0:c1] = value
    return lab


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# ---------------------------------------------------------------- rasterising and overlaps


def test_polygon_fill_matches_skimage_for_float_vertices(rng):
    from skimage.draw import polygon as draw_polygon

    from mitotally.trainer.importers.rasterize import polygon_region

    for _ in range(50):
        n = int(rng.integers(3, 30))
        xy = np.c_[rng.uniform(-8, 60, n), rng.uniform(-8, 50, n)]
        ref = np.zeros((40, 50), bool)
        ref[draw_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, ref.shape)] = True
        got = np.zeros_like(ref)
        reg = polygon_region(xy, ref.shape)
        if reg is not None:
            got[reg.offset[0] : reg.offset[0] + reg.mask.shape[0], reg.offset[1] : reg.offset[1] + reg.mask.shape[1]] = reg.mask
        assert np.array_equal(got, ref)


def test_integer_polygon_covers_its_area_and_holes_cut_out():
    from mitotally.trainer.importers.rasterize import paths_region, polygon_region

    diamond = np.array([[5, 0], [10, 5], [5, 10], [0, 5]], float)
    assert polygon_region(diamond, (11, 11)).area == 50
    outer = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    inner = np.array([[3, 3], [6, 3], [6, 6], [3, 6]], float)
    assert paths_region([outer, inner], (12, 12)).area == 100 - 9


def test_overlaps_smaller_keeps_pixels_and_lost_instances_are_named():
    from mitotally.trainer.importers.rasterize import paint_regions, region_from_mask

    big, small = square(0, 0, 10, 10, (12, 12)) > 0, square(2, 2, 5, 5, (12, 12)) > 0
    p = paint_regions([region_from_mask(big), region_from_mask(small), region_from_mask(small)], (12, 12))
    assert (p.labels[2:5, 2:5] == 2).all() and p.labels[0, 0] == 1
    assert p.overlap_px == 9 and p.overlapping == 3 and p.covered == [2]


# ---------------------------------------------------------------- COCO


def coco_doc(images, anns, categories=({"id": 1, "name": "mitochondrion"},)):
    return {"images": images, "annotations": anns, "categories": list(categories)}


def rle_of(mask: np.ndarray, compressed: bool) -> dict:
    if compressed:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": rle["size"], "counts": rle["counts"].decode()}
    flat = mask.ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return {"size": list(mask.shape), "counts": runs}


def test_coco_polygons_follow_pixel_edges(tmp_path):
    write_png(tmp_path / "images" / "a.png", np.full((48, 64), 120, np.uint8))
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "segmentation": [[10, 5, 20, 5, 20, 15, 10, 15]], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "segmentation": [[30, 20, 40, 20, 40, 40, 30, 40]], "iscrowd": 0}]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances.json").write_text(json.dumps(coco_doc([{"id": 7, "file_name": "a.png", "width": 64, "height": 48}], anns)))
    assert detect_format(tmp_path) == "coco"
    ds = read_dataset(tmp_path)
    assert not ds.skipped and not ds.problems
    expected = square(5, 10, 15, 20) + square(20, 30, 40, 40, value=2)
    assert np.array_equal(ds.items[0].labels, expected)


@pytest.mark.parametrize("compressed", [True, False])
def test_coco_rle_round_trip(tmp_path, rng, compressed):
    labels = ellipse_labels((60, 80), 5, rng)
    write_png(tmp_path / "b.png", render_em_like(labels, rng))
    anns = [{"id": k, "image_id": 1, "category_id": 1, "segmentation": rle_of(labels == k, compressed), "iscrowd": 0} for k in range(1, labels.max() + 1)]
    (tmp_path / "b.json").write_text(json.dumps(coco_doc([{"id": 1, "file_name": "b.png", "width": 80, "height": 60}], anns)))
    items = load_dataset(tmp_path / "b.json")  # a COCO file can be named directly
    assert items[0].n_instances == labels.max() == 5
    assert same_instances(items[0].labels, labels)


def test_coco_problems_are_reported_not_dropped(tmp_path):
    for name in ("ok.png", "wrongsize.png", "empty.png"):
        write_png(tmp_path / name, np.zeros((40, 50), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"")
    images = [{"id": 1, "file_name": "ok.png", "width": 50, "height": 40}, {"id": 2, "file_name": "wrongsize.png", "width": 99, "height": 40},
              {"id": 3, "file_name": "empty.png", "width": 50, "height": 40}, {"id": 4, "file_name": "broken.png"},
              {"id": 5, "file_name": "../outside.png"}, {"id": 6, "file_name": "C:\\lab\\pc\\ok.png"}]
    big, small = square(0, 0, 20, 20, (40, 50)) > 0, square(10, 10, 15, 15, (40, 50)) > 0
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle_of(big, True)},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": rle_of(small, False)},
            {"id": 3, "image_id": 1, "category_id": 1, "segmentation": [[40, 30, 60, 30, 60, 45, 40, 45]]},  # leaves the image
            {"id": 4, "image_id": 1, "category_id": 1, "segmentation": rle_of(big, True), "iscrowd": 1},
            {"id": 5, "image_id": 1, "category_id": 2, "segmentation": rle_of(big, True)},
            {"id": 6, "image_id": 99, "category_id": 1, "segmentation": rle_of(big, True)},
            {"id": 7, "image_id": 1, "category_id": 1, "segmentation": [[1, 2, 3]]}]
    cats = [{"id": 1, "name": "mitochondria"}, {"id": 2, "name": "nucleus"}]
    (tmp_path / "gt.json").write_text(json.dumps(coco_doc(images, anns, cats)))
    ds = read_dataset(tmp_path)
    by_file = {p.file: p for p in ds.skipped}
    assert by_file["gt.json: wrongsize.png"].kind == T.SIZE_MISMATCH and "99x40" in by_file["gt.json: wrongsize.png"].detail
    assert by_file["broken.png"].kind == T.UNREADABLE and "empty file" in by_file["broken.png"].detail
    assert by_file["gt.json: ../outside.png"].kind == T.UNREADABLE
    names = [it.name for it in ds.items]
    assert names == ["ok", "empty"]  # the Windows path's base name resolves to ok.png too, and is a duplicate
    assert any(p.kind == T.DUPLICATE for p in ds.skipped)
    ok = ds.items[0]
    assert ok.n_instances == 3
    assert (ok.labels[10:15, 10:15] == 2).all(), "the smaller instance keeps the overlapping pixels"
    assert ok.labels[0, 0] == 1 and ok.labels[35, 45] == 3
    assert sorted(set(kinds(ok.problems))) == sorted({T.OVERLAP, T.CLIPPED, T.BAD_SHAPE})
    assert T.NO_LABELS in kinds(ds.items[1].problems)
    notes = " | ".join(map(str, ds.notes))
    assert "crowd" in notes and "nucleus" in notes and "image id not in" in notes
    with pytest.raises(DatasetError, match="wrongsize.png"):
        load_dataset(tmp_path)
    assert [it.name for it in load_dataset(tmp_path, allow_skipped=True)] == ["ok", "empty"]


def test_coco_rle_of_another_size_skips_the_image(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((30, 30), np.uint8))
    seg = rle_of(np.ones((31, 30), bool), True)
    (tmp_path / "a.json").write_text(json.dumps(coco_doc([{"id": 1, "file_name": "a.png"}], [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": seg}])))
    ds = read_dataset(tmp_path)
    assert not ds.items and ds.skipped[0].kind == T.SIZE_MISMATCH and "annotation 1" in ds.skipped[0].file


# ---------------------------------------------------------------- per-instance mask folders (seed-cardiac layout)


def test_mask_folders_clean_jpeg_noise(tmp_path, rng):
    labels = ellipse_labels((96, 128), 6, rng, axes=(8, 16))
    (tmp_path / "Images").mkdir()
    Image.fromarray(render_em_like(labels, rng)).convert("RGB").save(tmp_path / "Images" / "f1.jpg", quality=90)
    mdir = tmp_path / "Masks" / "f1"
    mdir.mkdir(parents=True)
    for k in range(1, labels.max() + 1):
        m = (labels == k).astype(np.uint8) * 255
        ys, xs = np.nonzero(m)
        m[ys[len(ys) // 2], xs[len(xs) // 2]] = 0  # a one-pixel hole
        far = (0, 0) if ys.mean() > 48 else (90, 120)
        m[far[0] : far[0] + 3, far[1] : far[1] + 3] = 255  # a speck away from the object
        Image.fromarray(m).convert("RGB").save(mdir / f"f1_Mask_{k - 1}.jpg", quality=70)
    assert detect_format(tmp_path) == "masks"
    ds = read_dataset(tmp_path)
    item = ds.items[0]
    assert item.n_instances == labels.max()
    from scipy import ndimage

    for k in range(1, labels.max() + 1):
        truth = labels == k
        ids, votes = np.unique(item.labels[truth], return_counts=True)
        got = item.labels == ids[np.argmax(votes)]
        iou = (truth & got).sum() / (truth | got).sum()
        assert iou > 0.85, f"instance {k}: IoU {iou:.2f}"
        assert ndimage.label(got)[1] == 1, "the speck must be gone"
        assert not (ndimage.binary_fill_holes(got) & ~got).any(), "the hole must be filled"
    assert not any(p.kind == T.EXTRA_PARTS for p in ds.problems)


def test_mask_folders_problems(tmp_path):
    for stem in ("a", "b", "c"):
        write_png(tmp_path / "Images" / f"{stem}.png", np.zeros((40, 40), np.uint8))
    write_png(tmp_path / "Masks" / "a" / "a_Mask_0.png", (square(0, 0, 10, 10, (40, 40)) * 255).astype(np.uint8))
    two = square(0, 0, 10, 10, (40, 40)) + square(20, 20, 35, 35, (40, 40))
    write_png(tmp_path / "Masks" / "a" / "a_Mask_1.png", (two * 255).astype(np.uint8))
    write_png(tmp_path / "Masks" / "a" / "a_Mask_2.png", np.zeros((40, 40), np.uint8))
    write_png(tmp_path / "Masks" / "b" / "b_Mask_0.png", np.zeros((41, 40), np.uint8))
    write_png(tmp_path / "Masks" / "zz" / "zz_Mask_0.png", np.zeros((40, 40), np.uint8))
    ds = read_dataset(tmp_path, "masks")
    assert [p.kind for p in ds.skipped] == [T.SIZE_MISMATCH] and "b_Mask_0.png" in ds.skipped[0].file
    a, c = ds.items
    assert a.n_instances == 2
    assert sorted(set(kinds(a.problems))) == sorted({T.EXTRA_PARTS, T.EMPTY_MASK})
    assert (a.labels[20:35, 20:35] > 0).all() and (a.labels[0:10, 0:10] > 0).all()
    assert kinds(c.problems) == [T.NO_LABELS]
    assert kinds(ds.notes) == [T.ORPHAN] and "zz" in ds.notes[0].file


# ---------------------------------------------------------------- label images


@pytest.mark.parametrize("dtype,suffix", [(np.uint8, ".png"), (np.uint16, ".png"), (np.uint8, ".tif"), (np.uint16, ".tif"), (np.uint32, ".tif")])
def test_label_images_beside_the_images(tmp_path, rng, dtype, suffix):
    labels = ellipse_labels((50, 70), 4, rng).astype(dtype)
    if dtype == np.uint32:
        labels[labels > 0] += 70000  # ids beyond 16 bit
    elif dtype == np.uint16:
        labels[labels > 0] += 300
    tifffile.imwrite(tmp_path / "x.tif", render_em_like(labels > 0, rng), imagej=True, resolution=(1 / 0.0042, 1 / 0.0042), metadata={"unit": "um"})
    lab_name = f"x_labels{suffix}" if suffix == ".tif" else f"x_masks{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(tmp_path / lab_name, labels)
    else:
        Image.fromarray(labels).save(tmp_path / lab_name)
    assert detect_format(tmp_path) == "labels"
    ds = read_dataset(tmp_path)
    assert [it.name for it in ds.items] == ["x"] and not ds.problems
    assert np.array_equal(ds.items[0].labels, labels.astype(np.int64))
    assert ds.items[0].pixel_size_nm == pytest.approx(4.2, rel=1e-3)


def test_label_images_in_a_sibling_folder(tmp_path, rng):
    for i, folder in enumerate(("labels", "masks")):
        root = tmp_path / folder
        labels = ellipse_labels((40, 40), 3, rng)
        write_png(root / "images" / f"s{i}.png", render_em_like(labels, rng))
        write_png(root / folder / f"s{i}.png", labels.astype(np.uint8))
        assert detect_format(root) == "labels"
        assert np.array_equal(read_dataset(root).items[0].labels, labels)


def test_label_image_problems(tmp_path):
    img = tmp_path / "images"
    for stem in ("ok", "binary", "size", "rgb", "jpeg", "nolabel", "zero"):
        write_png(img / f"{stem}.png", np.zeros((30, 30), np.uint8))
    lab = tmp_path / "labels"
    write_png(lab / "ok.png", square(0, 0, 5, 5, (30, 30)).astype(np.uint8))
    write_png(lab / "binary.png", ((square(0, 0, 5, 5, (30, 30)) + square(10, 10, 20, 20, (30, 30))) * 255).astype(np.uint8))
    write_png(lab / "size.png", np.zeros((31, 30), np.uint8))
    rgb = np.zeros((30, 30, 3), np.uint8)
    rgb[0:5, 0:5] = (255, 0, 0)
    rgb[10:15, 10:15] = (0, 255, 0)
    write_png(lab / "rgb.png", rgb)
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(lab / "jpeg.jpg")
    write_png(lab / "zero.png", np.zeros((30, 30), np.uint8))
    write_png(lab / "orphan.png", np.zeros((30, 30), np.uint8))
    ds = read_dataset(tmp_path)
    skipped = {p.file: p.kind for p in ds.skipped}
    assert skipped == {"labels/size.png": T.SIZE_MISMATCH, "labels/rgb.png": T.BAD_LABELS, "labels/jpeg.jpg": T.BAD_LABELS}
    items = {it.name: it for it in ds.items}
    assert set(items) == {"ok", "binary", "nolabel", "zero"}
    assert items["binary"].n_instances == 2 and kinds(items["binary"].problems) == [T.BINARY_SPLIT]
    assert kinds(items["nolabel"].problems) == [T.NO_LABELS]
    assert kinds(items["zero"].problems) == [T.NO_INSTANCES]
    assert kinds(ds.notes) == [T.ORPHAN]


# ---------------------------------------------------------------- ImageJ ROIs


def test_label_only_folder_is_recognised_by_its_pixels(tmp_path, rng):
    from mitotally.trainer.importers.label_images import is_label_only, label_image_problem, read_label_only

    labels = ellipse_labels((48, 64), 4, rng)
    assert label_image_problem(labels) is None and label_image_problem(np.zeros((8, 8), np.uint8)) is None
    assert "not 0" in label_image_problem(np.full((8, 8), 3, np.uint16))
    noisy = rng.integers(1, 255, (48, 64))
    noisy[rng.random((48, 64)) < 0.5] = 0  # 0 the commonest value, but no regions: not labels
    assert "neighbouring" in label_image_problem(noisy)
    assert "whole numbers" in label_image_problem(labels + 0.5)
    only = tmp_path / "only" / "masks"  # the files may also sit in a labels/ or masks/ sub-folder
    only.mkdir(parents=True)
    tifffile.imwrite(only / "x_labels.tif", labels.astype(np.uint16))
    write_png(only / "y.png", ((square(2, 2, 10, 10) + square(20, 30, 30, 40)) * 255).astype(np.uint8))  # binary: split, said so
    assert is_label_only(tmp_path / "only")
    ds = read_label_only(tmp_path / "only")
    assert [it.name for it in ds.items] == ["x", "y"] and ds.format == "labels-only" and not ds.skipped
    assert same_instances(ds.items[0].labels, labels) and ds.items[1].n_instances == 2
    assert T.BINARY_SPLIT in kinds(ds.items[1].problems)
    with pytest.raises(DatasetError):  # mito-train has nothing to train on here: no format of its own
        detect_format(tmp_path / "only")
    paired = tmp_path / "paired"  # image + labels beside it is the ordinary layout, not label-only
    write_png(paired / "z.png", render_em_like(labels, rng))
    tifffile.imwrite(paired / "z_labels.tif", labels.astype(np.uint16))
    assert not is_label_only(paired)


def test_imagej_roi_zip_polygon_oval_rectangle(tmp_path):
    write_png(tmp_path / "cell.png", np.zeros((40, 60), np.uint8))
    rois = [ImagejRoi(roitype=ROI_TYPE.RECT, left=5, top=6, right=15, bottom=12, name="rect"),
            ImagejRoi(roitype=ROI_TYPE.OVAL, left=20, top=4, right=36, bottom=14, name="oval"),
            ImagejRoi.frompoints(np.array([[2, 20], [12, 20], [12, 30], [2, 30]]), name="poly"),
            ImagejRoi.frompoints(np.array([[50.0, 30.0], [70.0, 30.0], [70.0, 45.0], [50.0, 45.0]]), name="outside"),
            ImagejRoi(roitype=ROI_TYPE.LINE, x1=1, y1=1, x2=10, y2=10, name="line")]
    (tmp_path / "rois").mkdir()
    roiwrite(tmp_path / "rois" / "cell.zip", rois)
    assert detect_format(tmp_path) == "imagej"
    ds = read_dataset(tmp_path)
    item = ds.items[0]
    lab = item.labels
    assert np.array_equal(lab == 1, square(6, 5, 12, 15, (40, 60)) > 0), "rectangle: pixels left..right-1, top..bottom-1"
    yy, xx = np.mgrid[:40, :60]
    oval = ((yy + 0.5 - 9) / 5) ** 2 + ((xx + 0.5 - 28) / 8) ** 2 <= 1
    assert np.array_equal(lab == 2, oval), "oval: pixel centres inside the inscribed ellipse"
    assert np.array_equal(lab == 3, square(20, 2, 30, 12, (40, 60)) > 0)
    assert np.array_equal(lab == 4, square(30, 50, 40, 60, (40, 60)) > 0), "clipped to the image"
    assert sorted(kinds(item.problems)) == sorted([T.CLIPPED, T.IGNORED])
    assert "line ROI" in str([p for p in item.problems if p.kind == T.IGNORED][0])


def test_imagej_single_roi_file_and_unreadable_zip(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((20, 20), np.uint8))
    write_png(tmp_path / "b.png", np.zeros((20, 20), np.uint8))
    ImagejRoi.frompoints(np.array([[0, 0], [4, 0], [4, 4], [0, 4]])).tofile(tmp_path / "a.roi")
    (tmp_path / "b.zip").write_bytes(b"not a zip")
    ds = read_dataset(tmp_path, "imagej")
    assert ds.items[0].n_instances == 1 and (ds.items[0].labels[:4, :4] == 1).all()
    assert ds.skipped[0].kind == T.UNREADABLE and ds.skipped[0].file == "b.zip"


# ---------------------------------------------------------------- YOLO


def test_yolo_polygons_and_problems(tmp_path):
    for stem in ("a", "b"):
        write_png(tmp_path / "images" / f"{stem}.png", np.zeros((40, 80), np.uint8))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.125 0.25 0.25 0.25 0.25 0.5 0.125 0.5\n0 0.5 0.5 0.1 0.1\n0 0.9 0.9 1.2 0.9 1.2 1.2 0.9 1.2\n")
    (tmp_path / "labels" / "orphan.txt").write_text("")
    assert detect_format(tmp_path) == "yolo"
    ds = read_dataset(tmp_path)
    a, b = ds.items
    assert np.array_equal(a.labels == 1, square(10, 10, 20, 20, (40, 80)) > 0)
    assert np.array_equal(a.labels == 2, square(36, 72, 40, 80, (40, 80)) > 0)
    assert sorted(kinds(a.problems)) == sorted([T.BAD_SHAPE, T.CLIPPED]) and "a.txt:2" in str(a.problems)
    assert kinds(b.problems) == [T.NO_LABELS]
    assert kinds(ds.notes) == [T.ORPHAN]


# ---------------------------------------------------------------- detection and whole-dataset errors


def test_detection_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such"):
        read_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no known label layout"):
        read_dataset(tmp_path / "empty")
    both = tmp_path / "both"
    write_png(both / "images" / "a.png", np.zeros((20, 20), np.uint8))
    (both / "labels").mkdir()
    (both / "labels" / "a.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    write_png(both / "labels" / "a.png", np.zeros((20, 20), np.uint8))
    with pytest.raises(DatasetError, match="several label formats"):
        read_dataset(both)
    assert read_dataset(both, "yolo").items[0].n_instances == 1
    with pytest.raises(DatasetError, match="unknown format"):
        read_dataset(both, "voc")


def test_empty_and_corrupt_files(tmp_path):
    coco = tmp_path / "coco"
    write_png(coco / "a.png", np.zeros((10, 10), np.uint8))
    (coco / "instances.json").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"instances.json: empty file"):
        read_dataset(coco)
    (coco / "instances.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"instances.json: cannot parse JSON"):
        read_dataset(coco / "instances.json")
    yolo = tmp_path / "yolo"
    write_png(yolo / "images" / "a.png", np.zeros((10, 10), np.uint8))
    (yolo / "images" / "b.png").write_bytes(b"")
    (yolo / "labels").mkdir()
    (yolo / "labels" / "a.txt").write_text("")
    ds = read_dataset(yolo)
    assert kinds(ds.items[0].problems) == [T.NO_INSTANCES]  # an empty label file: an image without mitochondria
    assert [(p.file, p.kind) for p in ds.skipped] == [("images/b.png", T.UNREADABLE)]
    labels = tmp_path / "labels"
    write_png(labels / "a.png", np.zeros((10, 10), np.uint8))
    (labels / "a_labels.tif").write_bytes(b"")
    ds = read_dataset(labels)
    assert [(p.file, p.kind, p.detail) for p in ds.skipped] == [("a_labels.tif", T.UNREADABLE, "empty file (0 bytes)")]
    masks = tmp_path / "masks"
    write_png(masks / "Images" / "a.png", np.zeros((10, 10), np.uint8))
    (masks / "Masks" / "a").mkdir(parents=True)
    (masks / "Masks" / "a" / "a_Mask_0.png").write_bytes(b"\x89PNG truncated")
    ds = read_dataset(masks)
    assert ds.skipped[0].file == "Masks/a/a_Mask_0.png" and ds.skipped[0].kind == T.UNREADABLE


# ---------------------------------------------------------------- the real data


def test_lucchi_yolo(shared_data):
    ds = read_dataset(shared_data / "lucchi" / "train")
    assert ds.format == "yolo" and len(ds.items) == 165 and not ds.problems
    assert sum(it.n_instances for it in ds.items) == 2616
    assert all(it.labels.shape == (768, 1024) for it in ds.items)


def test_seed_cardiac_masks(shared_data):
    root = shared_data / "seed-cardiac"
    ds = read_dataset(root)
    assert ds.format == "masks" and not ds.skipped
    files = [len(list((root / "Masks" / it.name).glob("*.jpg"))) for it in ds.items]
    # the data README says 21/37/17; the folders hold 21/36/16 mask files and every one becomes an instance
    assert [it.n_instances for it in ds.items] == files == [21, 36, 16]
    assert {p.kind for p in ds.problems} <= {T.OVERLAP}
