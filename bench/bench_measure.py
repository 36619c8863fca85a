"""Time of the measure stage on one segmented 4864x3704 frame, and the convex images inside it.

`runtime/measure.py` builds each object's convex image (for solidity and the Feret diameters) with its own
`convex_image` instead of scikit-image's `convex_hull_image`, and takes the Feret diameters from the convex
image's row and column end midpoints (`convex_outline`) instead of tracing its contour with `find_contours`;
this script times each pair on the frame's objects, checks they agree exactly, and times the whole
`measure_instances` call.

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
from mitotally.runtime.measure import convex_image, convex_outline, feret_diameters, measure_instances  # noqa: E402
from mitotally.runtime.segmenter import Segmenter  # noqa: E402
from mitotally.runtime import measure  # noqa: E402


def _traced_contour(convex: np.ndarray) -> np.ndarray:
    """The Feret points the measure stage used before `convex_outline`: the traced 0.5 iso-contour."""
    from skimage.measure import find_contours

    return np.vstack(find_contours(np.pad(convex, 2), 0.5, fully_connected="high"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from skimage.measure import find_contours, regionprops
    from skimage.morphology import convex_hull_image

    frame = synthetic_frame(0)
    seg = Segmenter(backend="onnxruntime", device="cpu", threads=args.threads, scale_estimate="off")
    instances = seg.segment(ImageData(Path("frame.tif"), frame, PIXEL_NM), PIXEL_NM).instances
    labels = paint_instances(instances, frame.shape).labels
    images = [r.image for r in regionprops(labels)]
    measure_instances(labels, frame, PIXEL_NM, {})  # imports and caches warm
    same = True
    times = {"skimage convex_hull_image": [], "convex_image": [],
             "Feret from the traced contour (find_contours)": [], "Feret from convex_outline": [],
             "measure_instances, Feret from the traced contour (before)": [],
             "measure_instances (whole stage, as shipped)": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref = [convex_hull_image(im) for im in images]
        t1 = time.perf_counter()
        ours = [convex_image(im) for im in images]
        t2 = time.perf_counter()
        traced = [feret_diameters(np.vstack(find_contours(np.pad(c, 2), 0.5, fully_connected="high"))) for c in ours]
        t3 = time.perf_counter()
        outlined = [feret_diameters(convex_outline(c)) for c in ours]
        t4 = time.perf_counter()
        measure.convex_outline = _traced_contour  # the stage as it was, for the before/after ratio
        before = measure_instances(labels, frame, PIXEL_NM, {})
        measure.convex_outline = convex_outline
        t5 = time.perf_counter()
        after = measure_instances(labels, frame, PIXEL_NM, {})
        t6 = time.perf_counter()
        same = same and repr(before) == repr(after)  # repr: NaN scores compare equal
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            times[key].append(dt)
    same = same and all(np.array_equal(a, b) for a, b in zip(ref, ours)) and traced == outlined
    print(f"\n### Measure stage, {datetime.date.today()} ({machine('cpu')})\n")
    print(f"one synthetic 4864x3704 frame at {PIXEL_NM:g} nm, {len(images)} objects, best of {args.repeats}; "
          f"convex images, Feret diameters and the stage's rows identical: {'yes' if same else 'NO'}\n")
    print("| step | s / frame |")
    print("|---|---:|")
    for key, values in times.items():
        print(f"| {key} | {min(values):.3f} |")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
