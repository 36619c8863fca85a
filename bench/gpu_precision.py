"""FP16 vs FP32 on CUDA: do the instances change? (issue 5: report the F1 change on real images).

Runs the shipped (or given) model on real images with the torch backend in FP32 and with FP16
autocast + channels_last on CUDA streams, and reports F1@0.5 of the FP16 instances against the FP32
ones and both counts; with TensorRT installed and an engine recorded, the TensorRT FP16 backend too.

    python bench/gpu_precision.py samples/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from mitotally.export.verify import backend_agreement, load_images
from mitotally.runtime.backends.select import BackendOptions, BackendUnavailable, make_backend
from mitotally.runtime.manifest import load_model
from mitotally.runtime.segmenter import default_model_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", type=Path, help="image files or folders (real EM frames)")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_precision: no CUDA GPU visible", file=sys.stderr)
        return 2
    model_dir = args.model or default_model_dir()
    images = load_images(args.images)
    model, manifest = load_model(model_dir)
    fp32 = make_backend("torch", model_dir, model, manifest, BackendOptions(device="cuda", precision="fp32"))
    print(f"model {model_dir}, {len(images)} image(s), GPU {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| backend | F1@0.5 vs torch FP32 | instances | instances FP32 |")
    print("|---|---:|---:|---:|")
    for name in ("torch", "tensorrt"):
        m, man = load_model(model_dir)
        try:
            other = make_backend(name, model_dir, m, man, BackendOptions(device="cuda", precision="fp16"))
        except (BackendUnavailable, ImportError) as e:
            print(f"| {name} FP16 | skipped: {e} | | |")
            continue
        f1, n32, n16 = backend_agreement(fp32, other, manifest, images)
        print(f"| {name} FP16 | {f1:.4f} | {n16} | {n32} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
