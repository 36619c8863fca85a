"""`mito-export`: write, verify and record the ONNX trunk; with `--int8`, an INT8 trunk for CPUs;
with `--fp16`, a TensorRT FP16 engine.

Exit codes: 0 done; 1 verification failed (nothing written or recorded; with
`--int8`, the FP32 ONNX was still written and recorded); 2 bad arguments or
model folder; 3 `--fp16` refused because TensorRT or a GPU is missing (the
ONNX was still written, verified and recorded).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from ..runtime.backends.tensorrt_backend import TensorRTBackend, TensorRTUnavailable
from ..runtime.backends.torch_backend import TorchBackend, Trunk
from ..runtime.manifest import MANIFEST, WEIGHTS, Manifest, load_model, record_export, weights_sha256
from ..runtime.writers.atomic import atomic_write_bytes
from .int8 import EXPORT_KEY as INT8_KEY
from .int8 import INT8_FILE, MIN_AGREEMENT_F1, Int8Export, calibration_tiles, quantize_trunk, write_int8
from .onnx_export import MIN_OPSET, ONNX_FILE, OnnxExport, onnx_bytes, write_trunk
from .tensorrt_build import MIN_FP16_F1, AgreementFailed, build_verified_engine
from .verify import (Verification, VerifyImage, as_the_runtime_sees, backend_agreement, load_images, synthetic_images,
                     verify_export)

EXAMPLE = """example:
  mito-export models/lucchi-r18                 # trunk.onnx (batch 1) for ONNX Runtime on CPU
  mito-export models/lucchi-r18 --int8 --images my_frames/   # + trunk.int8.onnx, calibrated on your images
                                                # (then: mito-run ... --backend onnxruntime --precision int8)
  mito-export models/lucchi-r18 --fp16 -o out/  # + TensorRT FP16 engine for this GPU (batch 8), in a copy of the
                                                # model folder; recorded only if it agrees with FP32 (F1@0.5 >= 0.99)
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mito-export",
        description="Export the model's convolutional trunk to ONNX (verified against PyTorch) and, with --fp16, "
        "build a TensorRT FP16 engine. The heads (NMS, RoIAlign, box and mask heads) stay in PyTorch.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", type=Path, help="model folder (model.json + model.safetensors)")
    p.add_argument("--fp16", action="store_true",
                   help="also build a TensorRT FP16 engine for this GPU (needs TensorRT and an NVIDIA GPU; see the README's "
                        f"GPU section); recorded only if its instances agree with FP32 at F1@0.5 >= {MIN_FP16_F1}")
    p.add_argument("--int8", action="store_true",
                   help="also write trunk.int8.onnx: INT8 convolutions for ONNX Runtime on CPU (~1.6x faster trunk), "
                        "calibrated on --images (required; use frames like the ones you will measure) and recorded only "
                        f"if its instances agree with FP32 at F1@0.5 >= {MIN_AGREEMENT_F1}")
    p.add_argument("--tile", type=int, default=None, help="tile size in model pixels (default: the manifest's tile)")
    p.add_argument("--batch", type=int, default=1, help="static batch of tiles of the CPU trunk, trunk.onnx (default 1)")
    p.add_argument("--gpu-batch", type=int, default=8,
                   help="static batch of tiles of the TensorRT engine (default 8); the CPU trunk keeps --batch")
    p.add_argument("--device", default="cuda", help="GPU that builds and will run the engine, e.g. cuda:1 (default cuda)")
    p.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset, >= {MIN_OPSET} (default {MIN_OPSET})")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="folder to write into (default: MODEL_DIR); a different folder becomes a full copy of the model")
    p.add_argument("--images", type=Path, nargs="+", default=None,
                   help="images (files or folders) for the end-to-end checks and INT8 calibration (default: synthetic EM-like "
                        "frames; --int8 needs real ones)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch and ONNX Runtime during verification")
    p.add_argument("--workspace-gib", type=float, default=4.0, help="TensorRT builder workspace limit in GiB (default 4)")
    return p


def _fail(code: int, message: str) -> int:
    print(f"mito-export: {message}", file=sys.stderr)
    return code


def _check_output(model_dir: Path, out_dir: Path) -> None:
    """Refuse an output folder that holds other weights (checked before the slow verification)."""
    if out_dir.resolve() != model_dir.resolve() and (out_dir / WEIGHTS).is_file():
        if weights_sha256(out_dir) != weights_sha256(model_dir):
            raise ValueError(f"{out_dir / WEIGHTS} holds other weights than {model_dir}; choose an empty folder")


