"""Threaded RoIAlign: the same pooled features as torchvision's, in the same order; only for CPU inference."""
from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from mitotally.runtime.backends.roi_pool import ThreadedRoIAlign, thread_roi_pooling


def _features(batch: int) -> OrderedDict:
    g = torch.Generator().manual_seed(0)
    return OrderedDict((name, torch.randn(batch, 8, 128 // 2**k, 128 // 2**k, generator=g)) for k, name in enumerate("0123"))


def _boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 400
    wh = 4 + torch.rand(n, 2, generator=g) * 200  # small and large boxes: every FPN level gets some
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("counts", [[500], [300, 0, 170], [40]])
def test_threaded_pooling_is_identical_to_torchvision(counts):
    inner = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2).eval()
    threaded = ThreadedRoIAlign(inner, threads=3).eval()
    x = _features(len(counts))
    boxes = [_boxes(n, i) for i, n in enumerate(counts)]
    shapes = [(512, 512)] * len(counts)
    with torch.inference_mode():
        expected = inner(x, boxes, shapes)
        got = threaded(x, boxes, shapes)
        assert threaded._pool is not None or sum(counts) < 64  # the threads really ran for the large cases
    assert torch.equal(got, expected)


def test_training_and_autograd_use_torchvision_directly():
    inner = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    threaded = ThreadedRoIAlign(inner, threads=2)
    assert threaded.training  # follows the pooler it wraps (a new module is in training mode)
    x = {k: v.requires_grad_() for k, v in _features(1).items()}
    out = threaded(x, [_boxes(200, 0)], [(512, 512)])
    out.sum().backward()  # gradients flow: pooled by torchvision in this thread
    assert x["0"].grad is not None and threaded._pool is None


def test_wrapping_is_idempotent_and_the_model_still_copies():
    from torchvision.models.detection.roi_heads import RoIHeads

    heads = RoIHeads(MultiScaleRoIAlign(["0"], 7, 2), torch.nn.Identity(), torch.nn.Identity(), 0.5, 0.5, 64, 0.25, None, 0.05, 0.5, 100)
    heads.eval()
    thread_roi_pooling(heads, threads=2)
    first = heads.box_roi_pool
    thread_roi_pooling(heads, threads=2)
    assert isinstance(first, ThreadedRoIAlign) and heads.box_roi_pool is first and not first.training
    with torch.inference_mode():
        for _ in range(2):  # the first call sets the pooler's level scales, single-threaded
            first(_features(1), [_boxes(300, 1)], [(512, 512)])
    assert first._pool is not None
    clone = copy.deepcopy(heads)  # a live thread pool is never copied
    assert clone.box_roi_pool._pool is None and clone.box_roi_pool.threads == 2
    single = RoIHeads(MultiScaleRoIAlign(["0"], 7, 2), torch.nn.Identity(), torch.nn.Identity(), 0.5, 0.5, 64, 0.25, None, 0.05, 0.5, 100)
    thread_roi_pooling(single, threads=1)
    assert isinstance(single.box_roi_pool, MultiScaleRoIAlign)  # one thread: nothing to spread
