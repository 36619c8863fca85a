"""`mito-train`: train or fine-tune Mask R-CNN on a lab's labelled EM images."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from .config import TrainConfig

EXAMPLES = """
examples:
  mito-train --data ../shared/data/lucchi/train -o runs/lucchi --time-budget 2h --val-last 25
  mito-train --data my_labels/ -o runs/mine --init models/em-mito-r18 --epochs 30  # fine-tune the shipped model
  mito-train --data ../shared/data/lucchi/train --data my_labels/ --data-share 0.7 --data-share 0.3 \
             --val-last 25 --val-last 2 -o runs/mixed --init models/em-mito-r18 --time-budget 1h  # mix two folders
  mito-train --data my_labels/ --check-data                                        # summary + problems, no training
  mito-train --data ../shared/data/lucchi/train -o runs/lucchi --resume --time-budget 1h
"""


def parse_duration(text: str) -> float:
    """'90', '90s', '45m', '2h' -> seconds."""
    text = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], None)
    return float(text[:-1]) * mult if mult else float(text)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mito-train", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = TrainConfig(data="", out="")
    p.add_argument("--config", help="TOML recipe with any of the options below (keys as in model.json's training.config); command-line options override it")
    p.add_argument("--data", action="append", help="folder of labelled images (COCO JSON, mask folders, label images, ImageJ ROIs or YOLO polygons); "
                   "repeat to mix folders (each is split into train/validation on its own)")
    p.add_argument("--data-share", dest="data_share", type=float, action="append",
                   help="with several --data: fraction of training crops from each folder, in the same order (default: by image area)")
    p.add_argument("--format", default="auto", help="force the label format instead of detecting it (default: auto)")
    p.add_argument("--check-data", action="store_true", help="only read and validate the data; print a summary table and exit")
    p.add_argument("-o", "--out", help="output folder for model.safetensors, model.json, logs and checkpoints")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", default=d.backbone, choices=["resnet18", "resnet34", "resnet50"], help="ResNet depth of the FPN backbone (default: %(default)s)")
    g.add_argument("--norm", default=d.norm, choices=["group", "frozen_batch", "batch"], help="normalisation layers: group for training from scratch (default), frozen_batch to fine-tune COCO weights")
    g.add_argument("--fpn-channels", type=int, default=d.fpn_channels, help="FPN width (default: %(default)s; torchvision uses 256)")
    g.add_argument("--box-head-dim", type=int, default=d.box_head_dim, help="box head MLP width (default: %(default)s)")
    g.add_argument("--mask-head-channels", type=int, default=d.mask_head_channels, help="mask head conv width (default: %(default)s)")
    g.add_argument("--rois-per-image", dest="box_batch_size_per_image", type=int, default=d.box_batch_size_per_image, help="RoIs sampled per image for the heads (default: %(default)s)")
    g.add_argument("--init", help="local weights to start from: a model folder of ours or a torchvision .pth state dict (class heads re-initialised)")
    s = p.add_argument_group("scale and tiles")
    s.add_argument("--pixel-size", dest="pixel_size_nm", type=float, default=d.pixel_size_nm, help="pixel size in nm at which the model sees images (default: %(default)s)")
    s.add_argument("--input-pixel-size", dest="input_pixel_size_nm", type=float, action="append",
                   help="pixel size (nm) of the training images, overriding file metadata; with several --data, one for all or one per folder")
    s.add_argument("--default-input-pixel-size", dest="default_input_pixel_size_nm", type=float, default=d.default_input_pixel_size_nm, help="assumed input pixel size (nm) when a file has none (default: %(default)s)")
    s.add_argument("--tile", type=int, default=d.tile, help="inference tile size at model scale (default: %(default)s)")
    s.add_argument("--overlap", type=int, default=d.overlap, help="tile overlap at model scale; >= the largest mitochondrion (default: %(default)s)")
    s.add_argument("--crop", type=int, default=d.crop, help="training crop size at model scale (default: %(default)s)")
    t = p.add_argument_group("schedule")
    t.add_argument("--batch", type=int, default=d.batch, help="crops per step (default: %(default)s)")
    t.add_argument("--steps", type=int, help="optimiser steps")
    t.add_argument("--epochs", type=float, help="epochs (one epoch = crops covering the training area once)")
    t.add_argument("--time-budget", type=parse_duration, help="stop after this much training time, e.g. 45m or 2h; the lr schedule follows it")
    t.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (default: %(default)s)")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay)
    t.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps (default: %(default)s)")
    t.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient norm clip (default: %(default)s)")
    t.add_argument("--val-last", type=int, action="append",
                   help="hold out the last N images by name (a block of slices) for validation; with several --data, one value for all or one per folder")
    t.add_argument("--val-gap", type=int, action="append", default=None,
                   help="leave out N images between the training and validation blocks (z-stacks: >= 20, so validation is not a neighbour of training)")
    t.add_argument("--test-last", type=int, action="append", default=None,
                   help="never load the last N images of a folder: a test block for mito-eval that chooses nothing")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction, help="else hold out this fraction, last by name (default: %(default)s)")
    t.add_argument("--val-every", type=int, help="validate every N steps (default: each epoch)")
    t.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints (default: %(default)s)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    t.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"], help="(default: auto = cuda when available)")
    t.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    t.add_argument("--seed", type=int, default=d.seed)
    a = p.add_argument_group("augmentation")
    a.add_argument("--scale-jitter", type=float, default=d.scale_jitter, help="zoom crops by exp(+-J) around the model's pixel size (default: %(default)s)")
    a.add_argument("--invert", type=float, default=d.invert, help="probability of inverting a crop's intensities (default: %(default)s)")
    t.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision on CUDA")
    return p


def config_from_args(args: argparse.Namespace, argv: list[str] | None = None) -> TrainConfig:
    """Defaults < recipe file (--config) < options given on the command line."""
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and not (v is None and k in ("val_gap", "test_last"))}
    for key in ("data", "val_last", "val_gap", "test_last", "input_pixel_size_nm"):  # repeatable options: a single value stays a scalar
        if isinstance(values.get(key), list) and len(values[key]) == 1:
            values[key] = values[key][0]
    if args.config:
        import tomllib

        with open(args.config, "rb") as f:
            recipe = tomllib.load(f)
        TrainConfig.from_dict({"data": "", "out": "", **recipe})  # unknown keys are errors
        given = _explicit_options(argv if argv is not None else sys.argv[1:])
        values.update({k: v for k, v in recipe.items() if k not in given})
    return TrainConfig(**values)


def _explicit_options(argv: list[str]) -> set[str]:
    """Destinations of the options written on the command line (so they beat the recipe)."""
    parser = get_args_parser()
    given = set()
    for action in parser._actions:
        if any(opt in argv or any(a.startswith(opt + "=") for a in argv) for opt in action.option_strings):
            given.add(action.dest)
    return given


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if not args.data and not args.config:
        print("mito-train: error: --data (or a --config recipe with data) is required", file=sys.stderr)
        return 2
    try:
        cfg = config_from_args(args, argv)
    except (ValueError, TypeError, OSError) as exc:
        print(f"mito-train: error: recipe {args.config}: {exc}", file=sys.stderr)
        return 2
    if args.check_data:  # the folders, format and pixel size from the command line or the recipe
        from .check import check_data

        folders = [(f, px) for f, px in zip(cfg.data_folders, cfg.per_folder("input_pixel_size_nm")) if f]
        if not folders:
            print("mito-train: error: --check-data needs --data (or a --config recipe with data)", file=sys.stderr)
            return 2
        return max(check_data(folder, cfg.format, px) for folder, px in folders)
    if not cfg.out or not cfg.data:
        print("mito-train: error: -o/--out and --data are required to train (on the command line or in --config)", file=sys.stderr)
        return 2
    from .progress import TrainProgress
    from .engine import train

    try:
        with TrainProgress() as progress:
            out = train(cfg, on_step=progress.update, on_message=progress.print)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"mito-train: error: {exc}", file=sys.stderr)
        return 1
    print(f"model written to {out}/model.safetensors and {out}/model.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
