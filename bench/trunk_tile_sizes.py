"""Seconds per megapixel of the trunk alone (backbone + FPN + RPN convs) at several tile sizes, and the tile
area a 4864x3704 frame at 5 nm would need with each: whether larger tiles pay on this CPU.

The trunk is exported to ONNX at each size (in memory) and timed in ONNX Runtime and eager PyTorch on one
random tile, after one warm-up run. Larger tiles cover a frame with less overlap, but their activations
may fall out of the caches: both numbers are needed.

    python bench/trunk_tile_sizes.py --tiles 512 704 1024 --threads 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

FRAME_AT_MODEL_SCALE = (1852, 2432)  # 4864x3704 at 5 nm seen at 10 nm


def frame_area_ratio(tile: int, overlap: int, shape: tuple[int, int] = FRAME_AT_MODEL_SCALE) -> tuple[int, float]:
    """(tiles, their total area / the frame's) for the runtime's tile grid."""
    from mitotally.runtime.tiling import TileGrid

    n = len(TileGrid(shape, tile, overlap).tiles)
    return n, n * tile * tile / (shape[0] * shape[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "em-mito-r18")
    p.add_argument("--tiles", type=int, nargs="+", default=[512, 640, 704, 768, 1024])
    p.add_argument("--overlap", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=4)
    args = p.parse_args()
    import onnxruntime as ort

    from mitotally.export.onnx_export import exportable, onnx_bytes
    from mitotally.runtime.backends.torch_backend import Trunk
    from mitotally.runtime.manifest import load_model

    torch.set_num_threads(args.threads)
    model, _ = load_model(args.model)
    trunk = Trunk(model.eval())
    rng = np.random.default_rng(0)
    print(f"trunk of {args.model.name}, {args.threads} thread(s), {args.repeats} runs each after a warm-up; frame = "
          f"4864x3704 at 5 nm ({FRAME_AT_MODEL_SCALE[1]}x{FRAME_AT_MODEL_SCALE[0]} model px), overlap {args.overlap}")
    print("| tile | tiles per frame | tile area / frame | ORT s / tile | ORT s / MP | torch s / tile | torch s / MP | ORT trunk s / frame |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in args.tiles:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(onnx_bytes(exportable(trunk), t, 1), sess_options=opts, providers=["CPUExecutionProvider"])
        x = rng.standard_normal((1, 1, t, t)).astype(np.float32)
        session.run(None, {"tiles": x})
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            session.run(None, {"tiles": x})
        ort_s = (time.perf_counter() - t0) / args.repeats
        with torch.inference_mode():
            xt = torch.from_numpy(x)
            trunk(xt)
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                trunk(xt)
            torch_s = (time.perf_counter() - t0) / args.repeats
        mp = t * t / 1e6
        n, ratio = frame_area_ratio(t, args.overlap)
        print(f"| {t} | {n} | {ratio:.2f}x | {ort_s:.3f} | {ort_s / mp:.2f} | {torch_s:.3f} | {torch_s / mp:.2f} | {n * ort_s:.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
