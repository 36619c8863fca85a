"""A copy of the tiny random model that keeps few detections per tile, so end-to-end checks stay fast."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def fast_model_copy(src: Path, dst: Path, detections_per_img: int = 20) -> Path:
    """Same weights as `src`; only the manifest's detection cap is lowered (fewer masks to paste and stitch)."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "model.safetensors", dst / "model.safetensors")
    manifest = json.loads((src / "model.json").read_text())
    manifest["model"]["detections_per_img"] = detections_per_img
    (dst / "model.json").write_text(json.dumps(manifest, indent=2))
    return dst


@pytest.fixture
def fast_model_dir(tiny_model_dir, tmp_path) -> Path:
    return fast_model_copy(tiny_model_dir, tmp_path / "model")
