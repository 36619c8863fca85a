"""A/B of the seam-rule hint on CPU: the mask head only for boxes the tile keeps, same frames, alternating.

`runtime/segment.py: infer_tiles` tells the backend which boxes the stitcher's seam rule will keep, and
the backends skip the mask head for the others (the same boxes would be dropped after it). This script
runs `mito-run`'s pipeline on the same synthetic 4864x3704 frames with the hint and with a wrapper that
withholds it, alternating `--repeats` times in one process, and reports seconds per frame, the RoIs the
mask head pooled and the mitochondria found (which must be the same: tests/runtime/test_backends.py
checks the instances pixel for pixel).

    python bench/bench_seam_hint.py --frames 2 --threads 2
"""
from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import PIXEL_NM, machine, synthetic_frame  # noqa: E402

from mitotally.runtime.image_io import ImageData  # noqa: E402
from mitotally.runtime.pipeline import RunConfig, run  # noqa: E402
from mitotally.runtime.reader import discover_inputs  # noqa: E402
from mitotally.runtime.segmenter import Segmenter  # noqa: E402

ARMS = (("onnxruntime", "fp32"), ("torch", "fp32"))


class WithholdsHints:
    """The backend as it was before the hint: every box through the mask head."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.tile, self.batch = inner.name, inner.tile, inner.batch

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer(self, tiles, box_filters=None):
        return self.inner.infer(tiles)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="alternations per backend (default 2)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_hint_"))
    rows = []
    try:
        (work / "in").mkdir()
        for i in range(args.frames):
            tifffile.imwrite(work / "in" / f"f{i}.tif", synthetic_frame(i), imagej=True,
                             resolution=(1000 / PIXEL_NM, 1000 / PIXEL_NM), metadata={"unit": "um"})
        items = discover_inputs([work / "in"])
        for backend, precision in ARMS:
            seg = Segmenter(backend=backend, device="cpu", precision=precision, threads=args.threads,
                            scale_estimate="off")
            rois = [0]
            seg.backend.model.roi_heads.mask_roi_pool.register_forward_pre_hook(
                lambda module, inputs: rois.__setitem__(0, rois[0] + sum(len(b) for b in inputs[1])))
            hinted = seg.backend
            seg.segment(ImageData(Path("warm-up"), synthetic_frame(99)[:800, :800], PIXEL_NM), PIXEL_NM)
            times: dict[str, list[float]] = {"hint": [], "no hint": []}
            counts: dict[str, set[int]] = {"hint": set(), "no hint": set()}
            pooled: dict[str, int] = {}
            for rep in range(args.repeats):
                for arm, b in (("hint", hinted), ("no hint", WithholdsHints(hinted))):
                    seg.backend, rois[0] = b, 0
                    t0 = time.perf_counter()
                    summary = run(items, seg, work / f"out_{backend}_{rep}_{arm}", RunConfig(overwrite=True))
                    times[arm].append((time.perf_counter() - t0) / args.frames)
                    counts[arm].add(summary.n_objects)
                    pooled[arm] = rois[0] // args.frames
                    print(f"  {backend} {precision} {arm}: {times[arm][-1]:.2f} s/frame, {pooled[arm]} mask RoIs/frame",
                          file=sys.stderr, flush=True)
            seg.backend = hinted
            a, b = np.mean(times["hint"]), np.mean(times["no hint"])
            rows.append((backend, precision, b, a, b / a, pooled["no hint"], pooled["hint"],
                         counts["hint"] == counts["no hint"], sorted(counts["hint"])))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n### Seam-rule hint before the mask head, {datetime.date.today()} ({machine('cpu')})\n")
    print(f"{args.frames} synthetic 4864x3704 frames at {PIXEL_NM:g} nm, mean of {args.repeats} alternations, "
          "s per frame end to end, `--scale-estimate off`\n")
    print("| backend | no hint, s / frame | hint, s / frame | speed-up | mask RoIs / frame (no hint → hint) | same mitochondria |")
    print("|---|---:|---:|---:|---:|---|")
    for backend, precision, b, a, ratio, r0, r1, same, n in rows:
        print(f"| {backend} {precision.upper()} | {b:.2f} | {a:.2f} | {ratio:.2f}x | {r0} → {r1} | "
              f"{'yes' if same else 'NO'} ({', '.join(map(str, n))}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
