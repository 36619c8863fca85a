"""Calibrations as a lab's files carry them, through a real `mito-run`: images.csv's pixel size and source,
and objects.csv's area_um2 = area_px x pixel area, for every format read; refused images leave the run going.

One run segments a folder holding one tiny file per calibration (the tiny detecting model: meaningless
masks, real measurements); each test reads its own file's rows.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibration_files as cf  # noqa: E402
from mito_run_helpers import detecting_model, em_frame  # noqa: E402

from mitotally.runtime.run_cli import main  # noqa: E402

SHAPE = (96, 112)


def _frame(seed: int) -> np.ndarray:
    return em_frame(SHAPE, seed, n=5)


# file name -> (writer, expected (x_nm, y_nm, source), or None: uncalibrated)
CASES = {
    "imagej_square.tif": (lambda p: cf.imagej(p, _frame(1), 10.0), (10.0, 10.0, "imagej")),
    "imagej_4x8.tif": (lambda p: cf.imagej(p, _frame(2), 4.0, 8.0), (4.0, 8.0, "imagej")),
    **{f"unit_{name}.tif": ((lambda u, k: lambda p: cf.imagej(p, _frame(3), 9.0 * k, unit=u))(unit, per_nm), (9.0, 9.0, "imagej"))
       for name, unit, per_nm in [("nm", "nm", 1.0), ("micron", "micron", 1e-3), ("micro_sign", "µm", 1e-3), ("um", "um", 1e-3),
                                  ("mm", "mm", 1e-6), ("inch", "inch", 1 / 2.54e7), ("cm", "cm", 1e-7)]},
    "ome.ome.tif": (lambda p: cf.ome(p, _frame(2), 0.004, "µm", 80.0, "Å"), (4.0, 8.0, "ome")),
    "fei.tif": (lambda p: cf.fei(p, _frame(5), 9.5e-9, 9.5e-9), (9.5, 9.5, "fei")),
    "zeiss.tif": (lambda p: cf.zeiss_sem(p, _frame(6), 11.2, "nm"), (11.2, 11.2, "zeiss-sem")),
    "sis.tif": (lambda p: cf.sis(p, _frame(7), 8e-9, 8e-9), (8.0, 8.0, "sis")),
    "tvips.tif": (lambda p: cf.tvips(p, _frame(8), 7.5, 7.5), (7.5, 7.5, "tvips")),
    "editor_72dpi.tif": (lambda p: cf.plain(p, _frame(9), 72 / 2.54), None),
    "bare.tif": (lambda p: cf.plain(p, _frame(10)), None),
    "frame.dm3": (lambda p: cf.dm(p, _frame(11), (0.0105, 0.0105), "µm", 3), (10.5, 10.5, "dm")),
    "frame.dm4": (lambda p: cf.dm(p, _frame(12), (4.0, 8.0), "nm", 4), (4.0, 8.0, "dm")),
    "tomo.mrc": (lambda p: cf.mrc(p, np.stack([_frame(13), _frame(14)]), 50.0), (5.0, 5.0, "mrc")),
}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    return detecting_model(tiny_model_dir, tmp_path_factory.mktemp("det"), quantile=90.0)


@pytest.fixture(scope="module")
def calibrated_run(model_dir, tmp_path_factory):
    pytest.importorskip("rsciio", reason="the [em] extra is not installed")
    pytest.importorskip("mrcfile", reason="the [em] extra is not installed")
    root = tmp_path_factory.mktemp("calibrated")
    inp, out = root / "in", root / "out"
    inp.mkdir()
    for name, (write, _) in CASES.items():
        write(inp / name)
    code = main([str(inp), "-o", str(out), "--model", str(model_dir), "--backend", "torch", "--quiet"])
    return code, _rows(out / "images.csv"), _rows(out / "objects.csv"), json.loads((out / "run.json").read_text())


def _check(calibrated_run, name: str) -> list[dict]:
    code, images, objects, _ = calibrated_run
    assert code == 0
    expected = CASES[name][1]
    rows = [r for r in images if r["image"] == name]
    assert rows and all(r["status"] == "ok" for r in rows)
    mine = [o for o in objects if o["image"] == name]
    for r in rows:
        if expected is None:
            assert (r["pixel_size_x_nm"], r["pixel_size_y_nm"], r["pixel_size_nm"]) == ("", "", "")
            assert r["pixel_size_source"] == "none"
            assert r["scaling_source"] in ("default", "estimated")
            assert all(o["area_um2"] == "" for o in mine)
            continue
        x, y, source = expected
        assert float(r["pixel_size_x_nm"]) == pytest.approx(x, rel=1e-6)
        assert float(r["pixel_size_y_nm"]) == pytest.approx(y, rel=1e-6)
        assert r["pixel_size_source"] == source and r["pixel_size_note"] == ""
        assert float(r["pixel_size_nm"]) == pytest.approx((x * y) ** 0.5, rel=1e-6)
        px_x, px_y = float(r["pixel_size_x_nm"]), float(r["pixel_size_y_nm"])
        for o in mine:  # the exact pixel area, with x and y as images.csv gives them
            assert float(o["area_um2"]) == pytest.approx(int(o["area_px"]) * px_x * px_y / 1e6, rel=1e-12)
    return mine


def test_every_calibrated_file_has_objects_to_measure(calibrated_run):
    _, images, objects, _ = calibrated_run
    assert {r["image"] for r in images} == set(CASES)
    assert {o["image"] for o in objects} >= {n for n, (_, e) in CASES.items() if e is not None}


def test_imagej_square(calibrated_run):
    _check(calibrated_run, "imagej_square.tif")


def test_imagej_non_square_pixels(calibrated_run):
    objects = _check(calibrated_run, "imagej_4x8.tif")
    assert objects and all(float(o["area_um2"]) != pytest.approx(int(o["area_px"]) * 16e-6) for o in objects)  # not 4 x 4


@pytest.mark.parametrize("unit", ["nm", "micron", "micro_sign", "um", "mm", "inch", "cm"])
def test_imagej_unit_variants(calibrated_run, unit):
    _check(calibrated_run, f"unit_{unit}.tif")


def test_ome_tiff_physical_size_x_and_y(calibrated_run):
    _check(calibrated_run, "ome.ome.tif")


def test_fei(calibrated_run):
    _check(calibrated_run, "fei.tif")


def test_zeiss_sem(calibrated_run):
    _check(calibrated_run, "zeiss.tif")


def test_olympus_sis(calibrated_run):
    _check(calibrated_run, "sis.tif")


def test_tvips(calibrated_run):
    _check(calibrated_run, "tvips.tif")


def test_implausible_calibration_is_uncalibrated_and_recorded(calibrated_run):
    _check(calibrated_run, "editor_72dpi.tif")
    _, images, _, info = calibrated_run
    row = next(r for r in images if r["image"] == "editor_72dpi.tif")
    assert "352778 nm (tiff-resolution)" in row["pixel_size_note"] and "0.01-1000 nm" in row["pixel_size_note"]
    notes = info["calibration"]["notes"]
    assert [n["image"] for n in notes] == ["editor_72dpi.tif"] and notes[0]["note"] == row["pixel_size_note"]
    assert info["calibration"]["plausible_pixel_size_nm"] == [0.01, 1000.0]


def test_uncalibrated_tiff(calibrated_run):
    _check(calibrated_run, "bare.tif")
    _, images, _, _ = calibrated_run
    assert next(r for r in images if r["image"] == "bare.tif")["pixel_size_note"] == ""


def test_gatan_dm3(calibrated_run):
    _check(calibrated_run, "frame.dm3")


def test_gatan_dm4_non_square(calibrated_run):
    _check(calibrated_run, "frame.dm4")


def test_mrc_stack(calibrated_run):
    _check(calibrated_run, "tomo.mrc")
    _, images, _, _ = calibrated_run
    assert [r["plane"] for r in images if r["image"] == "tomo.mrc"] == ["1", "2"]


def test_the_implausible_file_gets_one_warning_naming_value_and_source(model_dir, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    cf.plain(inp / "editor.tif", _frame(9), 72 / 2.54)
    assert main([str(inp), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--backend", "torch", "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "editor.tif" in line]
    assert len(lines) == 1 and "352778 nm (tiff-resolution)" in lines[0] and "areas are in px" in lines[0]


def test_an_image_too_large_at_the_models_scale_is_refused_and_the_run_goes_on(model_dir, tmp_path, capsys):
    """1000 nm pixels (plausible) on a 480x480 frame: 48000 x 48000 px at the model's 10 nm, over 2^31."""
    inp = tmp_path / "in"
    inp.mkdir()
    cf.imagej(inp / "a_ok.tif", _frame(1), 10.0)
    cf.imagej(inp / "b_huge.tif", em_frame((480, 480), 2), 1000.0)
    assert main([str(inp), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--backend", "torch", "--quiet"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "b_huge.tif" in line]
    assert len(err) == 1 and "refused: at 1000 nm (imagej) per pixel this 480x480 px image would be 48000x48000 px" in err[0]
    rows = {r["image"]: r for r in _rows(tmp_path / "out/images.csv")}
    assert rows["a_ok.tif"]["status"] == "ok" and rows["b_huge.tif"]["status"] == "failed"
    assert rows["b_huge.tif"]["error"].startswith("refused: at 1000 nm (imagej)")


def test_a_pixel_size_option_with_the_wrong_unit_is_refused_per_file(model_dir, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(2):
        cf.plain(inp / f"f{i}.tif", _frame(i))
    assert main([str(inp), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--backend", "torch", "--quiet",
                 "--pixel-size", "20um"]) == 1
    err = capsys.readouterr().err
    assert err.count("refused: at 20000 nm (--pixel-size) per pixel") == 2
    assert [r["status"] for r in _rows(tmp_path / "out/images.csv")] == ["failed", "failed"]
