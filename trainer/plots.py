"""PNG of training loss and validation curves (matplotlib, a training-only dependency)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(log_path: Path, png_path: Path) -> Path:
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("kind") == "train"]
    val = [r for r in rows if r.get("kind") == "validation"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps = [r["step"] for r in train]
        ax1.plot(steps, [r["loss"] for r in train], label="total", lw=1)
        for key in ("loss_mask", "loss_classifier", "loss_box_reg", "loss_objectness"):
            ax1.plot(steps, [r[key] for r in train], label=key, lw=0.7)
        ax1.set_yscale("log")
    ax1.set(xlabel="step", ylabel="loss", title="training loss")
    ax1.legend(fontsize=7)
    if val:
        steps = [r["step"] for r in val]
        for key in ("mask_AP", "mask_AP50", "f1@0.5", "f1@0.75"):
            ax2.plot(steps, [r[key] for r in val], marker="o", ms=3, label=key)
        ax2.legend(fontsize=7)
    ax2.set(xlabel="step", ylabel="score", title="validation", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
