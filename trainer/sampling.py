"""From labelled images to training crops and Mask R-CNN targets at the model's pixel size.

Each image is preprocessed by the runtime's own `prepare.preprocess`: an
instrument's data bar left out (`content.specimen_box`), the specimen
normalised by its own percentiles, rescaled. So the model is trained on the
numbers `mito-run` feeds it (it once normalised the whole frame, bar included).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..runtime.content import ContentBox, specimen_box
from ..runtime.normalize import Normalization
from ..runtime.prepare import preprocess
from ..runtime.scale import rescale_image, rescale_labels
from .importers.types import LabelledImage


@dataclass
class ScaledImage:
    name: str
    image: np.ndarray  # float32, normalised, at model pixel size: the specimen region only
    labels: np.ndarray  # int32 at model pixel size, the same region
    content: ContentBox | None = None  # the specimen region of the original frame (None: all of it)

    def specimen_labels(self, labels: np.ndarray) -> np.ndarray:
        """The original frame's `labels` on the region this image shows (at the original's resolution)."""
        return labels if self.content is None else self.content.crop(labels)


def input_pixel_size(item: LabelledImage, override_nm: float | None, default_nm: float) -> float:
    if override_nm is not None:
        return override_nm
    return item.pixel_size_nm if item.pixel_size_nm else default_nm


def scale_dataset(items: list[LabelledImage], norm: Normalization, model_px_nm: float, override_nm: float | None, default_nm: float) -> list[ScaledImage]:
    out = []
    for it in items:
        factor = input_pixel_size(it, override_nm, default_nm) / model_px_nm
        box = specimen_box(it.image)
        img = preprocess(it.image, norm, factor, box)
        labels = it.labels if box is None else box.crop(it.labels)
        out.append(ScaledImage(it.name, img, rescale_labels(labels.astype(np.int32), factor), box))
    return out


def random_crop(item: ScaledImage, size: int, rng: np.random.Generator, scale_jitter: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A `size` x `size` crop; where the image is smaller, it is mirrored, as at inference (`TileGrid.crop`).

    With `scale_jitter` J, a region of size * z (z = exp(+-J), log-uniform) is cut and resized to `size`:
    microscopes' pixel sizes are often a few % off, and estimated ones more, so the model should not
    know mitochondria by their size in pixels alone.

    Why mirrored, not a flat fill: GroupNorm's statistics span the crop, so a model trained on flat
    padding sees other activations than at inference, where small images are mirror-padded. The
    mirrored labels come along so mirrored mitochondria are positives, not background: each
    mirrored copy gets its own ids, so an object on the edge and its reflection are two objects.
    """
    if scale_jitter:
        zoom = float(np.exp(rng.uniform(-scale_jitter, scale_jitter)))
        region = max(8, int(round(size * zoom)))
        if region != size:
            img, lab = random_crop(item, region, rng)
            return _resize_square(img, size), _resize_labels(lab, size)
    h, w = item.image.shape
    r = int(rng.integers(0, max(h - size, 0) + 1))
    c = int(rng.integers(0, max(w - size, 0) + 1))
    sub_i = item.image[r : r + size, c : c + size]
    sub_l = item.labels[r : r + size, c : c + size]
    sh, sw = sub_i.shape
    if (sh, sw) == (size, size):
        return sub_i.copy(), sub_l.copy()
    pad = ((0, size - sh), (0, size - sw))
    img = np.pad(sub_i, pad, mode="symmetric").astype(np.float32, copy=False)
    lab = np.pad(sub_l, pad, mode="symmetric").astype(np.int64)
    copy_r = (np.arange(size) // sh)[:, None]  # which reflection of the crop a pixel belongs to
    copy_c = (np.arange(size) // sw)[None, :]
    copies_per_row = -(-size // sw)
    offset = (copy_r * copies_per_row + copy_c) * (int(sub_l.max()) + 1)
    lab = np.where(lab > 0, lab + offset, 0)
    return img, lab.astype(np.int32)


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    out = rescale_image(image, size / image.shape[0])
    return np.ascontiguousarray(out[:size, :size], np.float32)


def _resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    out = rescale_labels(labels, size / labels.shape[0])
    return np.ascontiguousarray(out[:size, :size], np.int32)


def labels_to_target(labels: np.ndarray, min_area: int = 6) -> dict[str, torch.Tensor]:
    """Mask R-CNN target from an instance label crop; fragments under `min_area` px are dropped."""
    ids, counts = np.unique(labels, return_counts=True)
    keep = [i for i, n in zip(ids, counts) if i != 0 and n >= min_area]
    masks = np.stack([labels == i for i in keep]) if keep else np.zeros((0,) + labels.shape, bool)
    boxes = np.zeros((len(keep), 4), np.float32)
    for k, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        boxes[k] = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
    return {
        "boxes": torch.from_numpy(boxes),
        "labels": torch.ones(len(keep), dtype=torch.int64),
        "masks": torch.from_numpy(masks.astype(np.uint8)),
    }


def crop_weights(items: list[ScaledImage], groups: list[int] | None = None, shares: list[float] | None = None) -> np.ndarray:
    """Probability of drawing each image's crop: by area, and, with `shares`, group k gets shares[k] of all crops.

    Shares let a few images of a new microscope count next to a large public set (e.g. 2 cardiac
    frames beside 140 hippocampus slices would otherwise get 2% of the crops).
    """
    area = np.array([it.image.size for it in items], np.float64)
    if shares is None:
        return area / area.sum()
    if groups is None or len(groups) != len(items):
        raise ValueError("shares need a group index per image")
    group_idx = np.asarray(groups)
    if min(shares) < 0 or sum(shares) <= 0:
        raise ValueError(f"data shares must be >= 0 with a positive sum, not {shares}")
    weights = np.zeros(len(items))
    for k, share in enumerate(shares):
        in_k = group_idx == k
        if in_k.any():
            weights[in_k] = share * area[in_k] / area[in_k].sum()
        elif share > 0:
            raise ValueError(f"data folder {k + 1} has a share of crops but no training images")
    return weights / weights.sum()
