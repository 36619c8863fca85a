"""One intensity normalisation shared by the trainer and the runtime.

EM frames come as 8-bit, 16-bit, float or RGB with arbitrary contrast. Both
training and inference map them to float32 gray with robust percentiles so a
model never depends on the detector's bit depth. The parameters are stored in
the model manifest so the runtime reproduces exactly what the model saw.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Normalization:
    """Percentile normalisation: `low` percentile -> 0, `high` percentile -> 1.

    `invert` reads the image as its negative (membranes bright, as some SEM detectors and inverted stacks
    show them): the `100 - low` percentile -> 0 and the `100 - high` percentile -> 1, so an inverted copy
    `c - x` of an image `x` is normalised to exactly the numbers `x` is without it.
    """

    low: float = 1.0
    high: float = 99.8
    method: str = "percentile"
    invert: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.invert:  # manifests of models that never invert stay as they were
            del d["invert"]
        return d

    def inverted(self) -> "Normalization":
        """The same normalisation for images of the opposite contrast."""
        return replace(self, invert=not self.invert)

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        unknown = set(d) - {"low", "high", "method", "invert"}
        if unknown:
            raise ValueError(f"unknown normalization keys: {sorted(unknown)}")
        if d.get("method", "percentile") != "percentile":
            raise ValueError(f"unsupported normalization method {d['method']!r}")
        return cls(**d)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Collapse RGB(A) to one channel by averaging colour channels (EM content is gray)."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        return image[..., :3].astype(np.float32).mean(axis=-1)
    raise ValueError(f"expected a 2-D gray or HxWx3 RGB image, got shape {image.shape}")


def percentile_limits(image: np.ndarray, norm: Normalization) -> tuple[float, float]:
    """Intensity limits (what maps to 0, what maps to 1) from a subsample (fast on 20k x 20k frames, stable
    to ~0.1%); with `norm.invert` the first is the brighter."""
    gray = to_gray(image)
    step = max(1, int(np.sqrt(gray.size / 1_000_000)))
    sample = np.asarray(gray[::step, ::step], dtype=np.float32)
    q = [100.0 - norm.low, 100.0 - norm.high] if norm.invert else [norm.low, norm.high]
    lo, hi = np.percentile(sample, q)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("image contains no finite values")
    return float(lo), float(hi)


def normalize(image: np.ndarray, norm: Normalization, limits: tuple[float, float] | None = None) -> np.ndarray:
    """Map an image to float32 gray, percentiles to [0, 1]; values outside are clipped to [-0.5, 1.5].

    `limits` are (value -> 0, value -> 1): reversed (the first brighter) for inverted contrast."""
    gray = to_gray(image).astype(np.float32, copy=False)
    lo, hi = limits if limits is not None else percentile_limits(gray, norm)
    scale = 1.0 / (hi - lo) if hi != lo else (-1.0 if norm.invert else 1.0)
    out = (gray - lo) * scale
    np.clip(out, -0.5, 1.5, out=out)
    return out


PAD_VALUE = 0.5
"""Normalised value used to pad crops and edge tiles (mid-gray), in training and inference alike."""
