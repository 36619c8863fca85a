"""Build a TensorRT FP16 engine for the GPU trunk, prove it against FP32, and only then record it.

The network is strongly typed (TensorRT >= 10.12 deprecates weak typing and 11
removes it): it is parsed from an FP16 ONNX whose normalisation statistics stay
FP32 (`fp16_onnx.py`), so the types in the file are the types that run, on
TensorRT 10 and 11 alike. Building happens on the device asked for. An engine is
recorded in model.json only when its instances agree with FP32 PyTorch (TF32
off) at F1@0.5 >= MIN_FP16_F1 on the verification frames. Engines are named by
GPU, compute capability, TensorRT version, tile and batch, so several GPUs can
share one model folder; each has its own timing cache.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch

from ..runtime.backends.tensorrt_backend import (TensorRTUnavailable, TrtEnvironment, engine_file_name, on_device,
                                                 tensorrt_environment)
from ..runtime.manifest import record_engine
from ..runtime.writers.atomic import atomic_write_bytes
from .fp16_onnx import fp16_onnx

MIN_FP16_F1 = 0.99  # FP16 engine vs FP32 PyTorch, instances matched at IoU 0.5, pooled over the frames


class AgreementFailed(RuntimeError):
    """The FP16 engine's instances differ too much from FP32's: it is not recorded."""


def build_engine(onnx_fp32: bytes, device: str = "cuda", workspace_gib: float = 4.0, timing_cache: bytes = b"") -> tuple[bytes, bytes]:
    """Serialized engine and the updated timing cache; `TensorRTUnavailable` when it cannot be built here."""
    tensorrt_environment(device)  # refuses clearly when TensorRT or the GPU is missing
    import tensorrt as trt

    onnx_fp16 = fp16_onnx(onnx_fp32)
    with on_device(torch.device(device)):
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_fp16):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the FP16 trunk: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        cache = config.create_timing_cache(timing_cache)
        config.set_timing_cache(cache, ignore_mismatch=False)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise RuntimeError("TensorRT failed to build the engine (see the TensorRT log above)")
        return bytes(engine), bytes(config.get_timing_cache().serialize())


def agreement_failure(f1: float, n_fp32: int, n_fp16: int, minimum: float = MIN_FP16_F1) -> str:
    """Why an engine must not be recorded (empty when it may be)."""
    if n_fp32 == 0:
        return ("the FP32 model finds no mitochondria in the verification frames, so FP16 agreement cannot be checked; "
                "give frames with mitochondria (--images)")
    if f1 < minimum:
        return (f"FP16 instances agree with FP32 only at F1@0.5 {f1:.4f} ({n_fp16} vs {n_fp32} instances), "
                f"{minimum - f1:.4f} short of {minimum}")
    return ""


def build_verified_engine(model_dir: Path, onnx_fp32: bytes, tile: int, batch: int, outputs: list[str], weights_sha256: str,
                          agreement: Callable[[bytes], tuple[float, int, int]], device: str = "cuda",
                          workspace_gib: float = 4.0, env: TrtEnvironment | None = None,
                          build: Callable[..., tuple[bytes, bytes]] = build_engine) -> dict:
    """Build, check `agreement(engine) -> (f1, n_fp32, n_fp16)`, and write + record the engine only if it passes.

    Raises `AgreementFailed` (nothing written), `TensorRTUnavailable`, or `RuntimeError` from the builder."""
    env = env or tensorrt_environment(device)
    model_dir = Path(model_dir)
    name = engine_file_name(env, tile, batch)
    cache_path = model_dir / (name.removesuffix(".engine") + ".timing.cache")
    engine, cache = build(onnx_fp32, device, workspace_gib, cache_path.read_bytes() if cache_path.is_file() else b"")
    f1, n32, n16 = agreement(engine)
    failure = agreement_failure(f1, n32, n16)
    if failure:
        raise AgreementFailed(failure)
    atomic_write_bytes(model_dir / name, engine)
    atomic_write_bytes(cache_path, cache)
    entry = {
        "file": name,
        "sha256": hashlib.sha256(engine).hexdigest(),
        "precision": "fp16",
        "strongly_typed": True,
        "tensorrt_version": env.tensorrt_version,
        "gpu_name": env.gpu_name,
        "compute_capability": env.compute_capability,
        "tile": tile,
        "batch": batch,
        "outputs": list(outputs),
        "onnx_sha256": hashlib.sha256(onnx_fp32).hexdigest(),  # the FP32 GPU trunk it was converted from
        "weights_sha256": weights_sha256,
        "timing_cache": cache_path.name,
        "fp16_vs_fp32": {"f1@0.5": f1, "min_f1": MIN_FP16_F1, "instances_fp32": n32, "instances_fp16": n16},
    }
    record_engine(model_dir, entry)
    return entry


__all__ = ["AgreementFailed", "MIN_FP16_F1", "TensorRTUnavailable", "agreement_failure", "build_engine", "build_verified_engine"]
