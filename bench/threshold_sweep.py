"""F1 over a grid of score thresholds from one `mito-run` per block: for choosing a threshold on validation blocks.

`mito-run` runs once per block at the lowest threshold of the grid; `mito-eval --score-threshold t` then
scores its predictions.json at every t. That equals a run at t: instances are painted by descending
score, so dropping the lower-scored ones afterwards leaves the others' pixels as they were. AP uses every
prediction, so it is the same for all t. Validation blocks by default (choose there, report on test):

    python bench/threshold_sweep.py --model models/em-mito-r18                 # the shipped path
    python bench/threshold_sweep.py --model models/em-mito-r18 --tta           # with test-time augmentation
    python bench/threshold_sweep.py --model M --grid 0.5 0.6 0.7 0.8 --split test
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_holdouts import BIN, DATA, HOLDOUTS, VALIDATION, subset  # noqa: E402

GRID = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def sweep(model: str, name: str, blocks: dict, data: Path, grid: list[float], extra: list[str]) -> dict:
    folder, image_dir, part, px = blocks[name]
    with tempfile.TemporaryDirectory() as tmp:
        gt, run = Path(tmp) / "gt", Path(tmp) / "run"
        subset(data / folder, image_dir, part, gt)
        subprocess.run([str(BIN / "mito-run"), str(gt / image_dir), "-o", str(run), "--pixel-size", f"{px}nm", "--quiet",
                        "--model", model, "--score-threshold", str(min(grid)), *extra], check=True)
        rows = {}
        for t in grid:
            out = Path(tmp) / f"m{t}.json"
            subprocess.run([str(BIN / "mito-eval"), "--gt", str(gt), "--pred", str(run / "predictions.json"), "--pixel-size",
                            str(px), "--score-threshold", str(t), "-o", str(out), "-q"], check=True)
            rows[t] = json.loads(out.read_text())["metrics"]
    return rows


def pooled_f1(metrics: list[dict]) -> float:
    tp, fp, fn = (sum(m[k] for m in metrics) for k in ("tp@0.5", "fp@0.5", "fn@0.5"))
    return 2 * tp / max(2 * tp + fp + fn, 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--only", action="append", choices=sorted(HOLDOUTS))
    p.add_argument("--grid", type=float, nargs="+", default=list(GRID))
    p.add_argument("-o", "--out", help="write every block's metrics per threshold to this JSON file")
    args, extra = p.parse_known_args()  # anything else goes to mito-run (e.g. --tta, --backend torch)
    blocks = VALIDATION if args.split == "val" else HOLDOUTS
    results = {}
    for name in [n for n in (args.only or list(blocks)) if n in blocks]:
        rows = results[name] = sweep(args.model, name, blocks, args.data, sorted(args.grid), extra)
        first = next(iter(rows.values()))
        print(f"{name}: mask AP50 {first['mask_AP50']:.3f} AP {first['mask_AP']:.3f}; F1@0.5 (P / R) by score threshold:")
        for t, m in rows.items():
            print(f"  {t:5.2f}  {m['f1@0.5']:.3f} ({m['precision@0.5']:.3f} / {m['recall@0.5']:.3f})", flush=True)
    if len(results) > 1:  # the pooled choice, as mito-train makes it: F1 of every block's matches together
        pooled = {t: pooled_f1([r[t] for r in results.values()]) for t in sorted(args.grid)}
        best = max(pooled, key=pooled.get)
        print(f"pooled F1@0.5 over the blocks is highest at {best:.2f}: {pooled[best]:.3f} "
              f"({', '.join(f'{t:.2f}: {f:.3f}' for t, f in pooled.items())})")
    if args.out:
        Path(args.out).write_text(json.dumps({k: {str(t): m for t, m in v.items()} for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
