"""Bad inputs: each gets one line naming the file and the cause, a row in images.csv, and the run goes on.

One `mito-run` over a folder holding every case (plus good images) is shared by
the parametrised checks; cases that need their own run follow.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mito_run_helpers import detecting_model, em_frame  # noqa: E402

from mitotally.runtime import tiff_meta
from mitotally.runtime.pipeline import RunConfig, run
from mitotally.runtime.reader import discover_inputs
from mitotally.runtime.run_cli import main
from mitotally.runtime.segmenter import Segmenter

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _tif(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **kw)
    return path


def _img(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_png(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = data.index(b"IDAT") + 40
    data[i : i + 16] = bytes(16)  # damaged compressed data: the chunk CRC no longer matches
    path.write_bytes(bytes(data))


def _corrupt_tiff(path: Path) -> None:
    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages[0].dataoffsets[0])
    data = bytearray(path.read_bytes())
    data[offset : offset + 32] = b"\xff" * 32  # the zlib stream no longer decodes
    path.write_bytes(bytes(data))


FRAME = em_frame((140, 170), 5)
# name -> (status, a piece of the error; "" for ok)
CASES = {
    "good.tif": ("ok", ""),
    "corrupt.tif": ("failed", "cannot decode image"),
    "corrupt.png": ("failed", "cannot decode image"),
    "truncated.tif": ("failed", "truncated"),
    "truncated.png": ("failed", "truncated"),
    "truncated.jpg": ("failed", "truncated"),
    "empty.tif": ("failed", "empty file (0 bytes)"),
    "notes.png": ("failed", "not a valid PNG/JPEG file"),
    "notes.tif": ("failed", "not a valid TIFF file"),
    "dot.png": ("failed", "image too small: 1x1 px"),
    "rgb.jpg": ("ok", ""),
    "sixteen.tif": ("ok", ""),
    "float32.tif": ("ok", ""),
    "stack.tif": ("ok", ""),
    "tiny.png": ("ok", ""),
    "ünï cödé/frame µ 1.tif": ("ok", ""),
}


def _make_inputs(inp: Path) -> None:
    _tif(inp / "good.tif", FRAME)
    _corrupt_tiff(_tif(inp / "corrupt.tif", FRAME, compression="zlib"))
    _corrupt_png(_img(inp / "corrupt.png", FRAME))
    _cut(_tif(inp / "truncated.tif", FRAME))
    _cut(_img(inp / "truncated.png", FRAME))
    _cut(_img(inp / "truncated.jpg", FRAME))
    (inp / "empty.tif").write_bytes(b"")
    (inp / "notes.png").write_text("not an image\n" * 20)
    (inp / "notes.tif").write_text("not an image either\n" * 20)
    _img(inp / "dot.png", np.zeros((1, 1), np.uint8))
    _img(inp / "rgb.jpg", np.repeat(FRAME[..., None], 3, axis=2))
    _tif(inp / "sixteen.tif", FRAME.astype(np.uint16) * 257)
    _tif(inp / "float32.tif", FRAME.astype(np.float32) / 255)
    _tif(inp / "stack.tif", np.stack([FRAME, FRAME[::-1], FRAME[:, ::-1]]), imagej=True, metadata={"axes": "ZYX"})
    _img(inp / "tiny.png", FRAME[:40, :30])  # smaller than one tile
    _tif(inp / "ünï cödé" / "frame µ 1.tif", FRAME)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    return detecting_model(tiny_model_dir, tmp_path_factory.mktemp("det"), quantile=99.0)


@pytest.fixture(scope="module")
def bad_run(model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    inp, out = root / "in", root / "out"
    _make_inputs(inp)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([str(inp), "-o", str(out), "--recursive", "--model", str(model_dir), "--quiet", "--pixel-size", "10nm"])
    with open(out / "images.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return inp, rc, err.getvalue().splitlines(), rows


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_has_its_row_and_line(bad_run, name):
    inp, rc, lines, rows = bad_run
    status, cause = CASES[name]
    mine = [r for r in rows if r["image"] == name]
    assert mine and all(r["status"] == status for r in mine), mine
    failed_lines = [ln for ln in lines if str(inp / name) in ln]
    if status == "ok":
        assert not failed_lines and all(r["error"] == "" for r in mine)
    else:
        assert len(mine) == 1 and cause in mine[0]["error"] and "\n" not in mine[0]["error"]
        assert len(failed_lines) == 1 and failed_lines[0] == f"mito-run: failed: {inp / name}: {mine[0]['error']}"


def test_the_run_went_on(bad_run):
    _, rc, lines, rows = bad_run
    n_failed = sum(s == "failed" for s, _ in CASES.values())
    assert rc == 1  # not every input succeeded
    assert sum(r["status"] == "failed" for r in rows) == n_failed == len(lines)  # quiet: only the failure lines
    assert len([r for r in rows if r["image"] == "stack.tif"]) == 3  # a stack: one row per plane


def test_types_were_segmented_like_the_gray_8_bit_frame(bad_run):
    """16-bit, float32, RGB and the unicode-named copy are the same picture: percentile normalisation
    makes them the same model input, so they get the same count as the 8-bit original."""
    _, _, _, rows = bad_run
    count = {r["image"]: r["count"] for r in rows if r["plane"] == "1"}
    assert count["sixteen.tif"] == count["float32.tif"] == count["ünï cödé/frame µ 1.tif"] == count["good.tif"]


def _three_good(folder: Path) -> list[Path]:
    return [_tif(folder / f"{i}.tif", em_frame((100, 110), i)) for i in range(3)]


def test_file_vanishing_mid_run(model_dir, tmp_path):
    # four inputs: when the first is reported, the second is being written and the third read ahead,
    # so the last one is not read yet when it disappears
    paths = _three_good(tmp_path / "in") + [_tif(tmp_path / "in" / "3.tif", em_frame((100, 110), 3))]
    segmenter = Segmenter(model_dir, backend="torch", device="cpu")
    deleted = []

    def delete_last(result):
        if not deleted:
            paths[-1].unlink()
            deleted.append(paths[-1])

    summary = run(discover_inputs([tmp_path / "in"]), segmenter, tmp_path / "out", RunConfig(read_ahead=1), on_result=delete_last)
    assert [r.status for r in summary.results] == ["ok", "ok", "ok", "failed"]
    assert summary.results[3].error == "file not found (deleted or moved)"


def test_permission_denied_simulated(model_dir, tmp_path, monkeypatch):
    """Works as root too: the TIFF reader is made to raise what an unreadable file raises."""
    paths = _three_good(tmp_path / "in")
    real = tiff_meta.TiffPlanes

    def guarded(path):
        if Path(path).name == "1.tif":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(tiff_meta, "TiffPlanes", guarded)
    summary = run(discover_inputs([paths[0].parent]), Segmenter(model_dir, backend="torch", device="cpu"), tmp_path / "out", RunConfig())
    assert [(r.status, r.error) for r in summary.results] == [("ok", ""), ("failed", "permission denied"), ("ok", "")]


@pytest.mark.skipif(IS_ROOT, reason="running as root: file permissions do not stop root (see the simulated test)")
def test_permission_denied_for_real(model_dir, tmp_path):
    paths = _three_good(tmp_path / "in")
    paths[1].chmod(0)
    try:
        summary = run(discover_inputs([paths[0].parent]), Segmenter(model_dir, backend="torch", device="cpu"), tmp_path / "out", RunConfig())
    finally:
        paths[1].chmod(0o644)
    assert [(r.status, r.error) for r in summary.results][1] == ("failed", "permission denied")


def test_output_folder_not_writable(model_dir, tmp_path, capsys):
    _three_good(tmp_path / "in")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc = main([str(tmp_path / "in"), "-o", str(blocker / "out"), "--model", str(model_dir), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"mito-run: error: cannot write to output folder {blocker / 'out'}")


@pytest.mark.skipif(IS_ROOT, reason="running as root: a read-only folder does not stop root (see the test above)")
def test_output_folder_read_only(model_dir, tmp_path, capsys):
    _three_good(tmp_path / "in")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        rc = main([str(tmp_path / "in"), "-o", str(tmp_path / "ro"), "--model", str(model_dir), "--quiet"])
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert rc == 2 and "Permission denied" in capsys.readouterr().err


@pytest.mark.slow
def test_huge_20000x20000_image_is_tiled_with_bounded_memory(tiny_model_dir, tmp_path):
    """A 20000x20000 frame (400 MB decoded, under 1 MB on disk; shrunk 40x for the model: 36 tiles) with a
    model that detects nothing: every output is written at full size, and the run, in its own process,
    stays within a few bytes per input pixel (no full-size float copy)."""
    model_dir = detecting_model(tiny_model_dir, tmp_path / "blind", threshold=1.0)  # no detections: stays cheap
    _tif(tmp_path / "huge.tif", np.full((20000, 20000), 128, np.uint8), compression="zlib", tile=(1024, 1024))
    code = (
        "import resource, sys; from mitotally.runtime.run_cli import main; "
        f"rc = main([{str(tmp_path / 'huge.tif')!r}, '-o', {str(tmp_path / 'out')!r}, '--model', {str(model_dir)!r}, "
        "'--quiet', '--pixel-size', '0.25nm', '--threads', '1']); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    peak_gb = int(proc.stdout.strip().splitlines()[-1]) / 1e6
    with open(tmp_path / "out/images.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "ok" and row["width"] == row["height"] == "20000" and row["count"] == "0"
    with tifffile.TiffFile(tmp_path / "out/labels/huge.tif") as tif:
        assert tif.series[0].shape == (20000, 20000)
    assert peak_gb < 3.0, f"peak memory {peak_gb:.1f} GB"  # input 0.4 + labels 0.8 + torch/model; float32 copy alone: 1.6


def test_disk_full_fails_that_image_and_goes_on(model_dir, tmp_path, monkeypatch):
    """A write error (simulated ENOSPC on one label image) fails that input only, with its cause."""
    from mitotally.runtime import pipeline

    paths = _three_good(tmp_path / "in")
    real = pipeline.write_labels

    def full_disk(path, *a, **k):
        if Path(path).name == "1.tif":
            raise OSError(28, "No space left on device", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(pipeline, "write_labels", full_disk)
    out = tmp_path / "out"
    summary = run(discover_inputs([paths[0].parent]), Segmenter(model_dir, backend="torch", device="cpu"), out, RunConfig())
    assert [r.status for r in summary.results] == ["ok", "failed", "ok"]
    assert summary.results[1].error == f"cannot write outputs: No space left on device: {out / 'labels' / '1.tif'}"
    assert not (out / "overlays" / "1.png").exists()  # nothing half-done is left behind


def test_tables_unwritable_is_reported_not_a_crash(model_dir, tmp_path, monkeypatch, capsys):
    from mitotally.runtime import pipeline

    def no_space(out_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "rebuild_tables", no_space)
    rc = main([str(_three_good(tmp_path / "in")[0].parent), "-o", str(tmp_path / "out"), "--model", str(model_dir), "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot write the tables" in err and "No space left on device" in err
    assert len(list((tmp_path / "out/records").glob("*.json"))) == 3  # per-image results are all there
