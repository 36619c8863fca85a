"""Does the scale probe find the scale of real images, and leave alone those already at it?

Runs `estimate_pixel_size` on real images of known scale, each on its own (in
`mito-run` one estimate serves every frame of a size, folder and instrument, so
one bad estimate would mis-scale a whole folder). Groups:

- lucchi, cardiac: the training data at the default scale (5 nm); the probe
  must not move them (it moves only at >= MIN_GAIN x the default's coverage).
- sbem: CDeep3M SBEM validation slices, 5.9 nm: stay within half an octave.
- cardiac_x4: the cardiac frames upsampled 4x (a full-resolution 4864x3264
  frame): 1.25 nm.
- sbem_coarse: 2x2 mosaics of SBEM training slices downsampled 2x (11.8 nm).
- sbem_sparse_centre: 4x4 mosaics of those (2048 px, 11.8 nm) whose central
  2x2 slices have their mitochondria painted out with the slice's own
  background pixels: a frame whose centre holds no mitochondria.

Per image: the estimate, its error in octaves (log2 estimate / truth), the best
other scale's coverage as a ratio of the default's, and seconds per estimate;
per group, how many are within half an octave of the truth. Needs ../shared/data.

    python bench/scale_probe_check.py [--model DIR] [--backend onnxruntime] [--groups lucchi,cardiac_x4]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mitotally.runtime.image_io import read_image
from mitotally.runtime.normalize import to_gray
from mitotally.runtime.scale import rescale_image
from mitotally.runtime.scale_probe import MIN_GAIN, estimate_pixel_size
from mitotally.runtime.segmenter import Segmenter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GROUPS = ("lucchi", "cardiac", "sbem", "cardiac_x4", "sbem_coarse", "sbem_sparse_centre")


def _gray8(array: np.ndarray) -> np.ndarray:
    return np.clip(np.round(to_gray(array)), 0, 255).astype(np.uint8)


def _resized(array: np.ndarray, factor: float) -> np.ndarray:
    return _gray8(rescale_image(to_gray(array), factor))


def _mosaic(slices: list[np.ndarray], n: int) -> np.ndarray:
    return np.vstack([np.hstack(slices[r * n : (r + 1) * n]) for r in range(n)])


def _without_mitochondria(image: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """`image` with every labelled mitochondrion (and 3 px around it) replaced by the slice's other pixels,
    shuffled and lightly smoothed: background texture and contrast, no objects, no edges of a pasted patch."""
    from scipy import ndimage

    mito = ndimage.binary_dilation(labels > 0, iterations=3)
    filled = image.astype(np.float32)
    filled[mito] = np.random.default_rng(seed).choice(filled[~mito], size=int(mito.sum()))
    smooth = ndimage.gaussian_filter(filled, 1.0)
    return np.clip(np.round(np.where(mito, smooth, filled)), 0, 255).astype(np.uint8)


def cases(groups: tuple[str, ...]) -> Iterator[tuple[str, str, np.ndarray, float]]:
    """(group, name, image, true pixel size nm)."""
    import tifffile

    lucchi = sorted((DATA / "lucchi/train/images").glob("*.png"))
    cardiac = sorted((DATA / "seed-cardiac/Images").glob("*.jpg"))
    sbem_val = sorted((DATA / "cdeep3m-sbem/val/images").glob("*.png"))
    sbem_train = sorted((DATA / "cdeep3m-sbem/train/images").glob("*.png"))
    if not (lucchi and cardiac and sbem_val and sbem_train):
        raise SystemExit(f"images missing under {DATA}: this check needs the real data")
    if "lucchi" in groups:
        yield from (("lucchi", f.name, read_image(f).array, 5.0) for f in lucchi)
    if "cardiac" in groups:
        yield from (("cardiac", f.name, read_image(f).array, 5.0) for f in cardiac)
    if "sbem" in groups:
        yield from (("sbem", f.name, read_image(f).array, 5.9) for f in sbem_val)
    if "cardiac_x4" in groups:
        yield from (("cardiac_x4", f"{f.stem}_x4", _resized(read_image(f).array, 4.0), 1.25) for f in cardiac)
    halves = [_resized(read_image(f).array, 0.5) for f in sbem_train] if {"sbem_coarse", "sbem_sparse_centre"} & set(groups) else []
    if "sbem_coarse" in groups:
        for k in range(0, len(halves) - 3, 4):
            yield "sbem_coarse", f"{sbem_train[k].stem}_2x2", _mosaic(halves[k : k + 4], 2), 11.8
    if "sbem_sparse_centre" in groups:
        centre = (5, 6, 9, 10)  # the central 2x2 of a 4x4 mosaic
        for k in (0, 4):
            tiles = []
            for i, f in enumerate(sbem_train[k : k + 16]):
                if i in centre:
                    labels = tifffile.imread(f.parents[1] / "labels" / f"{f.stem}.tif")
                    tiles.append(_resized(_without_mitochondria(_gray8(read_image(f).array), labels, i), 0.5))
                else:
                    tiles.append(halves[k + i])
            yield "sbem_sparse_centre", f"{sbem_train[k].stem}_4x4", _mosaic(tiles, 4), 11.8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated, of {', '.join(GROUPS)}")
    args = ap.parse_args()
    groups = tuple(g for g in args.groups.split(",") if g)
    if unknown := set(groups) - set(GROUPS):
        raise SystemExit(f"unknown groups {sorted(unknown)}")
    seg = Segmenter(args.model, backend=args.backend, threads=args.threads)
    by_group: dict[str, list[tuple[float, float, float, str]]] = {}
    for group, name, image, true_nm in cases(groups):
        t0 = time.perf_counter()
        est = estimate_pixel_size(seg.backend, image, seg.manifest)
        seconds = time.perf_counter() - t0
        base = est.coverage[est.default_nm]
        other = max((v for px, v in est.coverage.items() if px != est.default_nm), default=0.0)
        ratio = other / base if base else float("inf")
        error = math.log2(est.pixel_size_nm / true_nm)
        by_group.setdefault(group, []).append((error, ratio, seconds, name))
        print(f"{group}\t{name}\t{image.shape[1]}x{image.shape[0]}\ttrue={true_nm:g}\testimate={est.pixel_size_nm:.3g}\t"
              f"octaves_off={error:+.2f}\tmoved={est.moved}\tdefault_coverage={base:.4f}\tbest_other/default={ratio:.2f}\t"
              f"region={getattr(est, 'region', None)}\ttiles={getattr(est, 'tiles', None)}\ts={seconds:.2f}", flush=True)
    print("\ngroup\timages\twithin_half_octave\tmoved\tlargest_other/default\tmedian_s\tmax_s")
    for group, rows in by_group.items():
        right = sum(abs(e) <= 0.5 for e, *_ in rows)
        moved = sum(1 for e, *_ in rows if e != 0.0) if group in ("lucchi", "cardiac") else "-"  # truth = default there
        worst = max(rows, key=lambda r: r[1])
        secs = [r[2] for r in rows]
        print(f"{group}\t{len(rows)}\t{right}\t{moved}\t{worst[1]:.2f} ({worst[3]})\t{statistics.median(secs):.2f}\t{max(secs):.2f}")
    print(f"(the probe moves at >= {MIN_GAIN}x the default's coverage)")


if __name__ == "__main__":
    main()
