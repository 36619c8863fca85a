"""Time of the measure stage on one segmented 4864x3704 frame, and the convex images inside it.

`runtime/measure.py` builds each object's convex image (for solidity and the Feret diameters) with its own
`convex_image` instead of scikit-image's `convex_hull_image`; this script times both on the frame's
objects, checks they agree pixel for pixel, and times the whole `measure_instances` call.

    python bench/bench_measure.py --threads 1
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import PIXEL_NM, machine, synthetic_frame  # noqa: E402

from mitotally.runtime.image_io import ImageData  # noqa: E402
from mitotally.runtime.instances import paint_instances  # noqa: E402
from mitotally.runtime.measure import convex_image, measure_instances  # noqa: E402
from mitotally.runtime.segmenter import Segmenter  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from skimage.measure import regionprops
    from skimage.morphology import convex_hull_image

    frame = synthetic_frame(0)
    seg = Segmenter(backend="onnxruntime", device="cpu", threads=args.threads, scale_estimate="off")
    instances = seg.segment(ImageData(Path("frame.tif"), frame, PIXEL_NM), PIXEL_NM).instances
    labels = paint_instances(instances, frame.shape).labels
    images = [r.image for r in regionprops(labels)]
    measure_instances(labels, frame, PIXEL_NM, {})  # imports and caches warm
    times = {"skimage convex_hull_image": [], "convex_image": [], "measure_instances (whole stage)": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref = [convex_hull_image(im) for im in images]
        t1 = time.perf_counter()
        ours = [convex_image(im) for im in images]
        t2 = time.perf_counter()
        measure_instances(labels, frame, PIXEL_NM, {})
        t3 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[key].append(dt)
    same = all(np.array_equal(a, b) for a, b in zip(ref, ours))
    print(f"\n### Measure stage, {datetime.date.today()} ({machine('cpu')})\n")
    print(f"one synthetic 4864x3704 frame at {PIXEL_NM:g} nm, {len(images)} objects, best of {args.repeats}; "
          f"convex images identical: {'yes' if same else 'NO'}\n")
    print("| step | s / frame |")
    print("|---|---:|")
    for key, values in times.items():
        print(f"| {key} | {min(values):.3f} |")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
