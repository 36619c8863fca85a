"""Split a backend's `infer` time into trunk, RPN post-processing, box head and mask head (bench only).

Instruments one backend in place: `Heads.__call__`, the RPN's `filter_proposals`,
the RoI heads' poolers, heads, predictors and `postprocess_detections` are
wrapped with timers (module hooks or instance attributes); the trunk is `infer`
minus the heads. CPU timings are exact (everything is synchronous); on CUDA the
split is only indicative because kernels run asynchronously.

    from profile_heads import instrument
    clock = instrument(segmenter.backend)   # then run; clock.seconds holds the totals
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

STAGE_OF = {
    "rpn.filter_proposals": "rpn decode + NMS",
    "roi_heads.box_roi_pool": "box RoIAlign",
    "roi_heads.box_head": "box head",
    "roi_heads.box_predictor": "box head",
    "roi_heads.postprocess_detections": "box decode + NMS",
    "roi_heads.mask_roi_pool": "mask RoIAlign",
    "roi_heads.mask_head": "mask head",
    "roi_heads.mask_predictor": "mask head",
}


@dataclass
class Clock:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rois: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def table(self, infer_s: float) -> list[tuple[str, float]]:
        """(stage, seconds) rows: the trunk is what `infer` spent outside the heads."""
        heads = self.seconds.get("heads", 0.0)
        rows = [("trunk (backbone + FPN + RPN convs)", infer_s - heads)]
        parts = {k: v for k, v in self.seconds.items() if k != "heads"}
        rows += sorted(parts.items(), key=lambda kv: -kv[1])
        rows.append(("other heads work (anchors, box coder, sigmoid)", heads - sum(parts.values())))
        return rows


def _timed(fn, clock: Clock, stage: str, count_rois: bool = False):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        clock.seconds[stage] += time.perf_counter() - t0
        clock.calls[stage] += 1
        if count_rois and len(args) > 1:
            clock.rois[stage] += sum(len(b) for b in args[1])
        return out
    return wrapper


class _TimedHeads:
    """Stands in for a backend's `Heads`: times each call, forwards everything else."""

    def __init__(self, inner, clock: Clock):
        self._inner, self._call = inner, _timed(inner, clock, "heads")

    def __call__(self, outputs, box_filters=None):
        return self._call(outputs, box_filters)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def instrument(backend) -> Clock:
    """Wrap the heads of `backend` (torch, onnxruntime or tensorrt: all hold a `Heads` as `.heads`)."""
    clock = Clock()
    heads = backend.heads
    rpn, roi = heads.rpn, heads.roi_heads
    backend.heads = _TimedHeads(heads, clock)
    rpn.filter_proposals = _timed(rpn.filter_proposals, clock, STAGE_OF["rpn.filter_proposals"])
    roi.postprocess_detections = _timed(roi.postprocess_detections, clock, STAGE_OF["roi_heads.postprocess_detections"])
    for name in ("box_roi_pool", "box_head", "box_predictor", "mask_roi_pool", "mask_head", "mask_predictor"):
        module = getattr(roi, name, None)
        if module is None:
            continue
        stage = STAGE_OF[f"roi_heads.{name}"]
        module.forward = _timed(module.forward, clock, stage, count_rois=name.endswith("roi_pool"))
    return clock
