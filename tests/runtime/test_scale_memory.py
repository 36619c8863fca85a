"""Which frames share a scale estimate, and when it is made again: the key, the expiry rule, the memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from mitotally.runtime.image_io import ImageData
from mitotally.runtime.scale_memory import (NEVER, WATCH_EXPIRY, EstimateKey, Expiry, Remembered, ScaleMemory,
                                            estimate_key, expired, instrument_tags)
from mitotally.runtime.scale_probe import ScaleEstimate

EST = ScaleEstimate(2.5, 5.0, {5.0: 0.01, 2.5: 0.2}, (768, 1024), 7)


def _key(**kw) -> EstimateKey:
    return EstimateKey(**{"height": 768, "width": 1024, "pixel_type": "uint8", "given_nm": None, "folder": "in/a",
                          "instrument": "", **kw})


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_key_separates_size_pixel_type_calibration_folder_and_instrument():
    gray, rgb, deep = np.zeros((768, 1024), np.uint8), np.zeros((768, 1024, 3), np.uint8), np.zeros((768, 1024), np.uint16)
    base = estimate_key(Path("in/a/f1.png"), gray, None, "")
    assert base == _key() == estimate_key(Path("in/a/f2.png"), gray, None, "")  # another frame of the same series
    assert estimate_key(Path("in/a/f1.png"), gray[:700], None, "") != base
    assert estimate_key(Path("in/a/f1.png"), rgb, None, "").pixel_type == "uint8x3"
    assert estimate_key(Path("in/a/f1.png"), deep, None, "") != base
    assert estimate_key(Path("in/a/f1.png"), gray, 4.2, "") != base
    assert estimate_key(Path("in/b/f1.png"), gray, None, "") != base  # another instrument's or session's folder
    assert estimate_key(Path("in/a/f1.png"), gray, None, "Make=FEI; Model=Talos") != base


def test_an_estimate_expires_after_its_frames_or_its_time():
    entry = Remembered(1, _key(), EST, "in/a/f1.png", made_at=100.0, frames=1)
    assert not expired(entry, 1e9, NEVER)
    rule = Expiry(max_frames=3, max_age_s=60.0)
    assert not expired(entry, 159.9, rule)
    assert expired(entry, 160.0, rule)  # 60 s after it was made
    entry.frames = 3
    assert expired(entry, 100.0, rule)  # it has served 3 frames
    assert WATCH_EXPIRY.max_frames == 200 and WATCH_EXPIRY.max_age_s == 1800.0


def test_the_memory_reuses_counts_expires_and_numbers_estimates():
    clock = Clock()
    memory = ScaleMemory(Expiry(max_frames=3, max_age_s=600.0), clock=clock)
    assert memory.recall(_key()) is None
    first = memory.remember(_key(), EST, "in/a/f1.png")
    assert first.number == 1 and first.frames == 1
    assert memory.recall(_key()) is first and memory.recall(_key()) is first and first.frames == 3
    assert memory.recall(_key()) is None  # served 3 frames: the next one is probed again
    second = memory.remember(_key(), EST, "in/a/f4.png")
    other = memory.remember(_key(folder="in/b"), EST, "in/b/g1.png")
    assert (second.number, other.number) == (2, 3) and len(memory) == 2
    clock.now = 599.0
    assert memory.recall(_key(folder="in/b")) is other
    clock.now = 600.0
    assert memory.recall(_key(folder="in/b")) is None and len(memory) == 1  # 10 minutes old
    assert [r.number for r in memory.made()] == [1, 2, 3]  # run.json lists every estimate made
    record = first.to_dict()
    assert record["number"] == 1 and record["folder"] == "in/a" and record["estimated_from"] == "in/a/f1.png"
    assert record["pixel_size_nm"] == 2.5 and record["region"] == [768, 1024] and record["frames"] == 3
    assert record["coverage_by_pixel_size_nm"] == {"5": 0.01, "2.5": 0.2}


def test_the_memory_keeps_a_bounded_history_and_never_expires_by_default():
    memory = ScaleMemory(history=2)
    for k in range(5):
        memory.remember(_key(width=k + 1), EST, f"f{k}.png")
    assert [r.number for r in memory.made()] == [4, 5] and len(memory) == 5
    for _ in range(1000):
        assert memory.recall(_key(width=1)) is not None
    memory.clear()
    assert len(memory) == 0 and memory.made() == [] and memory.remember(_key(), EST, "x").number == 1


def test_instrument_tags_are_read_from_tiff_and_exif(tmp_path):
    tif = tmp_path / "a.tif"
    tifffile.imwrite(tif, np.zeros((8, 8), np.uint8), software="SmartSEM",
                     extratags=[(271, "s", 0, "Zeiss", True), (272, "s", 0, "Sigma 300", True)])
    assert instrument_tags(tif) == "Make=Zeiss; Model=Sigma 300; Software=SmartSEM"
    jpg = tmp_path / "a.jpg"
    exif = Image.Exif()
    exif[271], exif[272] = "JEOL", "JEM-1400"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(jpg, exif=exif)
    assert instrument_tags(jpg) == "Make=JEOL; Model=JEM-1400"
    png = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    assert instrument_tags(png) == "" and instrument_tags(tmp_path / "missing.tif") == ""


def test_choose_view_probes_again_for_another_folder_or_instrument(tmp_path, monkeypatch):
    """The segmenter's path (`choose_view`) with the probe replaced: one estimate per key, reused within it."""
    import mitotally.runtime.segmenter as segmenter_module

    calls = []

    def fake_probe(backend, array, manifest, start_nm=None):
        calls.append(array.shape)
        return ScaleEstimate(2.5, 5.0, {5.0: 0.01, 2.5: 0.2})

    monkeypatch.setattr(segmenter_module, "estimate_pixel_size", fake_probe)
    manifest = type("M", (), {"default_input_pixel_size_nm": 5.0})()
    memory = ScaleMemory()
    array = np.full((40, 50), 128, np.uint8)
    views = []
    for rel, make in (("a/1.tif", "Zeiss"), ("a/2.tif", "Zeiss"), ("b/1.tif", "Zeiss"), ("a/3.tif", "FEI")):
        path = tmp_path / rel
        path.parent.mkdir(exist_ok=True)
        tifffile.imwrite(path, array, extratags=[(271, "s", 0, make, True)])
        views.append(segmenter_module.choose_view(ImageData(path, array, None), None, None, manifest, estimates=memory))
    assert [v.estimate_number for v in views] == [1, 1, 2, 3] and len(calls) == 3
    assert views[1].estimated_from.endswith("a/1.tif") and views[1].scaling_pixel_size_nm == pytest.approx(2.5)
    assert views[1].scaling_source == "estimated"