def _prepare_output(model_dir: Path, out_dir: Path) -> None:
    """Make `out_dir` a model folder with the same weights (copied atomically) and the source manifest."""
    if out_dir.resolve() == model_dir.resolve():
        return
    _check_output(model_dir, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / WEIGHTS).is_file():
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".weights.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(model_dir / WEIGHTS, tmp)
            os.replace(tmp, out_dir / WEIGHTS)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    atomic_write_bytes(out_dir / MANIFEST, (model_dir / MANIFEST).read_bytes())


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        import onnx  # noqa: F401 - the exporter writes and rewrites ONNX graphs with it
    except ImportError:
        return _fail(2, "the onnx package is missing: pip install 'mitotally[onnx]'")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, manifest = load_model(args.model_dir)
    except Exception as e:  # any reason the folder is unusable: one line, exit 2
        return _fail(2, f"{args.model_dir}: cannot load the model: {e}")
    tile = args.tile or manifest.tile
    batch = args.batch
    if tile % 32 or tile <= manifest.overlap:
        return _fail(2, f"--tile {tile} must be a multiple of 32 and larger than the model's overlap ({manifest.overlap})")
    if batch < 1 or args.gpu_batch < 1 or args.opset < MIN_OPSET:
        return _fail(2, f"--batch and --gpu-batch must be >= 1 and --opset >= {MIN_OPSET}")
    if args.int8 and not args.images:
        return _fail(2, "--int8 needs --images: INT8 ranges are calibrated on real frames (synthetic ones would mis-set them)")
    try:
        images, source = (load_images(args.images), "files") if args.images else (synthetic_images(manifest), "synthetic")
    except Exception as e:
        return _fail(2, f"cannot read the verification images: {e}")
    if not images:
        return _fail(2, f"no images found in {', '.join(map(str, args.images))}")
    if args.images:
        images = as_the_runtime_sees(images, model, manifest)
    out_dir = args.output or args.model_dir
    try:
        _check_output(args.model_dir, out_dir)
    except (OSError, ValueError) as e:
        return _fail(2, str(e))

    trunk = Trunk(model.eval().cpu())
    data = onnx_bytes(trunk, tile, batch, args.opset)
    print(f"trunk: {len(data) / 1e6:.1f} MB ONNX, tile {tile}, batch {batch}, opset {args.opset}; verifying on {len(images)} image(s) ({source})")
    check = verify_export(model, manifest, data, tile, batch, trunk.output_names, images, source, args.threads)
    _report(check)
    if not check.passed:
        return _fail(1, f"verification failed, nothing written: {check.failure()}")
    try:
        _prepare_output(args.model_dir, out_dir)
        entry = write_trunk(data, out_dir, tile, batch, args.opset, trunk.output_names)
        entry = dataclasses.replace(entry, verification=check.to_dict(), weights_sha256=weights_sha256(out_dir))
        record_export(out_dir, "onnx", entry.to_dict())
    except (OSError, ValueError) as e:
        return _fail(2, f"cannot write into {out_dir}: {e}")
    print(f"wrote {out_dir / ONNX_FILE} and recorded it in {out_dir / MANIFEST}")
    if args.int8:
        code = _quantize(out_dir, entry, data, model, manifest, images, args.threads)
        if code:
            return code
    if not args.fp16:
        return 0
    return _build_engine(out_dir, entry, args, model, manifest, images, source)


