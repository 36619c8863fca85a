"""The mito-run pipeline: inputs and keys, read-ahead, preprocessing, label painting, and a full run
whose outputs are read back with tifffile, roifile and pycocotools."""
from __future__ import annotations

import csv
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from pycocotools.coco import COCO
from roifile import roiread

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mito_run_helpers import detecting_model, em_frame  # noqa: E402

from mitotally.runtime import reader
from mitotally.runtime.instances import Instances
from mitotally.runtime.manifest import weights_sha256
from mitotally.runtime.normalize import Normalization, normalize
from mitotally.runtime.pipeline import STAGES, RunConfig, process_file, run
from mitotally.runtime.prepare import prepare
from mitotally.runtime.reader import InputError, discover_inputs, read_ahead
from mitotally.runtime.scale import rescale_image
from mitotally.runtime.segmenter import Segmenter


@pytest.mark.parametrize("shape,factor,block", [((301, 257), 0.5, 64), ((300, 211), 0.37, 16), ((64, 80, 3), 0.5, 7),
                                                 ((200, 190), 0.1, 5), ((50, 60), 1.0, 4), ((40, 30), 2.0, 4)])
def test_prepare_is_the_trainers_preprocessing(rng, shape, factor, block):
    image = rng.integers(0, 65535, shape).astype(np.uint16)
    expected = rescale_image(normalize(image, Normalization()), factor)
    got = prepare(image, Normalization(), factor, block_rows=block)
    assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-5)


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_keys_are_paths_relative_to_the_input_root(tmp_path):
    for name in ["f/a.tif", "f/B.PNG", "f/a.png", "f/notes.txt", "f/.hidden.tif", "f/._a.tif", "f/sub/c.jpg",
                 "f/sub/deeper/d.tiff", "f/.git/x.tif", "g/a.tif"]:
        _touch(tmp_path / name)
    keys = lambda items: [i.key for i in items]  # noqa: E731
    assert keys(discover_inputs([tmp_path / "f"])) == ["B.PNG", "a.png", "a.tif"]
    assert keys(discover_inputs([tmp_path / "f"], recursive=True)) == ["B.PNG", "a.png", "a.tif", "sub/c.jpg", "sub/deeper/d.tiff"]
    # two folders: keys keep the folder names, so f/a.tif and g/a.tif cannot collide
    assert keys(discover_inputs([tmp_path / "f", tmp_path / "g"])) == ["f/B.PNG", "f/a.png", "f/a.tif", "g/a.tif"]
    # files named directly are kept whatever their suffix (they fail later with a clear cause); duplicates once
    assert keys(discover_inputs([tmp_path / "f/notes.txt", tmp_path / "f/a.tif", tmp_path / "f/a.tif"])) == ["notes.txt", "a.tif"]
    with pytest.raises(InputError, match="no such file"):
        discover_inputs([tmp_path / "missing"])


def test_discovery_follows_links_and_names_what_it_skips(tmp_path):
    _touch(tmp_path / "in/a.tif")
    _touch(tmp_path / "in/out/labels/a.tif")  # the output folder: never searched
    _touch(tmp_path / "elsewhere/secret.tif")
    _touch(tmp_path / "elsewhere/deeper/more.png")
    os.symlink(tmp_path / "elsewhere/secret.tif", tmp_path / "in/link.tif")  # a file linked in: an input
    os.symlink(tmp_path / "elsewhere", tmp_path / "in/linkdir")  # a folder linked in: searched with --recursive
    os.symlink(tmp_path / "in/a.tif", tmp_path / "in/alias.tif")  # a second path to a.tif
    os.symlink(tmp_path / "gone.tif", tmp_path / "in/broken.tif")
    os.symlink(tmp_path / "in/out/labels/a.tif", tmp_path / "in/result.tif")
    (tmp_path / "in/sub").mkdir()
    os.symlink(tmp_path / "in", tmp_path / "in/sub/loop")  # back up the tree
    found = reader.find_inputs([tmp_path / "in"], recursive=True, exclude=tmp_path / "in/out")
    assert [i.key for i in found.items] == ["a.tif", "link.tif", "linkdir/deeper/more.png"]
    assert found.items[1].path == tmp_path / "in/link.tif"  # found at the link: keys and names stay inside the input
    assert sorted(str(s) for s in found.skipped) == [
        "broken link broken.tif", "link into the output folder result.tif", "link loop sub/loop/",
        "second path to alias.tif (the same file as a.tif)", "second path to linkdir/secret.tif (the same file as link.tif)"]
    flat = reader.find_inputs([tmp_path / "in"], exclude=tmp_path / "in/out")
    assert [i.key for i in flat.items] == ["a.tif", "link.tif"]
    assert reader.describe_skipped(flat.skipped) == (
        "skipped 4 entries: second path to alias.tif (the same file as a.tif), broken link broken.tif, "
        "directory link linkdir/ (use --recursive), link into the output folder result.tif")
    os.symlink(tmp_path / "in/sub", tmp_path / "in/sub2")  # two links into one folder tree: searched once
    os.symlink(tmp_path / "elsewhere", tmp_path / "in/sub/again")
    again = reader.find_inputs([tmp_path / "in"], recursive=True, exclude=tmp_path / "in/out")
    assert "directory link sub/again/ (its folder is searched already)" in [str(s) for s in again.skipped]
    assert len(again.items) == 3


