"""The in-memory types every importer produces: labelled images, problems, and the dataset report."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Problem kinds. Those in SKIP_KINDS make an image unusable (it is left out and
# listed in `Dataset.skipped`); every other kind keeps the image and flags it.
UNREADABLE = "unreadable file"
SIZE_MISMATCH = "label size differs from image size"
BAD_LABELS = "invalid label values"
NO_LABELS = "image without labels"
NO_INSTANCES = "labels without instances"
CLIPPED = "shape outside the image (clipped)"
OVERLAP = "overlapping instances (smaller keeps the pixels)"
BAD_SHAPE = "invalid shape (dropped)"
EMPTY_MASK = "empty mask (dropped)"
EXTRA_PARTS = "mask in several parts (largest kept)"
MULTIPART = "instance in several parts (kept as one)"
EXTRA_PAGES = "several pages (first used)"
BINARY_SPLIT = "binary mask split into connected components"
IGNORED = "annotations ignored"
MERGED_CLASSES = "several classes read as mitochondria"
ORPHAN = "labels without an image (ignored)"
DUPLICATE = "duplicate image name"
SKIP_KINDS = frozenset({UNREADABLE, SIZE_MISMATCH, BAD_LABELS, DUPLICATE})


@dataclass(frozen=True)
class Problem:
    """One finding while importing: which file, what kind, and the detail a user needs to fix it."""

    file: str  # path relative to the dataset folder, optionally with ':line'
    kind: str  # one of the constants above
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.file}: {self.kind}" + (f": {self.detail}" if self.detail else "")

    @property
    def skips_image(self) -> bool:
        return self.kind in SKIP_KINDS


@dataclass
class LabelledImage:
    """An image with its instance labels (0 = background, 1..N = mitochondria)."""

    name: str  # file stem, unique within a dataset
    path: Path
    image: np.ndarray  # HxW or HxWx3, as read (uint8/uint16/float)
    labels: np.ndarray  # HxW int32
    pixel_size_nm: float | None = None
    problems: list[Problem] = field(default_factory=list)  # warnings found while importing (image kept)

    @property
    def n_instances(self) -> int:
        lab = self.labels
        if lab.size and lab.min() >= 0 and lab.max() < 1 << 22:
            return int(np.count_nonzero(np.bincount(lab.ravel())[1:]))
        return int(len(np.unique(lab)) - (1 if (lab == 0).any() else 0))


@dataclass
class Dataset:
    """Everything an importer found: usable images, images it had to leave out, and dataset-wide notes."""

    root: Path
    format: str
    items: list[LabelledImage] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)  # one per image left out, naming the cause
    notes: list[Problem] = field(default_factory=list)  # problems not tied to a kept image (orphans, ignored files)

    @property
    def problems(self) -> list[Problem]:
        """Every problem: skipped images first, then dataset notes, then per-image warnings."""
        return [*self.skipped, *self.notes, *(p for it in self.items for p in it.problems)]


class DatasetError(ValueError):
    """A dataset that cannot be used as a whole (missing folder, unknown format, or images that had to be skipped)."""
