"""Accuracy of a model on the release-3 test blocks, through the real path: `mito-run` then `mito-eval`.

The test blocks chose nothing (no checkpoint, no threshold; see models/em-mito-r18/recipe.toml):
  lucchi   ../shared/data/lucchi/train      train_141 .. train_165 (25 slices, 21+ slices from training), 5 nm
  cdeep3m  ../shared/data/cdeep3m-sbem/val  sbem_055 .. sbem_059 (another part of the stack), 5.9 nm
  cardiac  ../shared/data/seed-cardiac      Image_3, 5 nm (the model's default input pixel size)

    python bench/eval_holdouts.py --model models/em-mito-r18 -o eval.json
    python bench/eval_holdouts.py --model runs/r3 --only lucchi --score-threshold 0.5
    python bench/eval_holdouts.py --model runs/r3 --split val --tile 1024   # decide a setting on validation blocks

`--split val` evaluates the validation blocks instead (Lucchi train_121..140, CDeep3M sbem_050..054): the
place to choose a setting (tile size, proposals), which the test blocks then report.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HOLDOUTS = {  # name: (dataset folder, image folder, slice of the images sorted by name, pixel size nm)
    "lucchi": ("lucchi/train", "images", slice(-25, None), 5.0),
    "cdeep3m": ("cdeep3m-sbem/val", "images", slice(-5, None), 5.9),
    "cardiac": ("seed-cardiac", "Images", slice(-1, None), 5.0),
}
VALIDATION = {  # the blocks that chose the checkpoint and thresholds (recipe.toml): for choosing, never for reporting
    "lucchi": ("lucchi/train", "images", slice(-45, -25), 5.0),
    "cdeep3m": ("cdeep3m-sbem/val", "images", slice(-10, -5), 5.9),
}
KEYS = ("mask_AP50", "mask_AP", "f1@0.5", "precision@0.5", "recall@0.5", "median_area_error", "median_area_bias", "foreground_iou")


def _f(value) -> str:
    """A metric for the summary line; mito-eval gives None where it is undefined (no matches: no area error)."""
    return "n/a" if value is None else f"{value:.3f}"


def subset(dataset: Path, image_dir: str, part: slice, dest: Path) -> list[str]:
    """Copies the images `part` of the sorted names and, from every sibling folder, the GT entries of the same stem."""
    images = sorted(p for p in (dataset / image_dir).iterdir() if p.is_file())[part]
    stems = {p.stem for p in images}
    for folder in (p for p in dataset.iterdir() if p.is_dir()):
        for entry in folder.iterdir():
            if (entry.stem if entry.is_file() else entry.name) in stems:
                target = dest / folder.name / entry.name
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if entry.is_dir() else shutil.copy)(entry, target)
    return sorted(stems)


def evaluate_holdout(model: str, name: str, data: Path, extra: list[str], blocks: dict = HOLDOUTS) -> dict:
    folder, image_dir, last, px = blocks[name]
    with tempfile.TemporaryDirectory() as tmp:
        gt = Path(tmp) / "gt"
        stems = subset(data / folder, image_dir, last, gt)
        metrics = run_and_score(gt, image_dir, px, ["--model", model, *extra])
    return {"images": stems, "pixel_size_nm": px, "metrics": metrics}


def run_and_score(gt: Path, image_dir: str, px: float, mito_run_args: list[str]) -> dict:
    """`mito-run gt/image_dir` at `px` nm, then `mito-eval` of its predictions.json against `gt`: the metrics."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        subprocess.run([str(BIN / "mito-run"), str(gt / image_dir), "-o", str(run), "--pixel-size", f"{px}nm", "--quiet",
                        *mito_run_args], check=True)
        out = Path(tmp) / "metrics.json"
        subprocess.run([str(BIN / "mito-eval"), "--gt", str(gt), "--pred", str(run / "predictions.json"), "--pixel-size", str(px),
                        "-o", str(out), "-q"], check=True)
        return json.loads(out.read_text())["metrics"]


def _r(cell: dict) -> str:
    return "n/a" if cell["recall"] is None else f"{cell['recall']:.2f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--only", action="append", choices=sorted(HOLDOUTS), help="evaluate only these hold-outs (repeatable)")
    p.add_argument("--split", choices=("test", "val"), default="test", help="test blocks (default) or validation blocks")
    p.add_argument("-o", "--out", help="write every hold-out's metrics to this JSON file")
    args, extra = p.parse_known_args()  # anything else goes to mito-run (e.g. --score-threshold 0.5, --backend onnxruntime)
    results = {}
    blocks = VALIDATION if args.split == "val" else HOLDOUTS
    for name in [n for n in (args.only or list(blocks)) if n in blocks]:
        r = results[name] = evaluate_holdout(args.model, name, args.data, extra, blocks)
        m = r["metrics"]
        print(f"{name:8s} ({len(r['images'])} images, {m['gt_instances']} GT): " + " ".join(f"{k} {_f(m[k])}" for k in KEYS))
        sizes = " ".join(f"{b} {_r(c)} (n={c['gt']})" for b, c in m["recall_by_size_px"].items())
        print(f"         recall by size: {sizes}; border {_r(m['recall_border'])} (n={m['recall_border']['gt']}), "
              f"interior {_r(m['recall_interior'])}")
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "split": args.split, "mito_run_args": extra, "holdouts": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