def test_read_ahead_keeps_order_and_bounds_memory(tmp_path, monkeypatch):
    items = []
    for i in range(7):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((8, 8), i * 10, np.uint8)).save(p)
        items.append(reader.InputItem(p, p.name))
    started, lock = [], threading.Lock()
    real = reader.decode

    def counting_decode(item):
        with lock:
            started.append(item.key)
        return real(item)

    monkeypatch.setattr(reader, "decode", counting_decode)
    got = []
    for k, decoded in enumerate(read_ahead(items, depth=2, workers=2)):
        time.sleep(0.02)  # let the workers run ahead as far as they may
        assert len(started) <= k + 1 + 2  # the one in hand plus at most `depth` waiting
        got.append(int(decoded.first.array[0, 0]))
        decoded.close()
    assert got == [i * 10 for i in range(7)]


@pytest.fixture(scope="module")
def segmenter(tiny_model_dir, tmp_path_factory):
    return Segmenter(detecting_model(tiny_model_dir, tmp_path_factory.mktemp("det")), backend="torch", device="cpu")


@pytest.fixture(scope="module")
def finished_run(segmenter, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    inp, out = root / "in", root / "out"
    (inp / "sub dir").mkdir(parents=True)
    tifffile.imwrite(inp / "a.tif", em_frame((150, 190), 1), imagej=True, resolution=(100.0, 100.0), metadata={"unit": "um"})
    Image.fromarray(em_frame((120, 100), 2)).save(inp / "sub dir" / "b.png")
    stack = np.stack([em_frame((90, 110), s) for s in (3, 4, 5)])
    tifffile.imwrite(inp / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    items = discover_inputs([inp], recursive=True)
    summary = run(items, segmenter, out, RunConfig(recursive=True))
    return inp, out, summary


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_full_run_outputs_read_back(finished_run, segmenter):
    inp, out, summary = finished_run
    assert [r.key for r in summary.results] == ["a.tif", "stack.tif", "sub dir/b.png"]
    assert all(r.ok for r in summary.results) and summary.n_objects > 0
    images, objects = _csv(out / "images.csv"), _csv(out / "objects.csv")
    for r in summary.results:  # every column a record holds is in the tables
        assert all(set(row) <= set(images[0]) for row in r.image_rows) and all(set(row) <= set(objects[0]) for row in r.object_rows)
    assert [(r["image"], r["plane"]) for r in images] == [("a.tif", "1"), ("stack.tif", "1"), ("stack.tif", "2"),
                                                          ("stack.tif", "3"), ("sub dir/b.png", "1")]
    assert images[0]["pixel_size_source"] == "imagej" and float(images[0]["pixel_size_nm"]) == pytest.approx(10.0)
    assert images[4]["pixel_size_source"] == "none" and images[4]["pixel_size_nm"] == "" and objects
    # where the scale came from: the file, or (no pixel size) the model's default or the estimate from the image
    assert images[0]["scaling_source"] == "imagej" and images[4]["scaling_source"] in ("default", "estimated")
    estimates = json.loads((out / "run.json").read_text())["scale_estimates"]
    # one estimate per size of the images without a pixel size; one check per size and calibration of the others
    assert {(e["width"], e["height"]) for e in estimates if e["given_pixel_size_nm"] is None} == {(110, 90), (100, 120)}
    assert {(e["width"], e["height"], e["given_pixel_size_nm"]) for e in estimates if e["given_pixel_size_nm"]} == {(190, 150, 10.0)}
    assert all(float(images[i]["scaling_pixel_size_nm"]) == next(e["pixel_size_nm"] for e in estimates if e["width"] == w)
               for i, w in ((1, 110), (4, 100)))
    coco = COCO(str(out / "predictions.json"))
    coco_images = {(i["file_name"], i["plane"]): i["id"] for i in coco.dataset["images"]}
    assert [r.name for r in summary.results] == ["a", "stack", "sub dir/b"]  # outputs by stem: labels/a.tif, not a.tif.tif
    for key, name, shape, planes in [("a.tif", "a", (150, 190), 1), ("stack.tif", "stack", (90, 110), 3),
                                     ("sub dir/b.png", "sub dir/b", (120, 100), 1)]:
        with tifffile.TiffFile(out / "labels" / f"{name}.tif") as tif:
            labels = tif.asarray().reshape(planes, *shape)
            assert tif.pages[0].dtype == np.uint16
            assert ("unit" in tif.imagej_metadata) == (key == "a.tif")  # pixel size only where known
        rois = roiread(out / "rois" / f"{name}.zip") if planes * shape[0] else []
        rois = rois if isinstance(rois, list) else [rois]
        for p in range(planes):
            rows = [r for r in objects if r["image"] == key and r["plane"] == str(p + 1)]
            ids = [int(r["id"]) for r in rows]
            assert ids == list(range(1, labels[p].max() + 1)) == sorted(set(np.unique(labels[p])) - {0})
            assert [int(r["area_px"]) for r in rows] == [int((labels[p] == i).sum()) for i in ids]
            count = int(next(r for r in images if r["image"] == key and r["plane"] == str(p + 1))["count"])
            assert count == len(ids)
            plane_rois = [r for r in rois if (r.position or 1) == p + 1]
            assert sorted(r.name[-4:] for r in plane_rois) == [f"{i:04d}" for i in ids]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[coco_images[(key, p + 1)]]))
            assert sorted(a["label"] for a in anns) == ids
            for a in anns:
                assert np.array_equal(coco.annToMask(a).astype(bool), labels[p] == a["label"]) and 0 < a["score"] <= 1
        overlays = [out / "overlays" / f"{name}.png"] if planes == 1 else [out / "overlays" / f"{name}.z{i:04d}.png" for i in (1, 2, 3)]
        for o in overlays:
            assert Image.open(o).size == (shape[1], shape[0])
    info = json.loads((out / "run.json").read_text())
    assert info["model"]["weights_sha256"] == weights_sha256(segmenter.model_dir)
    assert info["backend"]["name"] == "torch" and info["backend"]["device"] == "cpu"
    assert set(info["timings_s"]) == set(STAGES) and info["counts"]["mitochondria"] == len(objects)
    assert not [p for p in out.rglob(".*")]  # no temp files left anywhere


