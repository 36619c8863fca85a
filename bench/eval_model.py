"""Accuracy of a model on held-out real images through the real inference path.

Copies the validation block (the last N slices by name, never trained on) of a
labelled dataset into a temporary folder, runs `mito-run` on its images and
scores `predictions.json` with `mito-eval`. Example:

    python bench/eval_model.py --model models/em-mito-r18 --data ../shared/data/lucchi/train --val-last 25 -o eval.json
    python bench/eval_model.py --model models/em-mito-r18 --backend onnxruntime --precision int8  # INT8 trunk
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="../shared/data/lucchi/train", help="YOLO-format dataset with images/ and labels/")
    p.add_argument("--val-last", type=int, default=25, help="the last N images by name form the held-out block")
    p.add_argument("--pixel-size", default="5nm", help="pixel size of the data (Lucchi: 5 nm)")
    p.add_argument("--backend", default="torch")
    p.add_argument("--precision", default="auto", help="as mito-run --precision (int8: the model's trunk.int8.onnx on CPU)")
    p.add_argument("-o", "--out", help="write mito-eval's JSON here")
    args = p.parse_args()
    data = Path(args.data)
    images = sorted((data / "images").iterdir())[-args.val_last :]
    with tempfile.TemporaryDirectory() as tmp:
        gt = Path(tmp) / "gt"
        (gt / "images").mkdir(parents=True)
        (gt / "labels").mkdir()
        for img in images:
            shutil.copy(img, gt / "images" / img.name)
            shutil.copy(data / "labels" / f"{img.stem}.txt", gt / "labels" / f"{img.stem}.txt")
        run = Path(tmp) / "run"
        subprocess.run([str(BIN / "mito-run"), str(gt / "images"), "-o", str(run), "--model", args.model,
                        "--pixel-size", args.pixel_size, "--backend", args.backend, "--precision", args.precision, "--quiet"], check=True)
        out = Path(args.out) if args.out else Path(tmp) / "metrics.json"
        subprocess.run([str(BIN / "mito-eval"), "--gt", str(gt), "--pred", str(run / "predictions.json"), "-o", str(out)], check=True)
        metrics = json.loads(out.read_text())["metrics"]
    print(f"held-out images: {images[0].name} .. {images[-1].name} ({len(images)})")
    for key in ("mask_AP50", "mask_AP", "f1@0.5", "f1@0.75", "precision@0.5", "recall@0.5", "panoptic_quality@0.5", "mSA", "median_area_error", "foreground_iou"):
        print(f"{key:24s} {metrics.get(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
