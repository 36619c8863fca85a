"""`mito-train --check-data`: the summary numbers, the problems it prints and its exit status."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from rich.console import Console

from mitotally.trainer.check import check_data, summarize
from mitotally.trainer.cli import main as train_main
from mitotally.trainer.importers import read_dataset


def write_label_dataset(root: Path, bad: bool) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    lab = np.zeros((40, 50), np.uint16)
    lab[0:10, 0:10] = 1  # 100 px
    lab[20:30, 20:40] = 2  # 200 px
    # 8 nm pixels from ImageJ metadata on one image; the other has none
    tifffile.imwrite(root / "images" / "a.tif", np.zeros((40, 50), np.uint8), imagej=True, resolution=(1 / 0.008, 1 / 0.008), metadata={"unit": "um"})
    tifffile.imwrite(root / "labels" / "a.tif", lab)
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(root / "images" / "b.png")
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(root / "images" / "c.png")  # no labels: kept, flagged
    if bad:
        tifffile.imwrite(root / "labels" / "b.tif", np.zeros((41, 50), np.uint16))  # wrong size: skipped
    return root


def test_summary_numbers(tmp_path):
    ds = read_dataset(write_label_dataset(tmp_path / "d", bad=False))
    s = summarize(ds)
    assert (s.images_used, s.images_skipped, s.instances, s.images_without_instances) == (3, 0, 2, 2)
    assert sorted(s.areas_px.tolist()) == [100, 200]
    assert s.images_with_pixel_size == 1 and s.pixel_sizes_nm == [8.0]
    assert np.allclose(sorted(s.areas_um2), [100 * 0.008**2, 200 * 0.008**2])
    assert np.allclose(sorted(s.diameters_nm), [2 * np.sqrt(100 / np.pi) * 8, 2 * np.sqrt(200 / np.pi) * 8])
    assert s.image_kinds == {"50x40 uint8 gray": 3}
    s = summarize(ds, pixel_size_nm=2.0)  # --input-pixel-size overrides the files
    assert s.images_with_pixel_size == 3 and np.allclose(sorted(s.areas_um2), [100 * 0.002**2, 200 * 0.002**2])


@pytest.mark.parametrize("bad", [False, True])
def test_check_data_prints_problems_and_exit_status(tmp_path, bad):
    root = write_label_dataset(tmp_path / "d", bad)
    console = Console(record=True, width=200)
    rc = check_data(str(root), console=console)
    text = console.export_text()
    assert "images used" in text and "instances" in text
    assert "images/c.png: image without labels" in text
    if bad:
        assert rc == 1
        assert "error (image skipped): labels/b.tif: label size differs from image size: labels 50x41 vs image 50x40" in text
        assert "training refuses" in text
    else:
        assert rc == 0 and "error (image skipped)" not in text


def test_check_data_through_mito_train(tmp_path, capsys):
    root = write_label_dataset(tmp_path / "d", bad=True)
    assert train_main(["--data", str(root), "--check-data"]) == 1
    assert train_main(["--data", str(tmp_path / "missing"), "--check-data"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_check_data_takes_the_folders_from_a_recipe(tmp_path, capsys):
    good = write_label_dataset(tmp_path / "good", bad=False)
    bad = write_label_dataset(tmp_path / "bad", bad=True)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'data = ["{good.as_posix()}", "{bad.as_posix()}"]\nout = "unused"\n')
    assert train_main(["--config", str(recipe), "--check-data"]) == 1  # the bad folder decides
    assert "label size differs" in capsys.readouterr().out
    recipe.write_text(f'data = "{good.as_posix()}"\n')
    assert train_main(["--config", str(recipe), "--check-data"]) == 0
    recipe.write_text('data = ""\n')
    assert train_main(["--config", str(recipe), "--check-data"]) == 2
    assert "--check-data needs --data" in capsys.readouterr().err
