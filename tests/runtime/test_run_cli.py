"""`mito-run` on the command line: help, exit codes, start-up errors, quiet mode, overrides, interruption."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mito_run_helpers import detecting_model, em_frame  # noqa: E402

from mitotally.runtime import pipeline, segmenter
from mitotally.runtime.run_cli import get_args_parser, main


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    return detecting_model(tiny_model_dir, tmp_path_factory.mktemp("det"), quantile=99.0)


def _frames(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tifffile.imwrite(folder / f"f{i}.tif", em_frame((100, 120), i))
    return folder


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_help_explains_every_option_with_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0
    for action in get_args_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        if action.dest != "help":
            assert action.help and len(action.help) > 15, action.dest
    assert "mito-run frames/ -o results/" in text and "exit status" in text and "objects.csv" in text


@pytest.mark.parametrize("argv,message", [
    (["--pixel-size", "4 furlongs"], "unknown unit"),
    (["--pixel-size=-2nm"], "pixel size"),
    (["--pixel-size", "0um"], "must be positive"),
    (["--batch", "0"], "at least 1"),
    (["--backend", "magic"], "invalid choice"),
    (["--device", "gpu"], "expected auto, cpu, cuda or cuda:N"),
    (["--score-threshold", "1.5"], "between 0 and 1"),
    (["--mask-threshold", "half"], "expected a number between 0 and 1"),
    (["--precision", "int4"], "invalid choice"),
])
def test_bad_options_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "-o", str(tmp_path / "out"), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_start_up_errors_are_one_line_and_exit_2(model_dir, tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"mito-run: error: {tmp_path / 'nope'}: no such file or folder"
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "empty" / "sub" / "deep.tif", np.zeros((8, 8), np.uint8))
    assert main([str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no images" in err and "add --recursive" in err
    assert main([str(_frames(tmp_path / "in", 1)), "-o", str(tmp_path / "o"), "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.json" in err[0]


def test_no_shipped_model_means_model_is_required(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(segmenter, "shipped_models", lambda: [])
    assert main([str(_frames(tmp_path / "in", 1)), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mito-run: error: no model is shipped yet") and "--model DIR" in err


def test_shipped_model_is_the_default(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(segmenter, "shipped_models", lambda: [model_dir])
    assert main([str(_frames(tmp_path / "in", 1)), "-o", str(tmp_path / "o"), "-q"]) == 0
    assert json.loads((tmp_path / "o/run.json").read_text())["model"]["dir"] == str(model_dir)


def test_success_exit_0_quiet_is_silent(model_dir, tmp_path, capsys):
    inp = _frames(tmp_path / "in")
    assert main([str(inp), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--quiet", "--pixel-size", "0.0042um"]) == 0
    assert capsys.readouterr().err == ""
    rows = _rows(tmp_path / "out/images.csv")
    assert [r["pixel_size_source"] for r in rows] == ["--pixel-size", "--pixel-size"]
    assert [r["scaling_source"] for r in rows] == ["--pixel-size", "--pixel-size"]
    assert [float(r["pixel_size_nm"]) for r in rows] == pytest.approx([4.2, 4.2])
    assert tifffile.TiffFile(tmp_path / "out/labels/f0.tif").imagej_metadata["unit"] == "um"


def test_a_folder_of_links_is_segmented_and_what_is_skipped_is_named(model_dir, tmp_path, capsys):
    import os

    store = _frames(tmp_path / "store")  # the images live elsewhere; the folder given holds links to them
    linked = tmp_path / "linked"
    (linked / "sub").mkdir(parents=True)
    for name in ("f0.tif", "f1.tif"):
        os.symlink(store / name, linked / name)
    os.symlink(tmp_path / "store/missing.tif", linked / "gone.tif")
    os.symlink(store, linked / "more")
    os.symlink(linked, linked / "sub" / "up")  # a loop under --recursive
    out = tmp_path / "out"
    assert main([str(linked), "-o", str(out), "--model", str(model_dir), "--quiet", "--pixel-size", "10nm"]) == 0
    err = capsys.readouterr().err.strip()
    assert err == "mito-run: warning: skipped 2 entries: broken link gone.tif, directory link more/ (use --recursive)"
    rows = _rows(out / "images.csv")
    assert [(r["image"], r["status"]) for r in rows] == [("f0.tif", "ok"), ("f1.tif", "ok")]
    assert (out / "labels/f0.tif").is_file() and (out / "labels/f1.tif").is_file()
    again = tmp_path / "out_r"  # --recursive: the folder link is followed once, the loop ends
    assert main([str(linked), "-o", str(again), "--model", str(model_dir), "--quiet", "--recursive"]) == 0
    err = capsys.readouterr().err
    assert "broken link gone.tif" in err and "link loop sub/up/" in err and "second path to more/f0.tif" in err
    assert sorted(r["image"] for r in _rows(again / "images.csv")) == ["f0.tif", "f1.tif"]
    assert all(p.resolve().is_relative_to(again.resolve()) for p in again.rglob("*"))  # nothing written outside OUT


def test_progress_summary_and_warning_once(model_dir, tmp_path, capsys):
    inp = _frames(tmp_path / "in", 3)  # plain TIFFs: no pixel size
    (inp / "zz broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main([str(inp), "-o", str(tmp_path / "out"), "--model", str(model_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "areas are in px" in err
    assert err.count(f"mito-run: failed: {inp / 'zz broken.png'}") == 1
    assert "mitochondria" in err and "images/s" in err and "time per stage" in err
    assert "backend: torch on cpu (fastest available; skipped onnxruntime), fp32 trunk" in err


def test_a_precision_that_cannot_run_is_a_one_line_error(model_dir, tmp_path, capsys):
    inp = _frames(tmp_path / "in", 1)
    assert main([str(inp), "-o", str(tmp_path / "o"), "--model", str(model_dir), "--precision", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mito-run: error: no backend could start") and "int8" in err[0]
    assert main([str(inp), "-o", str(tmp_path / "o"), "--model", str(model_dir), "--backend", "torch", "--precision", "fp16",
                 "--device", "cpu"]) == 2
    assert "fp16 needs a CUDA GPU" in capsys.readouterr().err


def test_interrupt_keeps_finished_images_and_tables(model_dir, tmp_path, capsys, monkeypatch):
    inp = _frames(tmp_path / "in", 3)
    real, calls = pipeline._start, []

    def stop_on_second(*a, **k):  # Ctrl-C while the model works on the second image (the first is being written)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "_start", stop_on_second)
    assert main([str(inp), "-o", str(tmp_path / "out"), "--model", str(model_dir), "-q"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert [r["image"] for r in _rows(tmp_path / "out/images.csv")] == ["f0.tif"]
    assert json.loads((tmp_path / "out/run.json").read_text())["interrupted"] is True
    monkeypatch.setattr(pipeline, "_start", real)
    assert main([str(inp), "-o", str(tmp_path / "out"), "--model", str(model_dir), "-q"]) == 0  # the rerun finishes
    assert [r["image"] for r in _rows(tmp_path / "out/images.csv")] == ["f0.tif", "f1.tif", "f2.tif"]


def test_threshold_overrides_change_the_result_and_are_recorded(model_dir, tmp_path):
    """A stricter score threshold keeps a subset; a higher mask threshold gives smaller areas; run.json says which were used."""
    inp = _frames(tmp_path / "in", 1)
    base_thr = json.loads((model_dir / "model.json").read_text())["score_threshold"]
    assert main([str(inp), "-o", str(tmp_path / "base"), "--model", str(model_dir), "-q"]) == 0
    base = _rows(tmp_path / "base/objects.csv")
    assert len(base) >= 2
    scores = sorted(float(r["score"]) for r in base)
    strict = (scores[0] + scores[-1]) / 2
    assert main([str(inp), "-o", str(tmp_path / "strict"), "--model", str(model_dir), "-q", "--score-threshold", str(strict)]) == 0
    kept = _rows(tmp_path / "strict/objects.csv")
    assert 0 < len(kept) < len(base) and all(float(r["score"]) >= strict for r in kept)
    assert main([str(inp), "-o", str(tmp_path / "tight"), "--model", str(model_dir), "-q", "--mask-threshold", "0.9"]) == 0
    tight = _rows(tmp_path / "tight/objects.csv")
    area = lambda rows: sum(float(r["area_px"]) for r in rows)  # noqa: E731
    assert area(tight) < area(base)
    runs = {name: json.loads((tmp_path / name / "run.json").read_text())["model"] for name in ("base", "strict", "tight")}
    assert (runs["base"]["score_threshold"], runs["base"]["mask_threshold"]) == (base_thr, 0.5)
    assert runs["strict"]["score_threshold"] == strict and runs["tight"]["mask_threshold"] == 0.9
