"""Build a TensorRT FP16 engine from the exported trunk (TensorRT 10 and 11 Python APIs).

TensorRT 10: parse the FP32 ONNX and set `BuilderFlag.FP16` (weak typing).
TensorRT 11 removed the precision flags: the network must be strongly typed,
so the ONNX is first converted to FP16 (NVIDIA ModelOpt AutoCast when
installed, else ONNX Runtime's float16 converter) with FP32 inputs/outputs and
normalisation layers kept in FP32. A timing cache next to the engine makes
rebuilds fast. An engine is only valid for the GPU and TensorRT version that
built it; the manifest entry records both so a stale engine is rebuilt.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from ..runtime.backends.tensorrt_backend import TensorRTUnavailable, TrtEnvironment, tensorrt_environment
from ..runtime.manifest import record_export
from ..runtime.writers.atomic import atomic_write_bytes

ENGINE_FILE = "trunk.fp16.engine"
TIMING_CACHE_FILE = "trunk.timing.cache"
KEEP_FP32_OPS = ["InstanceNormalization", "GroupNormalization", "ReduceMean", "Pow", "Sqrt", "Div"]


def fp16_onnx(onnx_bytes: bytes) -> bytes:
    """FP16 weights and activations with FP32 I/O and normalisation, for a strongly typed network."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision  # NVIDIA's recommended path for TensorRT 11

        with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
            f.write(onnx_bytes)
            f.flush()
            converted = convert_to_mixed_precision(onnx_path=f.name, low_precision_type="fp16", keep_io_types=True)
    except ImportError:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + KEEP_FP32_OPS)
    return converted.SerializeToString()


def build_engine(onnx_bytes: bytes, workspace_gib: float = 4.0, timing_cache: bytes = b"") -> tuple[bytes, bytes]:
    """Serialized FP16 engine and the updated timing cache; `TensorRTUnavailable` when it cannot be built here."""
    tensorrt_environment()  # refuses clearly when TensorRT or the GPU is missing
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    weakly_typed = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 10; gone in 11
    if weakly_typed:
        network = builder.create_network(0)
    else:
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        onnx_bytes = fp16_onnx(onnx_bytes)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse trunk.onnx: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if weakly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, ignore_mismatch=False)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError("TensorRT failed to build the engine (see the TensorRT log above)")
    return bytes(engine), bytes(config.get_timing_cache().serialize())


def build_and_record(model_dir: Path, onnx_path: Path, onnx_entry: dict, env: TrtEnvironment | None = None,
                     workspace_gib: float = 4.0) -> dict:
    """Build the engine next to `onnx_path`, write it and the timing cache atomically, record it in model.json."""
    env = env or tensorrt_environment()
    model_dir = Path(model_dir)
    cache_path = model_dir / TIMING_CACHE_FILE
    cache = cache_path.read_bytes() if cache_path.is_file() else b""
    engine, cache = build_engine(onnx_path.read_bytes(), workspace_gib, cache)
    atomic_write_bytes(model_dir / ENGINE_FILE, engine)
    atomic_write_bytes(cache_path, cache)
    entry = {
        "file": ENGINE_FILE,
        "sha256": hashlib.sha256(engine).hexdigest(),
        "precision": "fp16",
        "tensorrt_version": env.tensorrt_version,
        "gpu_name": env.gpu_name,
        "compute_capability": env.compute_capability,
        "tile": onnx_entry["tile"],
        "batch": onnx_entry["batch"],
        "onnx_sha256": onnx_entry["sha256"],
        "timing_cache": TIMING_CACHE_FILE,
    }
    record_export(model_dir, "tensorrt", entry)
    return entry


__all__ = ["ENGINE_FILE", "TensorRTUnavailable", "build_and_record", "build_engine", "fp16_onnx", "record_export"]
