"""Write small synthetic labelled datasets to disk in the YOLO format (no real data needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def ellipse_polygon(r, c, a, b, theta, n=48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = c + a * np.cos(t) * np.cos(theta) - b * np.sin(t) * np.sin(theta)
    y = r + a * np.cos(t) * np.sin(theta) + b * np.sin(t) * np.cos(theta)
    return np.stack([x, y], 1)


def write_yolo_dataset(root: Path, n_images: int, size: int, rng: np.random.Generator, n_objects: int = 6, axes=(7, 16)) -> Path:
    """Images of dark ellipses with membranes on gray, and their YOLO polygons."""
    from skimage.draw import polygon as draw_polygon
    from scipy import ndimage

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        occupied = np.zeros((size, size), bool)
        img = np.full((size, size), 170.0)
        lines = []
        for _ in range(n_objects * 30):
            if len(lines) == n_objects:
                break
            a, b = rng.uniform(*axes, size=2)
            r, c = rng.uniform(axes[1] + 2, size - axes[1] - 2, size=2)
            poly = ellipse_polygon(r, c, a, b, rng.uniform(0, np.pi))
            rr, cc = draw_polygon(poly[:, 1] - 0.5, poly[:, 0] - 0.5, (size, size))
            grown = ndimage.binary_dilation(_mask(rr, cc, size), iterations=3)
            if (grown & occupied).any():
                continue
            occupied |= grown
            m = _mask(rr, cc, size)
            img[m] = 95.0
            img[m & ~ndimage.binary_erosion(m, iterations=2)] = 40.0
            lines.append("0 " + " ".join(f"{v:.6f}" for v in (poly / size).reshape(-1)))
        img = ndimage.gaussian_filter(img, 0.8) + rng.normal(0, 6, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"img_{i:03d}.png")
        (root / "labels" / f"img_{i:03d}.txt").write_text("\n".join(lines) + "\n")
    return root


def _mask(rr, cc, size):
    m = np.zeros((size, size), bool)
    m[rr, cc] = True
    return m