def _quantize(out_dir: Path, entry: OnnxExport, data: bytes, model: torch.nn.Module, manifest: Manifest,
              images: list[VerifyImage], threads: int | None) -> int:
    """Calibrate and write the INT8 trunk, if its instances agree with FP32 PyTorch on `images`."""
    import onnxruntime

    from ..runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    tiles = calibration_tiles(images, manifest, entry.tile)
    print(f"INT8: calibrating on {len(tiles)} tile(s) from {len(images)} image(s)")
    quantized = quantize_trunk(data, tiles, entry.batch, entry.input)
    fp32 = TorchBackend(model, entry.tile, entry.batch, "cpu", manifest.score_threshold)
    int8 = OnnxRuntimeBackend(quantized, model, entry.tile, entry.batch, entry.outputs, "cpu", manifest.score_threshold, threads=threads)
    f1, n32, n8 = backend_agreement(fp32, int8, manifest, images)
    if n32 == 0:
        return _fail(1, "the FP32 model finds no mitochondria in --images, so INT8 agreement cannot be checked; "
                        f"give frames with mitochondria ({INT8_FILE} not written)")
    print(f"INT8 trunk vs FP32 PyTorch: F1@0.5 {f1:.4f} (instances {n8} vs {n32})")
    names = [im.name for im in images]
    record = Int8Export(
        file=INT8_FILE, sha256="", source_sha256=entry.sha256, weights_sha256=entry.weights_sha256,
        tile=entry.tile, batch=entry.batch,
        calibration={"method": "minmax", "per_channel": True, "reduce_range": True, "tiles": len(tiles), "images": names},
        agreement={"f1@0.5": f1, "min_f1": MIN_AGREEMENT_F1, "instances_fp32": n32, "instances_int8": n8, "images": names},
        onnxruntime_version=onnxruntime.__version__,
    )
    if not record.passed:
        return _fail(1, f"INT8 instances agree with FP32 only at F1@0.5 {f1:.4f} < {MIN_AGREEMENT_F1}: {INT8_FILE} not written; "
                        "keep the FP32 trunk for this model")
    try:
        record = dataclasses.replace(record, sha256=write_int8(quantized, out_dir))
        record_export(out_dir, INT8_KEY, record.to_dict())
    except (OSError, ValueError) as e:
        return _fail(2, f"cannot write into {out_dir}: {e}")
    print(f"wrote {out_dir / INT8_FILE} and recorded it in {out_dir / MANIFEST}")
    return 0


def _build_engine(out_dir: Path, entry: OnnxExport, args: argparse.Namespace, model: torch.nn.Module, manifest: Manifest,
                  images: list[VerifyImage], source: str) -> int:
    """The GPU trunk (its own batch; trunk.onnx stays the CPU trunk) as a TensorRT FP16 engine, recorded only
    if its instances agree with FP32 PyTorch on the verification frames."""
    import copy

    tile, batch, device = entry.tile, args.gpu_batch, args.device
    data = onnx_bytes(Trunk(model.eval().cpu()), tile, batch, args.opset)

    def agreement(engine: bytes) -> tuple[float, int, int]:
        fp32 = TorchBackend(copy.deepcopy(model), tile, batch, device, manifest.score_threshold)
        fp16 = TensorRTBackend(engine, copy.deepcopy(model), tile, batch, entry.outputs, device, manifest.score_threshold)
        return backend_agreement(fp32, fp16, manifest, images)

    print(f"TensorRT: building the FP16 engine (tile {tile}, batch {batch}) on {device}, then checking it against FP32 "
          f"on {len(images)} image(s) ({source})")
    try:
        engine = build_verified_engine(out_dir, data, tile, batch, entry.outputs, entry.weights_sha256, agreement,
                                       device=device, workspace_gib=args.workspace_gib)
    except TensorRTUnavailable as e:
        return _fail(3, f"--fp16 refused: {e}; {out_dir / ONNX_FILE} was written and verified")
    except AgreementFailed as e:
        return _fail(1, f"TensorRT FP16 engine not recorded: {e}; use --backend torch on this GPU")
    except RuntimeError as e:
        return _fail(1, f"TensorRT engine build failed: {e}; {out_dir / ONNX_FILE} was written and verified")
    agree = engine["fp16_vs_fp32"]
    print(f"FP16 engine vs FP32 PyTorch: F1@0.5 {agree['f1@0.5']:.4f} (instances {agree['instances_fp16']} vs "
          f"{agree['instances_fp32']}) >= {MIN_FP16_F1}")
    print(f"wrote {out_dir / engine['file']} (TensorRT {engine['tensorrt_version']}, {engine['gpu_name']}, "
          f"sm {engine['compute_capability']}) and recorded it in {out_dir / MANIFEST}")
    return 0


def _report(check: Verification) -> None:
    worst = max(check.trunk, key=lambda c: c.max_abs_error)
    torch32 = max(c.max_abs_error for c in check.torch_fp32)
    print(f"trunk parity (ONNX Runtime CPU vs PyTorch float64 reference): {sum(c.ok for c in check.trunk)}/{len(check.trunk)} "
          f"outputs within rtol 1e-3/atol 1e-5, max |err| {worst.max_abs_error:.2e} ({worst.name}; PyTorch FP32: {torch32:.2e})")
    print(f"end to end: F1@0.5 {check.f1:.4f} (instances: torch {check.instances_torch}, onnx {check.instances_onnx})")


if __name__ == "__main__":
    raise SystemExit(main())
