"""The daemon's processor and the scale estimate: keyed by folder and instrument, expired, and recorded.

Real code throughout (daemon, decode, the real `Segmenter` with the tiny model, records, tables, run.json);
only the scale probe is replaced, by one that says which folder it was asked about, so the test can tell
which estimate each frame used.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from mitotally.runtime.pipeline import RunConfig
from mitotally.runtime.scale_memory import WATCH_EXPIRY, Expiry
from mitotally.runtime.scale_probe import ScaleEstimate
from mitotally.runtime.segmenter import Segmenter
from mitotally.runtime.watch import cli
from mitotally.runtime.watch.config import WatchConfig
from mitotally.runtime.watch.journal import DONE
from mitotally.runtime.watch.processor import PipelineProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from watchkit import DaemonThread, frame, journal_rows, wait_for  # noqa: E402


def test_the_watch_processor_expires_scale_estimates(tmp_path, watch_model_dir):
    processor = PipelineProcessor(tmp_path / "out", RunConfig(model_dir=watch_model_dir))
    try:
        assert processor.segmenter.scale_estimates.expiry == WATCH_EXPIRY
    finally:
        processor.close()


def test_each_folder_gets_its_own_estimate_which_expires_and_is_recorded(tmp_path, watch_model_dir, monkeypatch):
    import mitotally.runtime.segmenter as segmenter_module

    asked = []

    def probe(backend, array, manifest, start_nm=None):  # stands in for the model's coverage at each scale
        asked.append(array.shape)
        moved = 2.5 if len(asked) % 2 else 5.0  # successive estimates differ, so the outputs can tell them apart
        return ScaleEstimate(moved, 5.0, {5.0: 0.1, 2.5: 0.2 if moved == 2.5 else 0.1}, array.shape[:2], 1)

    monkeypatch.setattr(segmenter_module, "estimate_pixel_size", probe)
    in_dir, out = tmp_path / "in", tmp_path / "out"
    (in_dir / "scope_a").mkdir(parents=True)
    (in_dir / "scope_b").mkdir()
    args = cli.watch_parser().parse_args([str(in_dir), "-o", str(out), "--recursive"])
    cfg = WatchConfig(in_dir=in_dir, out_dir=out, settle_s=0.3, backoff_s=0.3, max_backoff_s=2.0, tables_interval_s=0.5,
                      heartbeat_s=0.5, rescan_s=2.0, filters=cli.config_from_args(args).filters)
    segmenter = Segmenter(watch_model_dir, "torch", "cpu", scale_expiry=Expiry(max_frames=2))
    daemon = DaemonThread(cfg, lambda: PipelineProcessor(out, RunConfig(model_dir=watch_model_dir), segmenter=segmenter))
    order = ["scope_a/f1.png", "scope_a/f2.png", "scope_b/g1.png", "scope_a/f3.png"]
    for k, rel in enumerate(order):  # one at a time, so the order of estimates is known
        Image.fromarray(frame(k, shape=(64, 64))[0]).save(in_dir / rel)  # PNG: no pixel size, so it is estimated
        wait_for(lambda: (row := journal_rows(out).get(rel)) is not None and row.state == DONE, 60, f"{rel} done", daemon)
    assert daemon.stop() == 0

    records = {rel: json.loads((out / "records" / f"{rel}.json").read_text())["image_rows"][0] for rel in order}
    numbers = [records[rel]["scale_estimate"] for rel in order]
    # f1 and f2 share scope_a's estimate; scope_b is probed on its own; f3 finds scope_a's expired (2 frames)
    assert numbers == [1, 1, 2, 3] and len(asked) == 3
    assert [records[rel]["scaling_pixel_size_nm"] for rel in order] == [2.5, 2.5, 5.0, 2.5]
    assert [records[rel]["scaling_source"] for rel in order] == ["estimated", "estimated", "default", "estimated"]
    with open(out / "images.csv", newline="", encoding="utf-8") as f:
        assert {r["image"]: r["scale_estimate"] for r in csv.DictReader(f)} == dict(zip(order, ["1", "1", "2", "3"]))
    made = {e["number"]: e for e in json.loads((out / "run.json").read_text())["scale_estimates"]}
    assert sorted(made) == [1, 2, 3]
    assert Path(made[1]["estimated_from"]).name == "f1.png" and Path(made[1]["folder"]).name == "scope_a"
    assert Path(made[2]["folder"]).name == "scope_b" and Path(made[3]["estimated_from"]).name == "f3.png"
    assert made[1]["frames"] == 2 and made[3]["frames"] == 1 and np.isclose(made[1]["pixel_size_nm"], 2.5)
