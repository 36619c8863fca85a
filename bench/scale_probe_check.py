"""Would the scale probe move an image that is already at the right scale?

Runs `estimate_pixel_size` on every image of the real data, each on its own
(in `mito-run` the estimate is made once per image size, on the first image
of that size, so one bad estimate would mis-scale a whole folder), and prints
per image whether it moved and the best other scale's coverage as a ratio of
the default's (the probe moves only at >= 1.3). Needs ../shared/data.

    python bench/scale_probe_check.py [--model DIR] [--backend onnxruntime]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mitotally.runtime.image_io import read_image
from mitotally.runtime.scale_probe import MIN_GAIN, estimate_pixel_size
from mitotally.runtime.segmenter import Segmenter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    files = sorted((DATA / "lucchi/train/images").glob("*.png")) + sorted((DATA / "seed-cardiac/Images").glob("*.jpg"))
    if not files:
        raise SystemExit(f"no images under {DATA}: this check needs the real data")
    seg = Segmenter(args.model, backend=args.backend, threads=args.threads)
    moved, worst = 0, (0.0, "")
    for f in files:
        est = estimate_pixel_size(seg.backend, read_image(f).array, seg.manifest)
        base = est.coverage[est.default_nm]
        other = max(v for px, v in est.coverage.items() if px != est.default_nm)
        ratio = other / base if base else float("inf")
        moved += est.moved
        worst = max(worst, (ratio, f.name))
        print(f"{f.name}\tmoved={est.moved}\tpixel_size={est.pixel_size_nm:.2f}\tdefault_coverage={base:.4f}\t"
              f"best_other/default={ratio:.2f}", flush=True)
    print(f"\n{moved} of {len(files)} images moved off the default; largest other/default ratio "
          f"{worst[0]:.2f} ({worst[1]}); the probe moves at >= {MIN_GAIN}")


if __name__ == "__main__":
    main()
