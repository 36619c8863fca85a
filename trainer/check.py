"""`mito-train --check-data`: read everything, print a summary table and every problem found.

Exit status: 0 when every image is usable (warnings allowed), 1 when some
image had to be skipped (training would refuse this dataset), 2 when the
dataset cannot be read at all.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .importers import Dataset, DatasetError, read_dataset

MAX_LINES_PER_KIND = 100
TINY_PX = 16  # instances this small are usually tracing slivers, not mitochondria
_QUANTILES = (0, 5, 25, 50, 75, 95, 100)


@dataclass
class DataSummary:
    """What a dataset holds, as numbers a table (or a test) can use."""

    format: str
    images_used: int
    images_skipped: int
    images_without_instances: int
    instances: int
    instances_per_image: list[int]
    areas_px: np.ndarray
    areas_um2: np.ndarray  # only for images with a known pixel size
    diameters_nm: np.ndarray  # equivalent-circle diameters, same images
    images_with_pixel_size: int
    pixel_sizes_nm: list[float]
    image_kinds: Counter = field(default_factory=Counter)  # "1024x768 uint8 gray" -> count
    problems_by_kind: Counter = field(default_factory=Counter)


def summarize(ds: Dataset, pixel_size_nm: float | None = None) -> DataSummary:
    """Numbers for the table; `pixel_size_nm` overrides file metadata (as --input-pixel-size does for training)."""
    areas, areas_um, diam, per_image, px_sizes = [], [], [], [], []
    kinds: Counter = Counter()
    with_px = 0
    for it in ds.items:
        ids, counts = np.unique(it.labels[it.labels > 0], return_counts=True)
        per_image.append(len(ids))
        areas.extend(counts.tolist())
        px = pixel_size_nm or it.pixel_size_nm
        if px:
            with_px += 1
            px_sizes.append(float(px))
            areas_um.extend((counts * (px / 1000) ** 2).tolist())
            diam.extend((2 * np.sqrt(counts / np.pi) * px).tolist())
        h, w = it.image.shape[:2]
        kinds[f"{w}x{h} {it.image.dtype} {'RGB' if it.image.ndim == 3 else 'gray'}"] += 1
    return DataSummary(
        format=ds.format,
        images_used=len(ds.items),
        images_skipped=len(ds.skipped),
        images_without_instances=sum(1 for n in per_image if n == 0),
        instances=len(areas),
        instances_per_image=per_image,
        areas_px=np.asarray(areas, np.float64),
        areas_um2=np.asarray(areas_um, np.float64),
        diameters_nm=np.asarray(diam, np.float64),
        images_with_pixel_size=with_px,
        pixel_sizes_nm=sorted(set(round(p, 4) for p in px_sizes)),
        image_kinds=kinds,
        problems_by_kind=Counter(p.kind for p in ds.problems),
    )


def _q(values: np.ndarray, fmt: str) -> str:
    return " / ".join(fmt.format(v) for v in np.percentile(values, _QUANTILES))


def summary_table(s: DataSummary, title: str) -> Table:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("format", s.format)
    table.add_row("images used", str(s.images_used))
    table.add_row("images skipped (errors)", f"[red]{s.images_skipped}[/]" if s.images_skipped else "0")
    table.add_row("images without instances", str(s.images_without_instances))
    for kind, n in sorted(s.image_kinds.items(), key=lambda kv: -kv[1])[:5]:
        table.add_row("  image size / type", f"{kind} x{n}")
    table.add_row("instances", str(s.instances))
    if s.instances_per_image:
        c = s.instances_per_image
        table.add_row("instances per image (min/median/max)", f"{min(c)} / {np.median(c):g} / {max(c)}")
    if s.instances:
        table.add_row("area px (min/5%/25%/median/75%/95%/max)", _q(s.areas_px, "{:.0f}"))
        tiny = int((s.areas_px < TINY_PX).sum())
        table.add_row(f"instances under {TINY_PX} px", f"[yellow]{tiny}[/]" if tiny else "0")
    if s.images_with_pixel_size:
        table.add_row("pixel size nm", ", ".join(f"{p:g}" for p in s.pixel_sizes_nm[:6]) + (" ..." if len(s.pixel_sizes_nm) > 6 else ""))
        if s.images_with_pixel_size < s.images_used:
            table.add_row("images without pixel size", f"{s.images_used - s.images_with_pixel_size} (not in the µm figures)")
        if len(s.areas_um2):
            table.add_row("area µm² (min/5%/25%/median/75%/95%/max)", _q(s.areas_um2, "{:.3g}"))
            table.add_row("equiv. diameter µm (same quantiles)", _q(s.diameters_nm / 1000, "{:.3g}"))
    else:
        table.add_row("area µm²", "unknown pixel size (files carry none; use --input-pixel-size)")
    table.add_row("problems", str(sum(s.problems_by_kind.values())))
    for kind, n in s.problems_by_kind.most_common():
        table.add_row(f"  {kind}", str(n))
    return table


def print_problems(ds: Dataset, console: Console) -> None:
    """Every problem, errors first; at most MAX_LINES_PER_KIND lines per kind, with the number left out said."""
    shown: Counter = Counter()
    left: Counter = Counter()
    skipped = set(ds.skipped)
    for p in ds.problems:
        if shown[p.kind] >= MAX_LINES_PER_KIND:
            left[p.kind] += 1
            continue
        shown[p.kind] += 1
        tag = "[red]error (image skipped)[/]" if p in skipped else "[yellow]warning[/]"
        console.print(f"{tag}: {p}", markup=True, highlight=False, soft_wrap=True)
    for kind, n in left.items():
        console.print(f"... and {n} more '{kind}' problems", highlight=False)


def check_data(folder: str, fmt: str = "auto", pixel_size_nm: float | None = None, console: Console | None = None) -> int:
    console = console or Console()
    try:
        ds = read_dataset(Path(folder), fmt)
    except DatasetError as exc:
        print(f"mito-train: error: {exc}", file=sys.stderr)
        return 2
    s = summarize(ds, pixel_size_nm)
    console.print(summary_table(s, str(folder)))
    print_problems(ds, console)
    if ds.skipped:
        console.print(f"[red]{len(ds.skipped)} image(s) cannot be used[/]: training refuses this dataset until they are fixed or removed.")
    elif not ds.items:
        console.print("[red]no images found[/]")
        return 1
    return 1 if ds.skipped else 0
