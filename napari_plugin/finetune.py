"""Fine-tune the current model on a training folder: `mito-train --data FOLDER --init MODEL -o OUT` as a subprocess.

A subprocess, not a thread: training holds the CPU (or GPU) and the GIL for minutes, and the viewer
must stay responsive; it also keeps the plugin free of trainer imports. The command carries the init
model's architecture, pixel size and tile (from its model.json), so `--init` loads every tensor instead
of skipping the ones of a different shape, and the new model sees images as the old one did.

Progress comes from `OUT/metrics.jsonl`, which the trainer appends every 10 steps (and at each
validation); the subprocess's own output goes to `OUT/mito-train.log`.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mitotally.runtime.manifest import MANIFEST, load_manifest
from mitotally.runtime.model import ModelConfig
from mitotally.runtime.segmenter import default_model_dir

LOG = "mito-train.log"
METRICS = "metrics.jsonl"
# the architecture options of mito-train, by ModelConfig field
_ARCH_OPTIONS = {"backbone": "--backbone", "norm": "--norm", "fpn_channels": "--fpn-channels",
                 "box_head_dim": "--box-head-dim", "mask_head_channels": "--mask-head-channels",
                 "box_batch_size_per_image": "--rois-per-image"}
# ModelConfig fields that change the weights' shapes or what they expect of their input
_WEIGHTS = ("in_channels", "mask_head_layers", "anchor_sizes", "aspect_ratios", "image_mean", "image_std")


@dataclass(frozen=True)
class FineTune:
    data: Path  # a training folder (`training_set`)
    out: Path  # the new model folder
    init: Path | None = None  # the model to start from (None: the shipped one)
    minutes: float | None = 10.0  # training time (--time-budget); or `steps`
    steps: int | None = None
    device: str = "auto"

    def command(self) -> list[str]:
        """The mito-train command line (run with this Python, so the same install trains)."""
        init = self.init_dir
        m = load_manifest(init)
        model = m.model
        shaped = [k for k in self.not_carried() if k in _WEIGHTS]
        if shaped:
            raise ValueError(f"{init}: its architecture sets {', '.join(shaped)}, which mito-train has no option for; "
                             f"fine-tune it with mito-train and a --config recipe instead")
        cmd = [sys.executable, "-m", "mitotally.trainer.cli", "--data", str(self.data), "--init", str(init),
               "-o", str(self.out), "--device", self.device]
        for key, option in _ARCH_OPTIONS.items():
            cmd += [option, str(getattr(model, key))]
        cmd += ["--pixel-size", f"{m.pixel_size_nm:g}", "--default-input-pixel-size", f"{m.default_input_pixel_size_nm:g}",
                "--tile", str(m.tile), "--overlap", str(m.overlap)]
        if self.steps:
            cmd += ["--steps", str(self.steps), "--warmup", str(min(200, max(1, self.steps // 10)))]
        elif self.minutes:
            cmd += ["--time-budget", f"{self.minutes * 60:g}"]
        else:
            raise ValueError("say how long to fine-tune: minutes or steps")
        return cmd

    @property
    def init_dir(self) -> Path:
        return Path(self.init) if self.init is not None else default_model_dir()

    def not_carried(self) -> list[str]:
        """The init model's architecture settings that mito-train has no option for and that differ from its
        defaults: the new model gets mito-train's value. Those that shape the weights (`_WEIGHTS`) refuse the
        fine-tune; the others (inference settings such as `rpn_post_nms_top_n_test`) are worth telling."""
        model = load_manifest(self.init_dir).model
        fixed = ModelConfig(**{k: getattr(model, k) for k in _ARCH_OPTIONS})
        return [k for k in model.__dataclass_fields__ if getattr(model, k) != getattr(fixed, k)]

    def start(self) -> "Training":
        return Training(self)


@dataclass(frozen=True)
class Progress:
    fraction: float  # 0..1 of the steps or time budget
    text: str  # one line for the user
    finished: bool
    ok: bool  # finished with a model written


class Training:
    """A running `mito-train`: poll it for progress, cancel it, and find its model when it is done."""

    def __init__(self, job: FineTune):
        self.job = job
        out = Path(job.out)
        out.mkdir(parents=True, exist_ok=True)
        self.command = job.command()
        self._log = open(out / LOG, "w", encoding="utf-8")
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def model_dir(self) -> Path | None:
        """The new model folder once training wrote it (model.json and weights)."""
        out = Path(self.job.out)
        return out if (out / MANIFEST).is_file() else None

    def _last_step(self) -> dict | None:
        path = Path(self.job.out) / METRICS
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line being written
            if row.get("kind") == "train":
                return row
        return None

    def _last_log_line(self) -> str:
        try:
            lines = [ln.strip() for ln in (Path(self.job.out) / LOG).read_text(encoding="utf-8").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def poll(self) -> Progress:
        code = self.process.poll()
        if code is not None:
            self._log.close()
            if code == 0 and self.model_dir is not None:
                return Progress(1.0, f"fine-tuned model written to {self.job.out}", True, True)
            return Progress(0.0, f"mito-train stopped (exit {code}): {self._last_log_line()} (see {Path(self.job.out) / LOG})",
                            True, False)
        row = self._last_step()
        if row is None:
            return Progress(0.0, "mito-train: reading the training folder and loading the model ...", False, False)
        if self.job.steps:
            fraction, of = row["step"] / self.job.steps, f"/{self.job.steps}"
        else:
            fraction, of = row["elapsed_s"] / (self.job.minutes * 60), ""
        return Progress(min(fraction, 1.0), f"step {row['step']}{of}, loss {row['loss']:.3f}, "
                                            f"{row['elapsed_s'] / 60:.1f} min trained", False, False)

    def cancel(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
