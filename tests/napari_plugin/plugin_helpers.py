"""Helpers the plugin's tests import: calibrated TIFFs, mito-run itself, and the runtime tests' detecting model."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from mito_run_helpers import detecting_model, ellipse_labels, em_frame, render_em_like  # noqa: E402,F401


def calibrated_tiff(path: Path, image: np.ndarray, nm: float) -> Path:
    """An ImageJ TIFF at `nm` per pixel, as Fiji saves one."""
    import tifffile

    tifffile.imwrite(path, image, imagej=True, resolution=(1000 / nm, 1000 / nm), metadata={"unit": "um"})
    return path


def run_mito_run(inputs: list[Path], out: Path, model: Path | None, *extra: str) -> Path:
    """`mito-run INPUT... -o OUT` through its own main(), as a user runs it."""
    from mitotally.runtime.run_cli import main

    args = [str(p) for p in inputs] + ["-o", str(out), "--quiet", *extra]
    if model is not None:
        args += ["--model", str(model)]
    assert main(args) == 0
    return out
