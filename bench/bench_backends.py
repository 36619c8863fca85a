"""Backend benchmark: the same frames through a naive torchvision baseline and through our backends.

What is timed, for every row, is the same job: the tiles of each frame
(normalised, at the model's pixel size, cut by the runtime's TileGrid) ->
instance masks at tile resolution, score >= the manifest's threshold.

- naive: the way a user scripts torchvision, `model([tile])` one tile at a
  time in eager FP32 with the standard transform (`GeneralizedRCNNTransform`,
  min_size 800: every 512 tile is upsampled), masks pasted by torchvision;
- torch: our backend (no resize, static batches, score filter before the mask
  head, 28x28 mask probabilities pasted by `runtime.paste`);
- onnxruntime: the exported trunk in ONNX Runtime, same heads;
- onnxruntime INT8 (CPU): the INT8 trunk of `mito-export --int8`, copied from
  the model folder when it was quantized from the same trunk, else calibrated
  here on the benchmark's own tiles (speed only: its accuracy is measured by
  `bench/eval_holdouts.py --backend onnxruntime --precision int8` on held-out real images);
- on CUDA also torch FP32 eager, torch FP16 + channels_last on 2 streams, and
  TensorRT FP16 when TensorRT is installed.

Prints a markdown table (frames/s, tiles/s, ratio to naive) with the machine
and date, for BENCHMARKS.md. Example (one CPU run, 2 full frames):

    python bench/bench_backends.py --model models/lucchi-r18 --frames 2 --threads 2
"""
from __future__ import annotations

import argparse
import datetime
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from mitotally.export.onnx_export import export_trunk
from mitotally.runtime.manifest import record_export
from mitotally.runtime.backends.torch_backend import TorchBackend
from mitotally.runtime.manifest import Manifest, load_model, save_model
from mitotally.runtime.model import ModelConfig, build_model
from mitotally.runtime.normalize import normalize
from mitotally.runtime.paste import paste_detections
from mitotally.runtime.scale import rescale_image
from mitotally.runtime.tiling import TileGrid

