"""PyTorch backend: the trunk and the heads in torchvision, CPU or CUDA."""
from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection.image_list import ImageList

from ..instances import Detections


class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module, tile: int, batch: int = 1, device: str = "cpu", score_threshold: float = 0.05):
        self.model = model.eval().to(device)
        self.model.roi_heads.score_thresh = score_threshold  # filter before the costly mask head
        self.tile, self.batch, self.device = tile, batch, torch.device(device)
        mean = torch.tensor(model.transform.image_mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(model.transform.image_std, device=self.device).view(1, -1, 1, 1)
        self._mean, self._std = mean, std

    @torch.inference_mode()
    def infer(self, tiles: np.ndarray) -> list[Detections]:
        x = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32))[:, None].to(self.device)
        x = (x - self._mean) / self._std
        images = ImageList(x, [tuple(x.shape[-2:])] * x.shape[0])
        features = self.model.backbone(x)
        proposals, _ = self.model.rpn(images, features)
        results, _ = self.model.roi_heads(features, proposals, images.image_sizes)
        return [
            Detections(
                r["boxes"].float().cpu().numpy(),
                r["scores"].float().cpu().numpy(),
                r["masks"][:, 0].float().cpu().numpy(),
            )
            for r in results
        ]
