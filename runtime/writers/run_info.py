"""`run.json`: what produced the outputs (versions, model + hash, backend, device, parameters, timings).

Rewritten at the end of every run (also an interrupted one), so it always
describes the last run; each record keeps its own per-stage timings.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from ..pixel_size import PLAUSIBLE_NM
from ..scale_limit import MAX_SCALED_PIXELS, scaled_pixel_budget
from .atomic import atomic_write_bytes

PACKAGES = ("mitotally", "torch", "torchvision", "numpy", "scikit-image", "tifffile", "roifile", "pycocotools", "onnxruntime",
            "rosettasciio", "mrcfile")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def run_info(segmenter, config, summary) -> dict:
    """The run.json document; `segmenter`, `config`, `summary` as in `pipeline`."""
    m = segmenter.manifest
    processed = [r for r in summary.results if not r.skipped]
    planes = sum(len(r.image_rows) for r in processed if r.ok)
    busy = sum(summary.timings.values())
    memory = getattr(segmenter, "scale_estimates", None)  # a runtime.scale_memory.ScaleMemory
    return {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "versions": versions(),
        "platform": platform.platform(),
        "model": {
            "dir": str(segmenter.model_dir),
            "weights_sha256": segmenter.weights_sha256,
            "pixel_size_nm": m.pixel_size_nm,
            "default_input_pixel_size_nm": m.default_input_pixel_size_nm,
            "tile": m.tile,
            "overlap": m.overlap,
            "score_threshold": m.score_threshold,
            "mask_threshold": m.mask_threshold,
            "normalization": m.normalization.to_dict(),
            "metrics": m.metrics,
        },
        "backend": {
            "name": segmenter.backend.name,
            "precision": getattr(segmenter.backend, "precision", "fp32"),
            "reason": segmenter.backend_reason,
            "skipped": segmenter.backend_skipped,
            "device": segmenter.device,
            "tile": segmenter.backend.tile,
            "batch": segmenter.backend.batch,
            "tta": bool(getattr(segmenter, "tta", False)),
        },
        # every estimate made (images.csv's scale_estimate is its number); given_pixel_size_nm: null for images
        # without one, else the calibration it checked
        "scale_estimates": [r.to_dict() for r in memory.made()] if memory is not None else [],
        "calibration": calibration_info(processed),
        "config": _jsonable(asdict(config)),
        "counts": {
            "inputs": len(summary.results),
            "processed": len(processed),
            "skipped_finished": len(summary.results) - len(processed),
            "failed": len(summary.failed),
            "planes_segmented": planes,
            "mitochondria": summary.n_objects,
        },
        "interrupted": summary.interrupted,
        "wall_s": round(summary.wall_s, 3),
        "timings_s": {k: round(v, 4) for k, v in summary.timings.items()},
        "timings_share": {k: round(v / busy, 4) for k, v in summary.timings.items()} if busy else {},
        "planes_per_s": round(planes / summary.wall_s, 4) if summary.wall_s and planes else 0.0,
    }


def calibration_info(results) -> dict:
    """The calibration rules of this run, and every image whose calibration was ignored or disputed."""
    budget, why = scaled_pixel_budget()
    return {
        "plausible_pixel_size_nm": list(PLAUSIBLE_NM),
        "max_scaled_pixels": MAX_SCALED_PIXELS,
        "scaled_pixel_budget": budget, "scaled_pixel_budget_from": why,
        "notes": [{"image": row.get("image"), "plane": row.get("plane"), "pixel_size_source": row.get("pixel_size_source"),
                   "note": row["pixel_size_note"]} for r in results for row in r.image_rows if row.get("pixel_size_note")],
    }


def write_run_json(out_dir: Path, segmenter, config, summary) -> Path:
    path = Path(out_dir) / "run.json"
    atomic_write_bytes(path, json.dumps(run_info(segmenter, config, summary), indent=2, ensure_ascii=False).encode("utf-8"))
    return path