REPO = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the first models/*/model.json, else random weights)")
    p.add_argument("--frames", type=int, default=2, help="synthetic frames (default 2)")
    p.add_argument("--frame-size", type=int, nargs=2, default=(3704, 4864), metavar=("H", "W"), help="frame size in px (default 3704 4864)")
    p.add_argument("--pixel-size", type=float, default=5.0, help="frame pixel size in nm (default 5)")
    p.add_argument("--max-tiles", type=int, default=None, help="time only the first N tiles of each frame (quick checks)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime")
    p.add_argument("--batch", type=int, default=None, help="tiles per batch (default: 1 on CPU, 8 on CUDA)")
    p.add_argument("--skip", nargs="*", default=[], help="rows to skip, e.g. naive")
    p.add_argument("-o", "--output", type=Path, default=None, help="also write the markdown table here")
    return p


def synthetic_frame(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """EM-like 8-bit frame: dark ellipses (mitochondria, 0.3-1.2 um at 5 nm) with darker membranes."""
    from scipy import ndimage
    from skimage.draw import ellipse

    img = np.full(shape, 170.0, np.float32)
    inside = np.zeros(shape, bool)
    for _ in range(int(shape[0] * shape[1] / 60_000)):
        a, b = rng.uniform(30, 120, size=2)
        rr, cc = ellipse(*rng.uniform(0, shape), a, b, shape=shape, rotation=rng.uniform(0, np.pi))
        inside[rr, cc] = True
    img[inside] = 90.0
    img[inside & ~ndimage.binary_erosion(inside, iterations=3)] = 40.0
    img = ndimage.gaussian_filter(img, 1.5) + rng.normal(0, 8, shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def frame_tiles(frame: np.ndarray, manifest: Manifest, pixel_size: float, max_tiles: int | None) -> np.ndarray:
    scaled = rescale_image(normalize(frame, manifest.normalization), pixel_size / manifest.pixel_size_nm)
    grid = TileGrid(scaled.shape, manifest.tile, manifest.overlap)
    tiles = grid.tiles[:max_tiles] if max_tiles else grid.tiles
    return np.stack([grid.crop(scaled, t) for t in tiles]).astype(np.float32)


def naive_runner(model: torch.nn.Module, manifest: Manifest, device: str) -> Callable[[np.ndarray], int]:
    """torchvision as a user would call it: standard transform (resize to 800), one tile per call, FP32 eager."""
    model = model.to(device).eval()
    c = manifest.model
    model.transform = GeneralizedRCNNTransform(800, 1333, [c.image_mean] * c.in_channels, [c.image_std] * c.in_channels)
    model.roi_heads.score_thresh = 0.05  # torchvision's default; the user filters afterwards

    @torch.inference_mode()
    def run(tiles: np.ndarray) -> int:
        n = 0
        for t in tiles:
            out = model([torch.from_numpy(t)[None].to(device)])[0]
            keep = out["scores"] >= manifest.score_threshold
            masks = (out["masks"][keep, 0] >= manifest.mask_threshold).cpu().numpy()
            n += len(masks)
        return n

    return run


def backend_runner(backend, manifest: Manifest) -> Callable[[np.ndarray], int]:
    t = backend.tile

    def run(tiles: np.ndarray) -> int:
        n = 0
        for det in backend.infer(tiles):
            keep = det.scores >= manifest.score_threshold
            det = type(det)(det.boxes[keep], det.scores[keep], det.mask_probs[keep])
            n += len(paste_detections(det, (0, 0), 1.0, (t, t), manifest.mask_threshold))
        return n

    return run


def time_rows(rows: dict[str, Callable[[np.ndarray], int]], frames: list[np.ndarray]) -> list[tuple[str, float, float, int]]:
    """(name, frames/s, tiles/s, instances) per row; each row warms up on one tile first."""
    results = []
    for name, run in rows.items():
        run(frames[0][:1])
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        count = sum(run(f) for f in frames)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        results.append((name, len(frames) / dt, sum(len(f) for f in frames) / dt, count))
        print(f"  {name}: {len(frames) / dt:.3f} frames/s, {count} instances", file=sys.stderr, flush=True)
    return results


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu} ({torch.get_num_threads()} torch threads){gpu}"


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="mito-bench-"))
    try:
        model_dir = _model_copy(args.model, work)
        model, manifest = load_model(model_dir)
        on_cuda = args.device.startswith("cuda")
        batch = args.batch or (8 if on_cuda else 1)
        rng = np.random.default_rng(0)
        frames = [frame_tiles(synthetic_frame(tuple(args.frame_size), rng), manifest, args.pixel_size, args.max_tiles) for _ in range(args.frames)]
        rows: dict[str, Callable] = {}
        if "naive" not in args.skip:
            rows["naive torchvision, FP32 eager, 1 tile/call"] = naive_runner(load_model(model_dir)[0], manifest, args.device)
        if on_cuda:
            rows[f"torch backend FP32, batch {batch}, 1 stream"] = backend_runner(TorchBackend(load_model(model_dir)[0], manifest.tile, batch, args.device, manifest.score_threshold, streams=1), manifest)
            rows[f"torch backend FP16 channels_last, batch {batch}, 2 streams"] = backend_runner(
                TorchBackend(load_model(model_dir)[0], manifest.tile, batch, args.device, manifest.score_threshold, precision="fp16", channels_last=True, streams=2), manifest)
        else:
            rows[f"torch backend FP32, batch {batch}"] = backend_runner(TorchBackend(load_model(model_dir)[0], manifest.tile, batch, "cpu", manifest.score_threshold), manifest)
        entry = export_trunk(model, model_dir, manifest.tile, batch)
        record_export(model_dir, "onnx", entry.to_dict())
        if not on_cuda:
            _int8_into(model_dir, args.model, entry, np.concatenate(frames)[:16], batch)
        rows.update(_exported_rows(model_dir, args, batch, on_cuda))
        results = time_rows(rows, frames)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = _table(results, args, manifest, len(frames[0]))
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return 0


def _int8_into(model_dir: Path, source: Path | None, entry, tiles: np.ndarray, batch: int) -> None:
    """Record an INT8 trunk in the scratch model: the source folder's when it matches this export, else one calibrated on `tiles`."""
    import onnxruntime

    from mitotally.export.int8 import EXPORT_KEY, INT8_FILE, quantize_trunk, write_int8

    src = source or next((p.parent for p in sorted(REPO.glob("models/*/model.json"))), None)
    recorded = load_model(src)[1].exports.get(EXPORT_KEY) if src else None
    if recorded and recorded["source_sha256"] == entry.sha256 and (src / INT8_FILE).is_file():
        data, how = (src / INT8_FILE).read_bytes(), f"from {src}"
    else:
        data, how = quantize_trunk((model_dir / entry.file).read_bytes(), tiles, batch, entry.input), "calibrated on the benchmark tiles"
    print(f"  INT8 trunk {how}", file=sys.stderr)
    record_export(model_dir, EXPORT_KEY, {"file": INT8_FILE, "sha256": write_int8(data, model_dir), "source_sha256": entry.sha256,
                                          "weights_sha256": entry.weights_sha256,
                                          "tile": entry.tile, "batch": entry.batch, "onnxruntime_version": onnxruntime.__version__})


