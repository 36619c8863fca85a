"""PyTorch backend, split into a convolutional trunk and torchvision heads.

The trunk (input normalisation + backbone + FPN + RPN head convolutions) is
~90% of the FLOPs and has static shapes, so it is what ONNX Runtime and
TensorRT run; the heads (anchors, proposal decoding, NMS, RoIAlign, box and
mask heads) have data-dependent shapes and stay in torchvision code, FP32, for
every backend. `Trunk` is what `mito-export` writes; `Heads` is what every
backend calls on the trunk's outputs.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import maskrcnn_inference
from torchvision.models.detection.rpn import concat_box_prediction_layers

from ..instances import Detections
from . import BoxFilter
from .roi_pool import thread_roi_pooling
from .streams import CudaLane, Pipeline, batch_filters, padded_batches

INPUT_NAME = "tiles"


@contextlib.contextmanager
def strict_fp32():
    """FP32 that is FP32: CUDA convolutions and matmuls use TF32 (10-bit mantissa) by default on
    Ampere and later, so an "FP32 reference" would itself be reduced precision. Restores the flags after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class Trunk(nn.Module):
    """Normalised tiles (B, 1, T, T) -> FPN features, RPN objectness and box deltas per level."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone = model.backbone
        self.rpn_head = model.rpn.head
        mean, std = model.transform.image_mean, model.transform.image_std
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.feature_names = tuple(_feature_names(model.backbone))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = (x - self.mean) / self.std
        features = list(self.backbone(x).values())
        objectness, deltas = self.rpn_head(features)
        return (*features, *objectness, *deltas)

    @property
    def output_names(self) -> list[str]:
        """Names of the ONNX/TensorRT outputs, in `forward`'s order."""
        levels = self.feature_names
        return [f"feat_{n}" for n in levels] + [f"objectness_{n}" for n in levels] + [f"deltas_{n}" for n in levels]


def _feature_names(backbone: nn.Module) -> list[str]:
    """The FPN's level names (e.g. '0'..'3', 'pool'), read from a dry run: the RoI pooler keys on them."""
    was_training = backbone.training
    p = next(backbone.parameters())
    with torch.inference_mode():
        names = list(backbone.eval()(torch.zeros(1, p.shape[1] if p.ndim == 4 else 1, 64, 64, device=p.device, dtype=p.dtype)).keys())
    backbone.train(was_training)
    return names


class Heads:
    """torchvision's RPN post-processing and RoI heads on trunk outputs, in FP32 (decoding and NMS stay exact)."""

    def __init__(self, model: nn.Module, feature_names: Sequence[str], tile: int):
        self.rpn, self.roi_heads = model.rpn, model.roi_heads
        self.feature_names, self.tile = tuple(feature_names), tile
        self._anchors: dict[tuple, list[torch.Tensor]] = {}

    def __call__(self, outputs: Sequence[torch.Tensor],
                 box_filters: Sequence[BoxFilter | None] | None = None) -> list[dict[str, torch.Tensor]]:
        """`outputs`: the trunk's outputs in `Trunk.output_names` order (any float dtype); `box_filters`: one
        per tile of the batch (None: keep all), applied to the final boxes before the mask head."""
        if self.rpn.training or self.roi_heads.training:
            raise RuntimeError("Heads needs the model in eval mode (training-mode RPN/RoI heads expect targets)")
        n = len(self.feature_names)
        outputs = [o.float() for o in outputs]
        features = OrderedDict(zip(self.feature_names, outputs[:n]))
        objectness, deltas = outputs[n : 2 * n], outputs[2 * n : 3 * n]
        b = outputs[0].shape[0]
        images = ImageList(outputs[0].new_zeros(()).expand(b, 1, self.tile, self.tile), [(self.tile, self.tile)] * b)
        anchors = self._anchors_for(images, outputs[:n])
        per_level = [o[0].numel() for o in objectness]  # A*H*W, as in RegionProposalNetwork.forward
        obj, dlt = concat_box_prediction_layers(objectness, deltas)
        proposals = self.rpn.box_coder.decode(dlt, anchors).view(b, -1, 4)
        boxes, _ = self.rpn.filter_proposals(proposals, obj, images.image_sizes, per_level)
        if box_filters is None:
            results, _ = self.roi_heads(features, boxes, images.image_sizes)
            return results
        return self._roi_heads(features, boxes, images.image_sizes, box_filters)

    def _roi_heads(self, features, proposals, image_sizes, box_filters) -> list[dict[str, torch.Tensor]]:
        """torchvision's `RoIHeads.forward` in eval mode, with each tile's boxes filtered between the box
        and the mask head: RoIAlign, the mask head and pasting are per box, so the boxes kept get the same
        masks as without the filter, and the mask head runs on fewer RoIs."""
        h = self.roi_heads
        box_features = h.box_head(h.box_roi_pool(features, proposals, image_sizes))
        class_logits, box_regression = h.box_predictor(box_features)
        boxes, scores, labels = h.postprocess_detections(class_logits, box_regression, proposals, image_sizes)
        for i, keep_of in enumerate(box_filters):
            if keep_of is not None and len(boxes[i]):
                keep = torch.from_numpy(np.asarray(keep_of(boxes[i].cpu().numpy()), dtype=bool)).to(boxes[i].device)
                boxes[i], scores[i], labels[i] = boxes[i][keep], scores[i][keep], labels[i][keep]
        results = [{"boxes": b, "labels": l, "scores": sc} for b, l, sc in zip(boxes, labels, scores)]
        mask_logits = h.mask_predictor(h.mask_head(h.mask_roi_pool(features, boxes, image_sizes)))
        for r, probs in zip(results, maskrcnn_inference(mask_logits, labels)):
            r["masks"] = probs
        return results

    def _anchors_for(self, images: ImageList, features: list[torch.Tensor]) -> list[torch.Tensor]:
        key = (images.tensors.shape[0], features[0].device, tuple(tuple(f.shape[-2:]) for f in features))
        if key not in self._anchors:  # static tiles: the anchors never change
            self._anchors[key] = self.rpn.anchor_generator(images, features)
        return self._anchors[key]


