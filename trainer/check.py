"""`mito-train --check-data`: read everything, print a summary table and every problem found."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .importers import load_dataset


def check_data(folder: str, fmt: str = "auto", pixel_size_nm: float | None = None) -> int:
    console = Console()
    items = load_dataset(Path(folder), fmt)
    areas, problems, sizes_um = [], [], []
    for it in items:
        _, counts = np.unique(it.labels[it.labels > 0], return_counts=True)
        areas.extend(counts.tolist())
        px = pixel_size_nm or it.pixel_size_nm
        if px:
            sizes_um.extend((counts * (px / 1000) ** 2).tolist())
        problems.extend(it.problems)
    table = Table(title=f"{folder}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("images", str(len(items)))
    table.add_row("images without instances", str(sum(1 for it in items if it.n_instances == 0)))
    table.add_row("instances", str(len(areas)))
    if areas:
        q = np.percentile(areas, [0, 25, 50, 75, 100])
        table.add_row("area px (min/25%/median/75%/max)", " / ".join(f"{v:.0f}" for v in q))
    if sizes_um:
        q = np.percentile(sizes_um, [0, 50, 100])
        table.add_row("area µm² (min/median/max)", " / ".join(f"{v:.4f}" for v in q))
    else:
        table.add_row("area µm²", "unknown pixel size (use --input-pixel-size)")
    table.add_row("problems", str(len(problems)))
    console.print(table)
    for p in problems:
        console.print(f"[yellow]warning[/]: {p}")
    return 0
