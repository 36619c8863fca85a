"""A/B of the threaded box RoIAlign on CPU: the same frames through `mito-run`'s pipeline, alternating.

`runtime/backends/roi_pool.py` pools the RPN proposals on a thread pool
because torchvision's CPU RoIAlign uses one core. This script measures what
that buys end to end: for each backend it runs the pipeline on the same
synthetic 4864x3704 frames with the threaded pooler and with torchvision's own,
alternating `--repeats` times in one process (the machine's drift hits both
arms alike), and checks both find the same number of mitochondria.

    python bench/bench_roi_pool.py --frames 2 --threads 2
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

ARMS = (("onnxruntime", "int8"), ("onnxruntime", "fp32"), ("torch", "fp32"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="alternations per backend (default 2)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_roi_"))
    rows = []
    try:
        (work / "in").mkdir()
        for i in range(args.frames):
            tifffile.imwrite(work / "in" / f"f{i}.tif", synthetic_frame(i), imagej=True,
                             resolution=(1000 / PIXEL_NM, 1000 / PIXEL_NM), metadata={"unit": "um"})
        items = discover_inputs([work / "in"])
        for backend, precision in ARMS:
            seg = Segmenter(backend=backend, device="cpu", precision=precision, threads=args.threads)
            heads = seg.backend.model.roi_heads
            threaded = heads.box_roi_pool
            plain = getattr(threaded, "inner", threaded)
            seg.segment(ImageData(Path("warm-up"), synthetic_frame(99)[:800, :800], PIXEL_NM), PIXEL_NM)
            times: dict[str, list[float]] = {"threaded": [], "torchvision": []}
            counts: dict[str, set[int]] = {"threaded": set(), "torchvision": set()}
            for rep in range(args.repeats):
                for arm, pool in (("threaded", threaded), ("torchvision", plain)):
                    heads.box_roi_pool = pool
                    t0 = time.perf_counter()
                    summary = run(items, seg, work / f"out_{arm}_{rep}", RunConfig(overwrite=True))
                    times[arm].append((time.perf_counter() - t0) / args.frames)
                    counts[arm].add(summary.n_objects)
                    print(f"  {backend} {precision} {arm}: {times[arm][-1]:.2f} s/frame", file=sys.stderr, flush=True)
            heads.box_roi_pool = threaded
            a, b = np.mean(times["threaded"]), np.mean(times["torchvision"])
            rows.append((backend, precision, b, a, b / a, counts["threaded"] == counts["torchvision"], sorted(counts["threaded"])))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n### Threaded box RoIAlign, {datetime.date.today()} ({machine('cpu')})\n")
    print(f"{args.frames} synthetic 4864x3704 frames at {PIXEL_NM:g} nm, mean of {args.repeats} alternations, s per frame end to end\n")
    print("| backend | torchvision RoIAlign | threaded | speed-up | same mitochondria |")
    print("|---|---:|---:|---:|---|")
    for backend, precision, b, a, ratio, same, n in rows:
        print(f"| {backend} {precision.upper()} | {b:.2f} | {a:.2f} | {ratio:.2f}x | {'yes' if same else 'NO'} ({', '.join(map(str, n))}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
