"""Create a backend by name, or pick the fastest one available (`auto`) and say why.

`auto` follows a fixed preference (see bench/bench_backends.py): on CUDA, a
TensorRT engine recorded by `mito-export --fp16` for this GPU (never built here),
else torch FP16 on CUDA streams; on CPU, ONNX Runtime when `trunk.onnx` was
exported, else torch. The CPU order is measured; the CUDA order is the
expected one until the GPU benchmark has been run. Every candidate that
was passed over is reported with its reason, so `run.json` can record it.

Precision is never lowered behind the user's back on a CPU: `auto` is FP32
there (the same instances as PyTorch), and the INT8 trunk of
`mito-export --int8` runs only when `precision="int8"` is asked for.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..manifest import Manifest, load_model, recorded_engines, weights_sha256
from . import Backend
from .tensorrt_backend import stale_reasons
from .torch_backend import TorchBackend

BACKEND_NAMES = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
log = logging.getLogger("mitotally")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message is one line naming the cause."""


@dataclass(frozen=True)
class BackendOptions:
    device: str | None = None  # None: cuda when available, else cpu
    batch: int | None = None  # None: the export's batch (onnxruntime, tensorrt); 8 on CUDA, 1 on CPU for torch
    threads: int | None = None  # ONNX Runtime intra-op threads (None: its default)
    score_threshold: float | None = None  # None: the manifest's; detections below never reach the mask head
    precision: str = "auto"  # auto: fp16 on CUDA (decoding and NMS stay fp32), fp32 on CPU; int8: onnxruntime on CPU only
    streams: int = 2  # CUDA lanes kept in flight
    cuda_graph: bool = False  # TensorRT: replay each lane's enqueue as a CUDA graph


