"""Fixtures for the mito-watch tests (helpers live in watchkit.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def watch_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """`tiny_model_dir` with a score threshold at which its random weights keep a few objects (fast, not empty)."""
    out = tmp_path_factory.mktemp("watch_model") / "model"
    shutil.copytree(tiny_model_dir, out)
    manifest = json.loads((out / "model.json").read_text())
    manifest["score_threshold"] = 0.565
    (out / "model.json").write_text(json.dumps(manifest))
    return out

