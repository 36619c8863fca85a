"""Validation picks the thresholds the runtime will use, running the network once per image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mitotally.runtime.instances import Detections
from mitotally.trainer import validation
from mitotally.trainer.importers.types import LabelledImage
from mitotally.trainer.sampling import ScaledImage


class OneDiscDetector:
    """Test double for the network: one box around the disc, mask probabilities `inside` on the
    inscribed disc and `outside` elsewhere in the box. Counts its calls."""

    def __init__(self, box, inside: float, outside: float, tile: int = 64):
        self.tile, self.batch, self.calls = tile, 1, 0
        self.box, self.inside, self.outside = np.array([box], np.float32), inside, outside

    def infer(self, tiles, box_filters=None):
        self.calls += 1
        yy, xx = np.mgrid[:28, :28] + 0.5
        disc = (yy - 14) ** 2 + (xx - 14) ** 2 <= 14**2
        probs = np.where(disc, self.inside, self.outside).astype(np.float32)[None]
        return [Detections(self.box, np.array([0.97], np.float32), probs) for _ in tiles]


def test_mask_threshold_is_chosen_by_mask_ap_and_the_network_runs_once(monkeypatch):
    yy, xx = np.mgrid[:64, :64] + 0.5
    labels = (((yy - 32) ** 2 + (xx - 32) ** 2) <= 10**2).astype(np.int32)  # a disc of radius 10 at the centre
    item = LabelledImage("a", Path("a.png"), np.zeros((64, 64), np.uint8), labels)
    scaled = ScaledImage("a", np.zeros((64, 64), np.float32), labels)
    # probabilities 0.45 on the disc, 0.3 around it: only a threshold of 0.4 recovers the disc
    fake = OneDiscDetector((22, 22, 42, 42), inside=0.45, outside=0.3)
    monkeypatch.setattr(validation, "TorchBackend", lambda *a, **k: fake)
    metrics = validation.validate(torch.nn.Identity(), [scaled], [item], tile=64, overlap=16, factors=[1.0], device="cpu")
    assert fake.calls == 1
    assert metrics["mask_threshold"] == 0.4
    assert metrics["f1@0.5"] == 1.0 and metrics["mask_AP50"] > 0.99
    assert metrics["score_threshold"] in validation.SCORE_CANDIDATES

    # 0.65 on the disc, 0.45 around it: 0.5 and 0.6 both give the disc; on a tie 0.5 stays
    fake = OneDiscDetector((22, 22, 42, 42), inside=0.65, outside=0.45)
    monkeypatch.setattr(validation, "TorchBackend", lambda *a, **k: fake)
    metrics = validation.validate(torch.nn.Identity(), [scaled], [item], tile=64, overlap=16, factors=[1.0], device="cpu")
    assert metrics["mask_threshold"] == 0.5
