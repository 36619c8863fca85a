"""The one in-memory type every importer produces."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class LabelledImage:
    """An image with its instance labels (0 = background, 1..N = mitochondria)."""

    name: str  # file stem, unique within a dataset
    path: Path
    image: np.ndarray  # HxW or HxWx3, as read (uint8/uint16/float)
    labels: np.ndarray  # HxW int32
    pixel_size_nm: float | None = None
    problems: list[str] = field(default_factory=list)  # warnings found while importing

    @property
    def n_instances(self) -> int:
        return int(len(np.unique(self.labels)) - (1 if (self.labels == 0).any() else 0))
