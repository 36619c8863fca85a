"""Helpers shared by the mito-run tests: a tiny model that does detect something, synthetic EM files.

The random tiny model of `conftest.tiny_model_dir` scores every proposal in a
narrow band; its score threshold is set near the top of that band so a tile
yields a handful of (meaningless) instances: enough to exercise every writer
without the cost of hundreds of masks per tile.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ellipse_labels, render_em_like  # noqa: E402,F401


def detecting_model(tiny_model_dir: Path, dest: Path, quantile: float = 97.0, threshold: float | None = None) -> Path:
    """A copy of the tiny model whose score threshold keeps the top few percent of its proposals
    (or uses `threshold`: 1.0 makes a model that never detects anything)."""
    from mitotally.runtime.backends.torch_backend import TorchBackend
    from mitotally.runtime.manifest import MANIFEST, load_model

    model, manifest = load_model(tiny_model_dir)
    rng = np.random.default_rng(7)
    tile = render_em_like(ellipse_labels((manifest.tile, manifest.tile), 6, rng), rng).astype(np.float32) / 255
    scores = TorchBackend(model, manifest.tile, 1, "cpu", 0.0).infer(tile[None])[0].scores
    if threshold is None:
        threshold = float(np.percentile(scores, quantile))
    shutil.copytree(tiny_model_dir, dest, dirs_exist_ok=True)
    (dest / MANIFEST).write_text(json.dumps(manifest.replace(score_threshold=threshold).to_dict()))
    return dest


def em_frame(shape: tuple[int, int], seed: int = 0, n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return render_em_like(ellipse_labels(shape, n, rng, axes=(6, 20)), rng)
