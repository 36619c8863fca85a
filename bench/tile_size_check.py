"""Does the tile size change what the model finds on frame-sized images? Accuracy per `--tile`, validation only.

GroupNorm statistics span the tile, so a tile size the model was not validated at can change its
detections; the held-out images themselves are smaller than a 1024 px tile (they would be padded, which
is its own effect). So the validation blocks are laid out as mosaics the size of an instrument frame at
the model's pixel size, and each mosaic is segmented with every tile size through `mito-run --backend
torch --tile N` and scored by `mito-eval`:

  lucchi   train_121 .. train_140 (20 validation slices, 5 nm) as one 5 x 4 mosaic: 5120 x 3072 px
           (2560 x 1536 model px at 10 nm; a 4864x3704 frame at 5 nm is 2432 x 1852)
  cdeep3m  sbem_050 .. sbem_053 (validation, 5.9 nm) as one 2 x 2 mosaic: 2048 x 2048 px (1208 model px)

Objects on a mosaic seam are two objects in the labels and two halves in the image, so seams count like
image borders. The test blocks are not used: a tile size chosen here is reported on them.

    python bench/tile_size_check.py --tiles 512 1024
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_holdouts import DATA, run_and_score  # noqa: E402
MOSAICS = {  # name: (dataset folder, first validation slice index, count, columns, pixel size nm)
    "lucchi": ("lucchi/train", 120, 20, 5, 5.0),
    "cdeep3m": ("cdeep3m-sbem/val", 0, 4, 2, 5.9),
}


def build_mosaic(dataset: Path, first: int, count: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and instance labels of `count` consecutive images (sorted by name) from `first`, `cols` per row."""
    from mitotally.trainer.importers import load_dataset

    items = sorted(load_dataset(dataset), key=lambda it: it.name)[first : first + count]
    if len(items) < count:
        raise SystemExit(f"{dataset}: {len(items)} images from index {first}, {count} needed")
    h, w = items[0].labels.shape
    rows = -(-count // cols)
    image = np.zeros((rows * h, cols * w), items[0].image.dtype)
    labels = np.zeros((rows * h, cols * w), np.int32)
    next_id = 0
    for k, it in enumerate(items):
        r, c = divmod(k, cols)
        gray = it.image if it.image.ndim == 2 else it.image[..., 0]
        image[r * h : (r + 1) * h, c * w : (c + 1) * w] = gray[:h, :w]
        lab = it.labels[:h, :w]
        labels[r * h : (r + 1) * h, c * w : (c + 1) * w] = np.where(lab > 0, lab + next_id, 0)
        next_id = int(labels.max())
    return image, labels


def evaluate(mosaic_dir: Path, px: float, tile: int, model: str | None, extra: list[str]) -> dict:
    args = ["--backend", "torch", "--tile", str(tile), *extra] + (["--model", model] if model else [])
    t0 = time.perf_counter()
    metrics = run_and_score(mosaic_dir, "images", px, args)
    return {"seconds": time.perf_counter() - t0, **metrics}  # mito-run and mito-eval together


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder (default: the shipped one)")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--tiles", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--only", action="append", choices=sorted(MOSAICS))
    p.add_argument("-o", "--out", help="write the metrics to this JSON file")
    args, extra = p.parse_known_args()  # anything else goes to mito-run
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or list(MOSAICS):
            folder, first, count, cols, px = MOSAICS[name]
            image, labels = build_mosaic(args.data / folder, first, count, cols)
            mosaic = Path(tmp) / name
            (mosaic / "images").mkdir(parents=True)
            (mosaic / "labels").mkdir()
            tifffile.imwrite(mosaic / "images" / f"{name}_mosaic.tif", image)
            tifffile.imwrite(mosaic / "labels" / f"{name}_mosaic.tif", labels)
            for tile in args.tiles:
                m = results.setdefault(name, {})[str(tile)] = evaluate(mosaic, px, tile, args.model, extra)
                print(f"{name:8s} {image.shape[1]}x{image.shape[0]} tile {tile:4d}: {m['gt_instances']} GT, "
                      f"F1@0.5 {m['f1@0.5']:.3f} (P {m['precision@0.5']:.3f} / R {m['recall@0.5']:.3f}) "
                      f"mask AP50 {m['mask_AP50']:.3f} AP {m['mask_AP']:.3f} area error {m['median_area_error']:.3f} "
                      f"border recall {m['recall_border']['recall'] or float('nan'):.2f}; mito-run + mito-eval {m['seconds']:.1f} s",
                      flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
