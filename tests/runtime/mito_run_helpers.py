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


def with_data_bar(image: np.ndarray, rows: int, value: int = 0, text: int = 255, side: str = "bottom") -> np.ndarray:
    """`image` with a data bar of `rows` lines of flat `value`, two lines of text and a scale bar."""
    from PIL import Image, ImageDraw

    w = image.shape[1]
    bar = Image.new("L", (w, rows), value)
    draw = ImageDraw.Draw(bar)
    draw.text((10, rows // 5), "Print Mag: 8870x @ 51 mm   HV=80.0kV   Direct Mag: 6000x", fill=text)
    draw.text((10, rows // 2), "TEM Mode: Imaging   AMT Camera System   2:14:07 p", fill=text)
    draw.rectangle([w - w // 5, rows // 2, w - 20, rows // 2 + 4], fill=text)
    parts = [image, np.asarray(bar)] if side == "bottom" else [np.asarray(bar), image]
    return np.concatenate(parts, axis=0)
