"""Build the Mask R-CNN described by a manifest, with no resizing inside the model.

The pipeline owns the scale: images arrive already at the model's pixel size
and already tiled, so torchvision's `GeneralizedRCNNTransform.resize` (which
would rescale every tile to `min_size=800`) is replaced by the identity.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

BACKBONES = {"resnet18": (resnet.resnet18, 64), "resnet34": (resnet.resnet34, 64), "resnet50": (resnet.resnet50, 256)}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one Mask R-CNN; stored in the manifest, so it is all the runtime needs."""

    backbone: str = "resnet18"
    norm: str = "group"  # "group" (train from scratch) or "frozen_batch" (fine-tune COCO weights)
    in_channels: int = 1
    fpn_channels: int = 128
    box_head_dim: int = 256
    mask_head_channels: int = 128
    mask_head_layers: int = 4
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_train: int = 500
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 500
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 128
    box_positive_fraction: float = 0.25
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    detections_per_img: int = 300
    image_mean: float = 0.5
    image_std: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        d = dict(d)
        for key in ("anchor_sizes", "aspect_ratios"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


class FixedScaleTransform(GeneralizedRCNNTransform):
    """torchvision's transform minus the resize: tiles are already at the model's scale."""

    def resize(self, image, target=None):  # noqa: D102 - identity by design
        return image, target


def _norm_layer(kind: str):
    if kind == "group":
        return lambda channels: nn.GroupNorm(min(32, channels // 4) if channels >= 8 else 1, channels)
    if kind == "frozen_batch":
        from torchvision.ops.misc import FrozenBatchNorm2d

        return FrozenBatchNorm2d
    if kind == "batch":
        return nn.BatchNorm2d
    raise ValueError(f"unknown norm {kind!r}; choose group, frozen_batch or batch")


def build_model(cfg: ModelConfig, tile_size: int = 512) -> MaskRCNN:
    """A randomly initialised two-class (background, mitochondrion) Mask R-CNN."""
    if cfg.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; choose one of {sorted(BACKBONES)}")
    factory, stem_channels = BACKBONES[cfg.backbone]
    norm = _norm_layer(cfg.norm)
    body = factory(weights=None, norm_layer=norm)
    if cfg.in_channels != 3:
        body.conv1 = nn.Conv2d(cfg.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    in_list = [stem_channels * 2**i for i in range(4)]
    fpn_norm = norm if cfg.norm == "group" else None
    backbone = BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=in_list,
        out_channels=cfg.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=fpn_norm,
    )
    anchors = AnchorGenerator(
        sizes=tuple((s,) for s in cfg.anchor_sizes),
        aspect_ratios=(tuple(cfg.aspect_ratios),) * len(cfg.anchor_sizes),
    )
    c = cfg.fpn_channels
    mask_norm = norm if cfg.norm == "group" else None
    model = MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        box_head=TwoMLPHead(c * 7 * 7, cfg.box_head_dim),
        box_predictor=FastRCNNPredictor(cfg.box_head_dim, 2),
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_positive_fraction=cfg.box_positive_fraction,
        box_score_thresh=cfg.box_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
        box_detections_per_img=cfg.detections_per_img,
        mask_head=MaskRCNNHeads(c, [cfg.mask_head_channels] * cfg.mask_head_layers, 1, norm_layer=mask_norm),
        mask_predictor=MaskRCNNPredictor(cfg.mask_head_channels, cfg.mask_head_channels, 2),
    )
    model.transform = FixedScaleTransform(
        min_size=tile_size,
        max_size=tile_size,
        image_mean=[cfg.image_mean] * cfg.in_channels,
        image_std=[cfg.image_std] * cfg.in_channels,
        size_divisible=32,
    )
    return model


CLASS_SPECIFIC_PREFIXES = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")


def adapt_state_dict(model: nn.Module, state: dict[str, torch.Tensor], reinit_class_heads: bool = True) -> tuple[dict, list[str]]:
    """Fit foreign weights (a torchvision COCO checkpoint, or ours) to `model`.

    Class-specific heads are dropped (re-initialised) when asked; an RGB first
    convolution is summed to gray; tensors whose shape does not fit are skipped
    and reported, never silently reshaped.
    """
    own = model.state_dict()
    kept, skipped = {}, []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("backbone.body.conv1") and key in own and value.ndim == 4 and value.shape[1] == 3 and own[key].shape[1] == 1:
            value = value.sum(dim=1, keepdim=True)
        if reinit_class_heads and key.startswith(CLASS_SPECIFIC_PREFIXES):
            skipped.append(f"{key} (class-specific head, re-initialised)")
            continue
        if key not in own:
            skipped.append(f"{key} (not in this architecture)")
        elif own[key].shape != value.shape:
            skipped.append(f"{key} (shape {tuple(value.shape)} != {tuple(own[key].shape)})")
        else:
            kept[key] = value.to(own[key].dtype)
    return kept, skipped