def test_rerun_skips_finished_and_overwrite_redoes(finished_run, segmenter):
    inp, out, _ = finished_run
    record = out / "records" / "a.tif.json"
    before = record.stat().st_mtime_ns
    objects_before = (out / "objects.csv").read_text()
    again = run(discover_inputs([inp], recursive=True), segmenter, out, RunConfig())
    assert all(r.skipped for r in again.results) and record.stat().st_mtime_ns == before
    assert (out / "objects.csv").read_text() == objects_before  # tables rebuilt from the same records
    redo = run(discover_inputs([inp / "a.tif"]), segmenter, out, RunConfig(overwrite=True))
    assert not redo.results[0].skipped and record.stat().st_mtime_ns > before


def test_outputs_are_named_by_stem_unless_two_inputs_would_share_a_name(segmenter, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    for name in ("frame_0.tif", "a.tif", "a.png", "sub/a.tif"):
        path = inp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(em_frame((60, 70), len(name))).save(path)
    summary = run(discover_inputs([inp], recursive=True), segmenter, out, RunConfig(overlays=True))
    assert {r.key: r.name for r in summary.results} == {"a.png": "a.png", "a.tif": "a.tif", "frame_0.tif": "frame_0", "sub/a.tif": "sub/a"}
    for name in ("frame_0", "a.tif", "a.png", "sub/a"):
        assert (out / "labels" / f"{name}.tif").is_file() and (out / "rois" / f"{name}.zip").is_file()
        assert (out / "overlays" / f"{name}.png").is_file()
    assert not (out / "labels/a.tif").exists()  # a.tif and a.png keep their extension: no output shared
    assert (out / "records/frame_0.tif.json").is_file()  # records stay by key: a rerun finds them whatever the names
    # a later run into the same folder never takes a name another input's record holds, and a rerun keeps names
    alone = tmp_path / "alone"
    alone.mkdir()
    Image.fromarray(em_frame((60, 70), 3)).save(alone / "frame_0.png")
    later = run(discover_inputs([alone]), segmenter, out, RunConfig())
    assert later.results[0].name == "frame_0.png" and (out / "labels/frame_0.png.tif").is_file()
    again = run(discover_inputs([inp], recursive=True), segmenter, out, RunConfig(overwrite=True))
    assert [r.name for r in again.results] == [r.name for r in summary.results]
    images = _csv(out / "images.csv")
    assert sorted(r["image"] for r in images) == ["a.png", "a.tif", "frame_0.png", "frame_0.tif", "sub/a.tif"]


def test_process_file_for_the_watcher(segmenter, tmp_path):
    good = tmp_path / "frame 1.png"
    Image.fromarray(em_frame((100, 120), 9)).save(good)
    result = process_file(good, segmenter, tmp_path / "out", "frame 1.png", source={"sha256": "abc"})
    assert result.ok and result.source["sha256"] == "abc" and result.source["size"] == good.stat().st_size
    assert (tmp_path / "out/records/frame 1.png.json").is_file() and (tmp_path / "out/labels/frame 1.tif").is_file()  # outputs by stem
    bad = _touch(tmp_path / "bad.tif", b"II*\x00garbage")
    result = process_file(bad, segmenter, tmp_path / "out", "bad.tif")
    assert not result.ok and "TIFF" in result.error
    record = json.loads((tmp_path / "out/records/bad.tif.json").read_text())
    assert record["status"] == "failed" and record["error"] == result.error
    assert not (tmp_path / "out/labels/bad.tif").exists()


@pytest.mark.slow
def test_full_frame_4864x3704(tiny_model_dir, tmp_path):
    """A whole instrument frame through every stage at full resolution (shrunk 20x for the model: 6 tiles)."""
    segmenter = Segmenter(detecting_model(tiny_model_dir, tmp_path / "m", quantile=99.0), backend="torch", device="cpu")
    frame = em_frame((3704, 4864), 11, n=40)
    tifffile.imwrite(tmp_path / "frame.tif", frame)
    out = tmp_path / "out"
    summary = run(discover_inputs([tmp_path / "frame.tif"]), segmenter, out, RunConfig(pixel_size_nm=0.5))
    assert summary.results[0].ok, summary.results[0].error
    labels = tifffile.imread(out / "labels/frame.tif")
    assert labels.shape == (3704, 4864)
    assert len(_csv(out / "objects.csv")) == labels.max() == summary.n_objects


def test_timing_wrapper_keeps_the_backends_hints():
    """`segment_scaled` sizes its calls by `tiles_per_call` (CUDA stream overlap): timing must not hide it."""
    from mitotally.runtime.segmenter import _TimedBackend

    class Stub:
        name, tile, batch, tiles_per_call = "stub", 8, 2, 16

        def infer(self, tiles, box_filters=None):
            return [None] * len(tiles)

    timed = _TimedBackend(Stub())
    assert getattr(timed, "tiles_per_call", timed.batch) == 16 and len(timed.infer(np.zeros((3, 8, 8)))) == 3
    assert timed.seconds >= 0


@pytest.mark.slow
def test_real_images_end_to_end(shared_data, segmenter, tmp_path):
    """Real Lucchi PNG slices and seed-cardiac RGB JPEGs (plumbing: the tiny model's detections are arbitrary)."""
    files = sorted((shared_data / "lucchi/train/images").iterdir())[:2] + sorted((shared_data / "seed-cardiac/Images").iterdir())[:1]
    items = discover_inputs(files)  # named files: keys relative to their deepest common folder
    assert [i.key for i in items] == [f"lucchi/train/images/{files[0].name}", f"lucchi/train/images/{files[1].name}",
                                      f"seed-cardiac/Images/{files[2].name}"]
    summary = run(items, segmenter, tmp_path / "out", RunConfig(pixel_size_nm=1.25))  # 1-2 tiles each
    assert [r.status for r in summary.results] == ["ok"] * 3, [r.error for r in summary.results]
    images = _csv(tmp_path / "out/images.csv")
    assert {(r["width"], r["height"]) for r in images} == {("1024", "768"), ("1216", "816")}
    coco = COCO(str(tmp_path / "out/predictions.json"))
    assert len(coco.getAnnIds()) == summary.n_objects == len(_csv(tmp_path / "out/objects.csv"))


def _mixed_inputs(root: Path) -> Path:
    """Single frames, a stack (its planes need the model, so the writer is drained first) and a broken file."""
    inp = root / "in"
    inp.mkdir(parents=True)
    for i in range(3):
        tifffile.imwrite(inp / f"a{i}.tif", em_frame((150, 170), 10 + i))
    tifffile.imwrite(inp / "b_stack.tif", np.stack([em_frame((90, 110), s) for s in (20, 21)]), imagej=True, metadata={"axes": "ZYX"})
    (inp / "c_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    tifffile.imwrite(inp / "d.tif", em_frame((140, 160), 30))
    return inp


def test_overlapped_run_gives_what_one_input_at_a_time_gives(segmenter, tmp_path):
    inp = _mixed_inputs(tmp_path)
    items = discover_inputs([inp])
    seen = []
    summary = run(items, segmenter, tmp_path / "out", RunConfig(), on_result=lambda r: seen.append(r.key))
    keys = [i.key for i in items]
    assert seen == keys and [r.key for r in summary.results] == keys  # reported in input order
    assert [r.status for r in summary.results] == ["ok"] * 4 + ["failed", "ok"]
    for item, result in zip(items, summary.results):  # the same as processing each input on its own
        alone = process_file(item.path, segmenter, tmp_path / "alone", item.key, name=result.name)
        assert (alone.status, alone.n_objects, alone.planes) == (result.status, result.n_objects, result.planes), item.key
        if result.ok:
            label = "labels/{}.tif".format(result.name)
            assert np.array_equal(tifffile.imread(tmp_path / "out" / label), tifffile.imread(tmp_path / "alone" / label))
            rois = [[(r.name, r.coordinates().tolist()) for r in roiread(d / "rois" / f"{result.name}.zip")] for d in (tmp_path / "out", tmp_path / "alone")]
            assert rois[0] == rois[1]  # (the zip's bytes differ: entries carry their write time)
    assert all(r.object_rows == a.object_rows for r, a in zip(summary.results, [process_file(i.path, segmenter, tmp_path / "again", i.key) for i in items]))


def test_writing_one_input_overlaps_the_model_on_the_next(segmenter, tmp_path, monkeypatch):
    """Measuring + writing input k waits until the model has started on input k+1: without the overlap, this deadlocks."""
    import mitotally.runtime.pipeline as pipeline

    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(3):
        tifffile.imwrite(inp / f"{i}.tif", em_frame((120, 130), 40 + i))
    started = [threading.Event() for _ in range(3)]
    threads, real_start, real_complete = {}, pipeline._start, pipeline._complete

    def start(decoded, *a, **k):
        started[int(decoded.item.key[0])].set()
        return real_start(decoded, *a, **k)

    def complete(job, *a, **k):
        index = int(job.decoded.item.key[0])
        threads[index] = threading.current_thread().name
        if index < 2:
            assert started[index + 1].wait(10), "the model did not start on the next input while this one was written"
        return real_complete(job, *a, **k)

    monkeypatch.setattr(pipeline, "_start", start)
    monkeypatch.setattr(pipeline, "_complete", complete)
    summary = run(discover_inputs([inp]), segmenter, tmp_path / "out", RunConfig())
    assert [r.status for r in summary.results] == ["ok"] * 3
    assert all(name.startswith("mito-write") for name in threads.values())


def test_a_failure_while_writing_is_that_inputs_failure_only(segmenter, tmp_path, monkeypatch):
    import mitotally.runtime.pipeline as pipeline

    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(3):
        tifffile.imwrite(inp / f"{i}.tif", em_frame((120, 130), 50 + i))
    real = pipeline.write_rois

    def full_disk_on_1(path, rois):
        if Path(path).name == "1.zip":
            raise OSError(28, "No space left on device", str(path))
        return real(path, rois)

    monkeypatch.setattr(pipeline, "write_rois", full_disk_on_1)
    summary = run(discover_inputs([inp]), segmenter, tmp_path / "out", RunConfig())
    assert [r.status for r in summary.results] == ["ok", "failed", "ok"]
    assert summary.results[1].error.startswith("cannot write outputs: No space left on device")
    assert not (tmp_path / "out/labels/1.tif").exists()  # a failed input leaves no outputs behind
    assert json.loads((tmp_path / "out/records/1.tif.json").read_text())["status"] == "failed"
