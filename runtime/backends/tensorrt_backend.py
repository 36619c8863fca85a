"""TensorRT backend: the exported trunk as a native engine, heads in torchvision on the same GPU.

I/O buffers are torch CUDA tensors bound with `set_tensor_address`, and
`execute_async_v3` runs on a torch CUDA stream: torch already owns the CUDA
context, streams, events and pinned memory, so a second runtime (pycuda,
cuda-python) would only add a context to keep in sync. Each lane of the stream
pipeline has its own execution context and output buffers, so consecutive
batches overlap; a lane's enqueue can optionally be captured once as a CUDA
graph and replayed.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..instances import Detections
from . import BoxFilter
from .streams import CudaLane, Pipeline, padded_batches
from .torch_backend import INPUT_NAME, Heads, to_detections


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is missing: a one-line reason for the user."""


@dataclass(frozen=True)
class TrtEnvironment:
    """What an engine is tied to: it must be rebuilt when any of this changes."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


def on_device(device: torch.device):
    """Make `device` the current CUDA device: TensorRT creates engines, execution contexts and their
    allocations on the current device (cudaSetDevice semantics), not on the one a tensor lives on."""
    device = torch.device(device)
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def tensorrt_environment(device: str = "cuda") -> TrtEnvironment:
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable("TensorRT is not installed (see the README's GPU section: pip install -e \".[gpu]\")") from None
    if not torch.cuda.is_available():
        raise TensorRTUnavailable("no CUDA GPU is visible (torch.cuda.is_available() is False)")
    mismatch = cuda_major_mismatch(torch.version.cuda, tensorrt_cuda_major())
    if mismatch:
        raise TensorRTUnavailable(mismatch)
    props = torch.cuda.get_device_properties(torch.device(device))
    return TrtEnvironment(trt.__version__, props.name, f"{props.major}.{props.minor}")


def tensorrt_cuda_major() -> int | None:
    """The CUDA major version the installed TensorRT wheels were built for (from `tensorrt-cuXX` names)."""
    from importlib import metadata

    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("tensorrt-cu") and name[len("tensorrt-cu"):].split("-")[0].isdigit():
            return int(name[len("tensorrt-cu"):].split("-")[0])
    return None


def cuda_major_mismatch(torch_cuda: str | None, trt_cuda_major: int | None) -> str:
    """Why TensorRT and torch cannot share a process (empty if they can): both load one CUDA runtime."""
    if torch_cuda is None or trt_cuda_major is None:
        return ""
    torch_major = int(str(torch_cuda).split(".")[0])
    if torch_major == trt_cuda_major:
        return ""
    return (f"TensorRT was installed for CUDA {trt_cuda_major} but torch is built for CUDA {torch_cuda}; "
            f"pip uninstall the tensorrt-cu{trt_cuda_major} packages and pip install 'tensorrt-cu{torch_major}'")


def engine_file_name(env: TrtEnvironment, tile: int, batch: int) -> str:
    """One file per GPU model, compute capability, TensorRT version, tile and batch, so several GPUs share a folder."""
    gpu = re.sub(r"[^a-z0-9]+", "-", env.gpu_name.lower()).strip("-") or "gpu"
    return f"trunk.fp16.{gpu}.sm{env.compute_capability.replace('.', '')}.trt{env.tensorrt_version}.t{tile}.b{batch}.engine"


def stale_reasons(entry: dict, env: TrtEnvironment, weights_sha256: str, batch: int | None = None) -> list[str]:
    """Why a recorded engine cannot be loaded here (empty when it can): engines are not portable."""
    expected = {
        "tensorrt_version": env.tensorrt_version,
        "gpu_name": env.gpu_name,
        "compute_capability": env.compute_capability,
        "weights_sha256": weights_sha256,
    }
    if batch is not None:
        expected["batch"] = batch
    return [f"{key} {entry.get(key)!r} != {value!r}" for key, value in expected.items() if entry.get(key) != value]


# TensorRT tensor types an engine's outputs may have, by name (TensorRT 10/11 `trt.DataType`), and torch's
_TRT_TO_TORCH = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
                 "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool, "UINT8": torch.uint8}


def engine_dtypes(trt) -> dict:
    """`trt.DataType` -> torch dtype for the types this TensorRT has (older ones lack BF16/INT64)."""
    return {getattr(trt.DataType, n): d for n, d in _TRT_TO_TORCH.items() if hasattr(trt.DataType, n)}


def torch_dtype(dtypes: dict, trt_dtype, tensor: str) -> torch.dtype:
    """The torch dtype for an engine tensor, or a clear error naming the tensor and its type."""
    if trt_dtype not in dtypes:
        raise TensorRTUnavailable(f"engine output {tensor!r} has TensorRT type {trt_dtype}, which has no torch buffer type here; "
                                  "rebuild the engine with mito-export --fp16")
    return dtypes[trt_dtype]


@dataclass
class _TrtLane:
    cuda: CudaLane
    context: object  # tensorrt.IExecutionContext
    outputs: list[torch.Tensor]
    graph: "torch.cuda.CUDAGraph | None" = None

    def enqueue(self) -> None:
        with torch.cuda.stream(self.cuda.stream):
            if self.graph is not None:
                self.graph.replay()
            elif not self.context.execute_async_v3(self.cuda.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")


class TensorRTBackend:
    """A serialized engine for the trunk plus torchvision heads; `infer` takes any number of tiles."""

    name = "tensorrt"
    precision = "fp16"

    def __init__(
        self,
        engine: bytes,
        model: torch.nn.Module,
        tile: int,
        batch: int,
        output_names: Sequence[str],
        device: str = "cuda",
        score_threshold: float = 0.05,
        streams: int = 2,
        cuda_graph: bool = False,
    ):
        import tensorrt as trt

        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.tile, self.batch = tile, batch
        self.model = model.eval().to(self.device)
        self.model.roi_heads.score_thresh = score_threshold
        self.output_names = list(output_names)
        levels = [n.removeprefix("feat_") for n in self.output_names if n.startswith("feat_")]
        self.heads = Heads(self.model, levels, tile)
        with on_device(self.device):  # engine, contexts and buffers all on the device asked for
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self.engine = self._runtime.deserialize_cuda_engine(engine)
            if self.engine is None:
                raise RuntimeError("TensorRT could not deserialize the engine (built by another TensorRT version or GPU?)")
            shape = tuple(self.engine.get_tensor_shape(INPUT_NAME))
            if shape != (batch, 1, tile, tile):
                raise ValueError(f"engine input {INPUT_NAME!r} has shape {shape}, expected {(batch, 1, tile, tile)}")
            dtypes = engine_dtypes(trt)
            lanes = [self._lane(dtypes, cuda_graph) for _ in range(max(1, streams))]
        self._pipeline = Pipeline(lanes, self._submit, self._finish)
        self.tiles_per_call = 4 * batch * len(lanes)  # tiles per `infer` call: lanes fill once, then stay busy

    def _lane(self, dtypes: dict, cuda_graph: bool) -> "_TrtLane":
        cuda = CudaLane.create(self.batch, self.tile, self.device)
        context = self.engine.create_execution_context()
        context.set_tensor_address(INPUT_NAME, cuda.device_in.data_ptr())
        outputs = []
        for name in self.output_names:
            dtype = torch_dtype(dtypes, self.engine.get_tensor_dtype(name), name)
            out = torch.empty(tuple(self.engine.get_tensor_shape(name)), dtype=dtype, device=self.device)
            context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        lane = _TrtLane(cuda, context, outputs)
        if cuda_graph:
            lane.graph = _capture(lane)
        return lane

    @torch.inference_mode()
    def infer(self, tiles: np.ndarray, box_filters: Sequence[BoxFilter] | None = None) -> list[Detections]:
        # box filters (a hint, see Backend) are not applied on the CUDA lanes yet
        with on_device(self.device):
            return [d for dets in self._pipeline.map(padded_batches(tiles, self.batch)) for d in dets]

    def _submit(self, lane: _TrtLane, job: tuple[np.ndarray, int]) -> int:
        block, n = job
        lane.cuda.upload(block)
        lane.enqueue()
        return n

    def _finish(self, lane: _TrtLane, n: int) -> list[Detections]:
        with torch.cuda.stream(lane.cuda.stream):
            return to_detections(self.heads(lane.outputs))[:n]


def _capture(lane: _TrtLane) -> "torch.cuda.CUDAGraph":
    """Record one enqueue as a CUDA graph (after a warm-up run, which TensorRT needs before capture)."""
    lane.enqueue()
    lane.cuda.stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=lane.cuda.stream):
        lane.context.execute_async_v3(lane.cuda.stream.cuda_stream)
    return graph
