"""The training loop: plain functions, resumable, time-budgeted, validated by mask AP."""
from __future__ import annotations

import json
import math
import os
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..runtime.manifest import Manifest, save_model
from ..runtime.model import ModelConfig, adapt_state_dict, build_model
from ..runtime.normalize import Normalization
from .augment import AugmentConfig, augment
from .config import TrainConfig
from .importers import load_dataset
from .importers.types import LabelledImage
from .sampling import crop_weights, input_pixel_size, labels_to_target, random_crop, scale_dataset
from .split import split_by_block, validation_only
from .validation import validate

LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but PyTorch sees no CUDA GPU (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return name


def model_config_from(cfg: TrainConfig) -> ModelConfig:
    return ModelConfig(backbone=cfg.backbone, norm=cfg.norm, fpn_channels=cfg.fpn_channels, box_head_dim=cfg.box_head_dim,
                       mask_head_channels=cfg.mask_head_channels, box_batch_size_per_image=cfg.box_batch_size_per_image)


def lr_at(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay over the run's progress (steps or time budget) to 2% of base."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup))
    cos = 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * warm * cos


def code_version() -> str:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


@dataclass
class TrainState:
    step: int = 0
    elapsed: float = 0.0
    best_ap: float = -1.0
    history: list = field(default_factory=list)


def _checkpoint_path(out: Path) -> Path:
    return out / "checkpoints" / "last.pt"


def save_checkpoint(out: Path, model, optimizer, state: TrainState, rng: np.random.Generator, cfg: TrainConfig) -> None:
    path = _checkpoint_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": state.step, "elapsed": state.elapsed, "best_ap": state.best_ap,
        "history": json.dumps(state.history),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "python_rng": json.dumps(random.getstate()),
        "torch_rng": torch.get_rng_state(),
        "config": json.dumps(cfg.to_dict()),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(out: Path, model, optimizer, rng: np.random.Generator) -> TrainState:
    payload = torch.load(_checkpoint_path(out), map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    rng.bit_generator.state = json.loads(payload["numpy_rng"])
    pystate = json.loads(payload["python_rng"])
    random.setstate((pystate[0], tuple(pystate[1]), pystate[2]))
    torch.set_rng_state(payload["torch_rng"])
    return TrainState(payload["step"], payload["elapsed"], payload["best_ap"], json.loads(payload["history"]))


def load_init(model, path: str) -> list[str]:
    """Local weights for --init: one of our model folders/safetensors, one of our training checkpoints
    (`OUT/checkpoints/last.pt`: weights only, a fresh optimiser), or a torchvision .pth state dict."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
        ours = (p.parent / "model.json").exists()
    else:
        state = torch.load(p, map_location="cpu", weights_only=True)
        ours = isinstance(state, dict) and "config" in state and "step" in state  # written by save_checkpoint
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
    # our own models already have the 2 classes: keep their heads when fine-tuning
    kept, skipped = adapt_state_dict(model, state, reinit_class_heads=not ours)
    model.load_state_dict(kept, strict=False)
    return skipped


def data_summary(items: list[LabelledImage]) -> dict:
    n = [it.n_instances for it in items]
    return {"images": len(items), "instances": int(sum(n)), "names": [it.name for it in items][:5] + (["..."] if len(items) > 5 else [])}


def load_and_split(cfg: TrainConfig, on_message: Callable[[str], None]) -> tuple[list[LabelledImage], list[LabelledImage], list[int]]:
    """Each data folder is read and split into its own train/validation blocks (a folder with data share 0
    only validates); returns which folder each training image came from. A per-folder input pixel size
    is written into its images, so scaling needs no other override."""
    folders = cfg.data_folders
    if cfg.data_share is not None and len(cfg.data_share) != len(folders):
        raise ValueError(f"data_share has {len(cfg.data_share)} values for {len(folders)} data folders")
    shares = cfg.data_share or [None] * len(folders)
    pixel_sizes = cfg.per_folder("input_pixel_size_nm")
    train_items, val_items, groups = [], [], []
    per_folder = zip(folders, cfg.val_last_per_folder(), cfg.per_folder("val_gap"), cfg.per_folder("test_last"), shares, pixel_sizes)
    for k, (folder, val_last, gap, test_last, share, px) in enumerate(per_folder):
        items = load_dataset(Path(folder), cfg.format)
        if not items:
            raise ValueError(f"{folder}: no labelled images found")
        if px is not None:
            items = [replace(it, pixel_size_nm=float(px)) for it in items]
        n_problems = sum(len(it.problems) for it in items)
        if n_problems:
            on_message(f"{folder}: {n_problems} data warnings (overlaps, clipped polygons, ...): see mito-train --data {folder} --check-data")
        if share == 0:
            tr, va = [], validation_only(items, test_last)
        else:
            tr, va = split_by_block(items, val_last, cfg.val_fraction, gap, test_last)
        train_items += tr
        val_items += va
        groups += [k] * len(tr)
    return train_items, val_items, groups


def train(cfg: TrainConfig, on_step: Callable[[dict], None] | None = None, on_message: Callable[[str], None] = print) -> Path:
    """Train and write OUT/model.safetensors + OUT/model.json (best by validation mask AP)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    train_items, val_items, train_groups = load_and_split(cfg, on_message)
    norm = Normalization()
    # per-folder pixel sizes are already in the items (load_and_split)
    train_scaled = scale_dataset(train_items, norm, cfg.pixel_size_nm, None, cfg.default_input_pixel_size_nm)
    val_scaled = scale_dataset(val_items, norm, cfg.pixel_size_nm, None, cfg.default_input_pixel_size_nm)
    val_factors = [cfg.pixel_size_nm / input_pixel_size(it, None, cfg.default_input_pixel_size_nm) for it in val_items]
    weights = crop_weights(train_scaled, train_groups, cfg.data_share)
    steps_per_epoch = max(1, round(sum(s.image.size for s in train_scaled) / (cfg.crop**2 * cfg.batch)))
    total_steps = cfg.steps or (round(cfg.epochs * steps_per_epoch) if cfg.epochs else None)
    if total_steps is None and cfg.time_budget is None:
        raise ValueError("say how long to train: --steps, --epochs or --time-budget")
    total_for_schedule = total_steps or 10**9
    val_every = cfg.val_every or steps_per_epoch

    mcfg = model_config_from(cfg)
    model = build_model(mcfg, cfg.tile).to(device)
    if cfg.init and not cfg.resume:
        skipped = load_init(model, cfg.init)
        on_message(f"--init {cfg.init}: loaded; {len(skipped)} tensors re-initialised or skipped")
    model.train()
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    state = TrainState()
    if cfg.resume and _checkpoint_path(out).exists():
        state = load_checkpoint(out, model, optimizer, rng)
        on_message(f"resumed from step {state.step} ({state.elapsed / 60:.1f} min trained)")
    use_amp = cfg.amp and device == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    aug = AugmentConfig(invert=cfg.invert)
    base_manifest = Manifest(model=mcfg, normalization=norm, pixel_size_nm=cfg.pixel_size_nm,
                             default_input_pixel_size_nm=cfg.default_input_pixel_size_nm, tile=cfg.tile, overlap=cfg.overlap,
                             training={"config": cfg.to_dict(), "train_data": data_summary(train_items),
                                       "validation_data": data_summary(val_items), "code_version": code_version()})
    log_path = out / "metrics.jsonl"

    def run_validation() -> None:
        if not val_items:
            save_model(out, base_manifest.replace(metrics={"note": "no validation images", "step": state.step}), model.state_dict())
            return
        metrics = validate(model, val_scaled, val_items, cfg.tile, cfg.overlap, val_factors, device)
        metrics.update(step=state.step, elapsed_s=round(state.elapsed, 1), kind="validation")
        state.history.append(metrics)
        with open(log_path, "a") as f:
            f.write(json.dumps(metrics) + "\n")
        on_message(f"step {state.step}: val mask AP {metrics['mask_AP']:.3f} AP50 {metrics['mask_AP50']:.3f} F1@0.5 {metrics['f1@0.5']:.3f} (score>={metrics['score_threshold']}, mask>={metrics['mask_threshold']})")
        if metrics["mask_AP"] > state.best_ap:
            state.best_ap = metrics["mask_AP"]
            manifest = base_manifest.replace(metrics={k: v for k, v in metrics.items() if k != "count_error"},
                                             score_threshold=metrics["score_threshold"], mask_threshold=metrics["mask_threshold"])
            save_model(out, manifest, model.state_dict())

    t_last = time.monotonic()
    last_val_step = state.step
    while True:
        progress = state.step / total_for_schedule
        if cfg.time_budget:
            progress = max(progress, state.elapsed / cfg.time_budget)
        if (total_steps is not None and state.step >= total_steps) or (cfg.time_budget and state.elapsed >= cfg.time_budget):
            break
        lr = lr_at(state.step, progress, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        images, targets = [], []
        for _ in range(cfg.batch):
            item = train_scaled[int(rng.choice(len(train_scaled), p=weights))]
            img, lab = augment(*random_crop(item, cfg.crop, rng, cfg.scale_jitter), rng, aug)
            images.append(torch.from_numpy(img)[None].to(device))
            targets.append({k: v.to(device) for k, v in labels_to_target(lab, cfg.min_instance_area).items()})
        with torch.autocast("cuda", enabled=use_amp):
            losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {state.step}: loss is {loss.item()}; lower --lr or check the labels")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        now = time.monotonic()
        state.elapsed += now - t_last
        t_last = now
        state.step += 1
        row = {"kind": "train", "step": state.step, "lr": lr, "loss": loss.item(), "grad_norm": float(grad_norm),
               "elapsed_s": round(state.elapsed, 2), **{k: v.item() for k, v in losses.items()}}
        if state.step % 10 == 0:
            with open(log_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if on_step:
            on_step({**row, "total_steps": total_steps, "time_budget": cfg.time_budget})
        if state.step - last_val_step >= val_every:
            run_validation()
            last_val_step = state.step
            t_last = time.monotonic()  # validation time is not training time
        if state.step % cfg.checkpoint_every == 0:
            save_checkpoint(out, model, optimizer, state, rng, cfg)
            t_last = time.monotonic()
    if state.step != last_val_step or not (out / "model.json").exists():
        run_validation()
    save_checkpoint(out, model, optimizer, state, rng, cfg)
    try:
        from .plots import plot_curves

        if log_path.exists():
            plot_curves(log_path, out / "training_curves.png")
    except ImportError:
        on_message("matplotlib not installed: no training_curves.png (pip install mitotally[train])")
    return out