def to_detections(results: list[dict[str, torch.Tensor]]) -> list[Detections]:
    return [
        Detections(r["boxes"].float().cpu().numpy(), r["scores"].float().cpu().numpy(), r["masks"][:, 0].float().cpu().numpy())
        for r in results
    ]


class TorchBackend:
    """Trunk and heads in PyTorch; on CUDA, batches flow through a stream pipeline (optional FP16 trunk).

    `infer` takes any number of tiles: they are cut into static batches of
    `batch` (the last one padded) and, on CUDA, up to `streams` batches are in
    flight so the copy and trunk of batch k+1 overlap the heads of batch k.
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        tile: int,
        batch: int = 1,
        device: str = "cpu",
        score_threshold: float = 0.05,
        precision: str = "fp32",
        channels_last: bool = False,
        streams: int = 2,
    ):
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
        self.device = torch.device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device (FP16 convolutions on CPU are slower, not faster)")
        self.model = model.eval().to(self.device)
        self.model.roi_heads.score_thresh = score_threshold  # filter before the costly mask head
        if self.device.type == "cpu":
            thread_roi_pooling(self.model.roi_heads)
        self.tile, self.batch, self.precision = tile, batch, precision
        self.trunk = Trunk(self.model).to(self.device)
        self.channels_last = channels_last
        if self.channels_last:
            self.trunk.to(memory_format=torch.channels_last)
        self.heads = Heads(self.model, self.trunk.feature_names, tile)
        self._pipeline = None
        self.tiles_per_call = batch  # tiles per `infer` call worth passing at once (more on CUDA, see below)
        if self.device.type == "cuda":
            lanes = [CudaLane.create(batch, tile, self.device) for _ in range(max(1, streams))]
            self._pipeline = Pipeline(lanes, self._submit, self._finish)
            self.tiles_per_call = 4 * batch * len(lanes)  # lanes fill once, then stay busy for 3 rounds

    @torch.inference_mode()
    def infer(self, tiles: np.ndarray, box_filters: Sequence[BoxFilter] | None = None) -> list[Detections]:
        jobs = padded_batches(tiles, self.batch)
        if self._pipeline is not None:  # CUDA lanes: box filters not applied yet (a hint, see Backend)
            return [d for dets in self._pipeline.map(jobs) for d in dets]
        out: list[Detections] = []
        for (batch, n), filters in zip(jobs, batch_filters(box_filters, len(tiles), self.batch)):
            x = torch.from_numpy(batch)[:, None].to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out.extend(to_detections(self.heads(self.trunk(x), filters))[:n])
        return out

    def _submit(self, lane: CudaLane, job: tuple[np.ndarray, int]):
        batch, n = job
        x = lane.upload(batch)
        with torch.cuda.stream(lane.stream), torch.autocast("cuda", torch.float16, enabled=self.precision == "fp16"):
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.trunk(x), n

    def _finish(self, lane: CudaLane, handle) -> list[Detections]:
        outputs, n = handle
        with torch.cuda.stream(lane.stream):
            return to_detections(self.heads(outputs))[:n]
