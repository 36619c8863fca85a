"""Augmentations fit for EM, applied identically to the image and its instance labels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentConfig:
    flips: bool = True
    rot90: bool = True
    brightness: float = 0.1  # +- additive, in normalised units
    contrast: float = 0.2  # x (1 +- contrast)
    gamma: float = 0.25  # exponent in exp(+- gamma)
    noise: float = 0.04  # max gaussian sigma
    blur: float = 1.0  # max gaussian blur sigma (px), applied half the time
    invert: float = 0.0  # probability of inverting intensities (1 - x), for microscopes that show membranes bright


def augment(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Geometric transforms move image and labels together; intensity ones touch the image only."""
    if cfg.flips and rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    if cfg.flips and rng.random() < 0.5:
        image, labels = image[::-1], labels[::-1]
    if cfg.rot90:
        k = int(rng.integers(4))
        image, labels = np.rot90(image, k), np.rot90(labels, k)
    image = np.ascontiguousarray(image, dtype=np.float32)
    labels = np.ascontiguousarray(labels)
    if cfg.invert and rng.random() < cfg.invert:
        image = 1.0 - image
    if cfg.gamma:
        # normalised images run below 0 and above 1 (percentile normalisation, and inference feeds
        # them so): gamma is applied to the magnitude with the sign kept, so nothing is clipped to 0
        g = float(np.exp(rng.uniform(-cfg.gamma, cfg.gamma)))
        image = np.sign(image) * np.abs(image) ** g
    if cfg.contrast or cfg.brightness:
        c = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
        b = rng.uniform(-cfg.brightness, cfg.brightness)
        image = (image - 0.5) * c + 0.5 + b
    if cfg.blur and rng.random() < 0.5:
        image = ndimage.gaussian_filter(image, float(rng.uniform(0.3, cfg.blur)))
    if cfg.noise:
        image = image + rng.normal(0, rng.uniform(0, cfg.noise), image.shape).astype(np.float32)
    return np.clip(image, -0.5, 1.5).astype(np.float32), labels