@dataclass(frozen=True)
class Selection:
    backend: Backend
    reason: str
    skipped: dict[str, str] = field(default_factory=dict)  # backend -> why it was not used


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def export_file(model_dir: Path, name: str, must_exist: bool = True) -> Path:
    """A file named by the manifest; refused if the name would lead out of the model folder."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise BackendUnavailable(f"{Path(model_dir) / 'model.json'}: export file {name!r} must be a plain file name inside the model folder")
    path = Path(model_dir) / name
    if must_exist and not path.is_file():
        raise BackendUnavailable(f"{path}: recorded in model.json but missing; run mito-export again")
    return path


def _onnx_entry(model_dir: Path, manifest: Manifest, opts: BackendOptions) -> dict:
    entry = manifest.exports.get("onnx")
    if not entry:
        raise BackendUnavailable(f"{model_dir}: no ONNX export recorded; run `mito-export {model_dir}` first")
    recorded = entry.get("weights_sha256")
    if recorded and recorded != weights_sha256(model_dir):
        raise BackendUnavailable(f"{model_dir}: trunk.onnx was exported from other weights than model.safetensors; run `mito-export {model_dir}` again")
    if opts.batch is not None and opts.batch != entry["batch"]:
        raise BackendUnavailable(f"trunk.onnx was exported for batch {entry['batch']}, batch {opts.batch} was asked; re-export with --batch {opts.batch}")
    return entry


def _int8_entry(model_dir: Path, manifest: Manifest, onnx: dict, device: str) -> dict:
    """The recorded INT8 trunk, if it runs here and was quantized from the current trunk.onnx."""
    if not device.startswith("cpu"):
        raise BackendUnavailable("precision int8 is for CPUs (ONNX Runtime's INT8 convolutions); on a GPU use fp16")
    entry = manifest.exports.get("onnx_int8")
    if not entry:
        raise BackendUnavailable(f"{model_dir}: no INT8 trunk recorded; run `mito-export {model_dir} --int8 --images FRAMES` first")
    if entry.get("source_sha256") != onnx["sha256"] or entry.get("weights_sha256") != onnx.get("weights_sha256"):
        raise BackendUnavailable(f"{model_dir}: the INT8 trunk was quantized from another trunk.onnx; run `mito-export {model_dir} --int8 --images FRAMES` again")
    path = export_file(model_dir, entry.get("file", ""))
    if hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
        raise BackendUnavailable(f"{path} differs from the sha256 recorded in model.json; run mito-export --int8 again")
    return entry


def make_backend(name: str, model_dir: Path, model: torch.nn.Module, manifest: Manifest, opts: BackendOptions) -> Backend:
    """One named backend, or `BackendUnavailable` with the reason."""
    device = opts.device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {device} asked but no CUDA GPU is visible")
    if opts.precision not in PRECISIONS:
        raise BackendUnavailable(f"unknown precision {opts.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if opts.precision == "int8" and name != "onnxruntime":
        raise BackendUnavailable(f"precision int8 runs only on the onnxruntime backend, not {name}")
    if opts.precision == "fp16" and not device.startswith("cuda"):
        raise BackendUnavailable("precision fp16 needs a CUDA GPU (FP16 convolutions on a CPU are slower, not faster)")
    score = manifest.score_threshold if opts.score_threshold is None else opts.score_threshold
    if name == "torch":
        on_cuda = device.startswith("cuda")
        precision = ("fp16" if on_cuda else "fp32") if opts.precision == "auto" else opts.precision
        batch = opts.batch or (8 if on_cuda else 1)
        return TorchBackend(model, manifest.tile, batch, device, score, precision=precision, channels_last=on_cuda, streams=opts.streams)
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeUnavailable

        entry = _onnx_entry(model_dir, manifest, opts)
        on_cuda = device.startswith("cuda")
        int8 = opts.precision == "int8"
        trunk = export_file(model_dir, (_int8_entry(model_dir, manifest, entry, device) if int8 else entry)["file"])
        try:
            return OnnxRuntimeBackend(
                trunk, model, entry["tile"], entry["batch"], entry["outputs"], device, score,
                threads=opts.threads, fp16=on_cuda and opts.precision != "fp32",
                cache_dir=Path(model_dir) / "ort_cache" if on_cuda else None, int8=int8,
            )
        except OnnxRuntimeUnavailable as e:
            raise BackendUnavailable(str(e)) from None
    if name == "tensorrt":
        if opts.precision == "fp32":
            raise BackendUnavailable("TensorRT engines here are FP16; for FP32 on a GPU use --backend torch")
        return _tensorrt(model_dir, model, manifest, opts, device, score)
    raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


def _tensorrt(model_dir: Path, model, manifest: Manifest, opts: BackendOptions, device: str, score: float) -> Backend:
    from .tensorrt_backend import TensorRTBackend, TensorRTUnavailable, tensorrt_environment

    try:
        env = tensorrt_environment(device)
    except TensorRTUnavailable as e:
        raise BackendUnavailable(str(e)) from None
    entry = usable_engine(model_dir, recorded_engines(manifest), env, weights_sha256(model_dir), opts.batch)
    engine = export_file(model_dir, entry["file"]).read_bytes()
    return TensorRTBackend(engine, model, entry["tile"], entry["batch"], entry["outputs"], device, score,
                           streams=opts.streams, cuda_graph=opts.cuda_graph)


def usable_engine(model_dir: Path, engines: list[dict], env, weights: str, batch: int | None) -> dict:
    """The recorded engine built for this GPU, TensorRT and weights, or `BackendUnavailable` saying why each is not.

    Engines are tied to one GPU and TensorRT version; the runtime only loads, never builds."""
    rebuild = f"build one with `mito-export {model_dir} --fp16`"
    if not engines:
        raise BackendUnavailable(f"{model_dir}: no TensorRT engine recorded; {rebuild}")
    why = []
    for entry in engines:
        reasons = stale_reasons(entry, env, weights, batch)
        if not reasons:
            path = export_file(model_dir, entry.get("file", ""), must_exist=False)
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
                reasons = [f"{path.name} is missing or differs from the recorded sha256"]
        if not reasons:
            return entry
        why.append(f"{entry.get('file')}: {'; '.join(reasons)}")
    raise BackendUnavailable(f"no recorded TensorRT engine fits {env.gpu_name} (sm {env.compute_capability}, TensorRT "
                             f"{env.tensorrt_version}): {' | '.join(why)}; {rebuild}")


def auto_order(device: str) -> tuple[str, ...]:
    """Preference for `auto`: fastest first (see BENCHMARKS.md)."""
    return ("tensorrt", "torch") if device.startswith("cuda") else ("onnxruntime", "torch")


def select_backend(model_dir: Path, requested: str = "auto", opts: BackendOptions = BackendOptions(),
                   model: torch.nn.Module | None = None, manifest: Manifest | None = None) -> Selection:
    """The backend for `requested` (a name or `auto`), loading the model from `model_dir` unless given."""
    if requested not in BACKEND_NAMES:
        raise BackendUnavailable(f"unknown backend {requested!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if model is None or manifest is None:
        model, manifest = load_model(Path(model_dir))
    device = opts.device or default_device()
    if requested != "auto":
        return Selection(make_backend(requested, model_dir, model, manifest, opts), f"{requested} on {device} (asked for)")
    skipped: dict[str, str] = {}
    for name in auto_order(device):
        try:
            backend = make_backend(name, model_dir, model, manifest, opts)
        except BackendUnavailable as e:
            skipped[name] = str(e)
            continue
        except Exception as e:  # noqa: BLE001 - `auto` never crashes on a backend's start-up: it falls back, saying why
            skipped[name] = f"failed to start ({type(e).__name__}: {e})"
            log.warning("backend %s failed to start, trying the next one: %s: %s", name, type(e).__name__, e)
            continue
        why = f"{name} on {device} (fastest available" + (f"; skipped {', '.join(skipped)})" if skipped else ")")
        return Selection(backend, why, skipped)
    raise BackendUnavailable("no backend could start: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