def _exported_rows(model_dir: Path, args, batch: int, on_cuda: bool) -> dict[str, Callable]:
    from mitotally.runtime.backends.select import BackendOptions, BackendUnavailable, make_backend

    rows: dict[str, Callable] = {}
    names = [("onnxruntime", "auto")] + ([("tensorrt", "auto")] if on_cuda else [("onnxruntime", "int8")])
    for name, precision in names:
        opts = BackendOptions(device=args.device, batch=batch, threads=args.threads, precision=precision)
        model, manifest = load_model(model_dir)
        try:
            if name == "tensorrt" and "tensorrt" not in manifest.exports:  # mito-export builds it and gates FP16 vs FP32
                from mitotally.export.cli import main as export_main

                code = export_main([str(model_dir), "--fp16", "--batch", str(manifest.exports["onnx"]["batch"]),
                                    "--gpu-batch", str(batch), "--device", args.device])
                if code:
                    raise RuntimeError(f"mito-export --fp16 exited {code} (see above)")
                model, manifest = load_model(model_dir)
            backend = make_backend(name, model_dir, model, manifest, opts)
        except BackendUnavailable as e:
            print(f"  {name}: skipped ({e})", file=sys.stderr)
            continue
        except Exception as e:  # TensorRT missing (import) or a failed engine build: report, keep the other rows
            print(f"  {name}: skipped ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        label = f"{name} {backend.precision.upper()} batch {batch}" + (f", {'/'.join(backend.providers)}" if name == "onnxruntime" else "")
        rows[label] = backend_runner(backend, manifest)
    return rows


def _model_copy(model: Path | None, work: Path) -> Path:
    """A scratch copy of the model folder (exports are written there, never into the user's folder)."""
    src = model or next((p.parent for p in sorted(REPO.glob("models/*/model.json"))), None)
    dst = work / "model"
    if src is None:
        print("  no model given and none shipped: random weights (speed only; detection counts are meaningless)", file=sys.stderr)
        cfg = ModelConfig()
        save_model(dst, Manifest(model=cfg), build_model(cfg).state_dict())
        return dst
    dst.mkdir(parents=True)
    for name in ("model.json", "model.safetensors"):
        shutil.copyfile(Path(src) / name, dst / name)
    return dst


def _table(results, args, manifest: Manifest, tiles_per_frame: int) -> str:
    base = results[0][1] if results and results[0][0].startswith("naive") else None
    lines = [
        f"Backends, {datetime.date.today().isoformat()}, {machine()}, torch {torch.__version__}",
        f"{args.frames} synthetic frame(s) {args.frame_size[1]}x{args.frame_size[0]} px at {args.pixel_size} nm -> "
        f"{tiles_per_frame} tiles of {manifest.tile} px at {manifest.pixel_size_nm} nm per frame"
        + (f" (only the first {args.max_tiles} tiles of each frame timed: frames/s is NOT whole frames)" if args.max_tiles else ""),
        "",
        "| backend | frames/s | tiles/s | x naive | instances |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, fps, tps, count in results:
        ratio = f"{fps / base:.2f}" if base else "-"
        lines.append(f"| {name} | {fps:.3f} | {tps:.2f} | {ratio} | {count} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
