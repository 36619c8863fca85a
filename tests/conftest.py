"""Shared fixtures: real data when present (skipped with a reason otherwise), synthetic frames, a tiny model."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# `make test` runs two pytest-xdist workers on a 2-core machine: one torch thread each, so they do not
# fight over the cores (a plain `pytest` keeps two). MITO_TEST_THREADS overrides either.
_DEFAULT_THREADS = "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"
torch.set_num_threads(int(os.environ.get("MITO_TEST_THREADS", _DEFAULT_THREADS)))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MITO_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    if not torch.cuda.is_available():
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the project's real EM data); tests using it skip in a user's clone."""
    if not (SHARED_DATA / "lucchi" / "train" / "images").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set MITO_SHARED_DATA); only present in the project's workspace")
    return SHARED_DATA


def ellipse_labels(shape: tuple[int, int], n: int, rng: np.random.Generator, axes=(8, 30), avoid_overlap: bool = True) -> np.ndarray:
    """Instance label image of `n` random, non-overlapping ellipses (ids 1..k)."""
    from skimage.draw import ellipse

    labels = np.zeros(shape, np.int32)
    k = 0
    for _ in range(n * 20):
        if k == n:
            break
        a, b = rng.uniform(*axes, size=2)
        r, c = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        rr, cc = ellipse(r, c, a, b, shape=shape, rotation=rng.uniform(0, np.pi))
        if len(rr) == 0 or (avoid_overlap and labels[rr, cc].any()):
            continue
        k += 1
        labels[rr, cc] = k
    return labels


def render_em_like(labels: np.ndarray, rng: np.random.Generator, noise: float = 8.0) -> np.ndarray:
    """8-bit image: mid-gray background, dark mitochondria with a darker membrane, noise."""
    from scipy import ndimage

    img = np.full(labels.shape, 170.0)
    inside = labels > 0
    img[inside] = 90.0
    edge = inside & ~ndimage.binary_erosion(inside, iterations=2)
    img[edge] = 40.0
    img = ndimage.gaussian_filter(img, 1.0) + rng.normal(0, noise, labels.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


TINY = dict(backbone="resnet18", fpn_channels=32, box_head_dim=64, mask_head_channels=32, box_batch_size_per_image=64)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny model saved with its manifest (for plumbing tests, not accuracy)."""
    from mitotally.runtime.manifest import Manifest, save_model
    from mitotally.runtime.model import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    manifest = Manifest(model=cfg, pixel_size_nm=10.0, default_input_pixel_size_nm=10.0, tile=128, overlap=48, score_threshold=0.05)
    model = build_model(cfg, manifest.tile)
    return save_model(tmp_path_factory.mktemp("tiny_model"), manifest, model.state_dict())
