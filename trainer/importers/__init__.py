"""Read a labelled dataset from a folder, whatever format the lab has."""
from __future__ import annotations

from pathlib import Path

from .types import LabelledImage
from .yolo import is_yolo, read_yolo

FORMATS = {"yolo": (is_yolo, read_yolo)}


def detect_format(folder: Path) -> str:
    for name, (probe, _) in FORMATS.items():
        if probe(Path(folder)):
            return name
    raise ValueError(f"{folder}: no known label format found (tried: {', '.join(FORMATS)}); use --format")


def load_dataset(folder: Path, fmt: str = "auto") -> list[LabelledImage]:
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    name = detect_format(folder) if fmt == "auto" else fmt
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; choose auto or one of {', '.join(FORMATS)}")
    return FORMATS[name][1](folder)
