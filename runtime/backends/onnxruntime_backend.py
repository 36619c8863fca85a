"""ONNX Runtime backend: the exported trunk in ONNX Runtime, heads in torchvision.

On CPU (the default where the ONNX exists and no GPU does) ONNX Runtime's
fused convolutions are faster than eager PyTorch. With onnxruntime-gpu, the
TensorRT execution provider (FP16, engine cache) or the CUDA one runs the
trunk, and I/O binding hands torch CUDA tensors to it without host copies.
"""
from __future__ import annotations


from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..instances import Detections
from .roi_pool import thread_roi_pooling
from . import BoxFilter
from .streams import batch_filters, padded_batches
from .torch_backend import INPUT_NAME, Heads, to_detections

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntimeUnavailable(RuntimeError):
    """onnxruntime (or its GPU build, for a CUDA device) is missing: a one-line reason."""


def providers_for(device: torch.device, available: Sequence[str], fp16: bool, cache_dir: Path | None) -> list:
    """Execution providers in preference order for `device` (pure, so it is testable without a GPU)."""
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    index = device.index or 0
    chosen: list = []
    if "TensorrtExecutionProvider" in available:
        opts = {"device_id": index, "trt_fp16_enable": fp16}
        if cache_dir is not None:
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir), trt_timing_cache_enable=True)
        chosen.append(("TensorrtExecutionProvider", opts))
    if "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {"device_id": index}))
    if not chosen:
        raise OnnxRuntimeUnavailable(
            f"onnxruntime has no GPU execution provider (available: {', '.join(available)}); install onnxruntime-gpu or use device cpu"
        )
    return chosen


class OnnxRuntimeBackend:
    """`onnx`: the trunk (path or bytes) with static (batch, 1, tile, tile) input; `infer` takes any number of tiles.

    `int8` says that `onnx` is the INT8 trunk of `mito-export --int8` (CPU only);
    it only labels `precision`, which `run.json` records.
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx: Path | bytes,
        model: torch.nn.Module,
        tile: int,
        batch: int,
        output_names: Sequence[str],
        device: str = "cpu",
        score_threshold: float = 0.05,
        threads: int | None = None,
        fp16: bool = True,
        cache_dir: Path | None = None,
        int8: bool = False,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxRuntimeUnavailable("onnxruntime is not installed (pip install onnxruntime)") from None
        self.device = torch.device(device)
        if int8 and self.device.type != "cpu":
            raise ValueError("the INT8 trunk is for ONNX Runtime on CPU")
        self.tile, self.batch = tile, batch
        self.tiles_per_call = batch
        self.model = model.eval().to(self.device)
        self.model.roi_heads.score_thresh = score_threshold
        if self.device.type == "cpu":
            thread_roi_pooling(self.model.roi_heads, threads)
        self.output_names = list(output_names)
        levels = [n.removeprefix("feat_") for n in self.output_names if n.startswith("feat_")]
        self.heads = Heads(self.model, levels, tile)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's workers spin after each run by default; on a few cores they then steal the CPU
        # the torchvision heads need right after the trunk (measured: the ORT path fell behind torch)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        providers = providers_for(self.device, ort.get_available_providers(), fp16, cache_dir)
        source = onnx if isinstance(onnx, bytes) else str(onnx)
        self.session = ort.InferenceSession(source, sess_options=opts, providers=providers)
        self.providers = self.session.get_providers()
        if int8:
            self.precision = "int8"
        else:  # FP16 only where ONNX Runtime's TensorRT provider builds the trunk with it
            self.precision = "fp16" if fp16 and self.providers[0] == "TensorrtExecutionProvider" else "fp32"
        shape = tuple(self.session.get_inputs()[0].shape)
        if shape != (batch, 1, tile, tile):
            raise ValueError(f"ONNX input {INPUT_NAME!r} has shape {shape}, expected {(batch, 1, tile, tile)}")
        if self.device.type == "cuda":
            shapes = {o.name: tuple(o.shape) for o in self.session.get_outputs()}
            self._outputs = [torch.empty(shapes[n], dtype=torch.float32, device=self.device) for n in self.output_names]

    @torch.inference_mode()
    def infer(self, tiles: np.ndarray, box_filters: Sequence[BoxFilter] | None = None) -> list[Detections]:
        out: list[Detections] = []
        for (block, n), filters in zip(padded_batches(tiles, self.batch), batch_filters(box_filters, len(tiles), self.batch)):
            trunk = self._run_cuda(block) if self.device.type == "cuda" else self._run_cpu(block)
            out.extend(to_detections(self.heads(trunk, filters))[:n])
        return out

    def _run_cpu(self, block: np.ndarray) -> list[torch.Tensor]:
        outputs = self.session.run(self.output_names, {INPUT_NAME: block[:, None]})
        return [torch.from_numpy(o) for o in outputs]

    def _run_cuda(self, block: np.ndarray) -> list[torch.Tensor]:
        """I/O binding on torch CUDA tensors: ONNX Runtime reads and writes torch's memory directly."""
        x = torch.from_numpy(block)[:, None].to(self.device)
        torch.cuda.current_stream(self.device).synchronize()  # ONNX Runtime runs on its own stream
        binding = self.session.io_binding()
        index = self.device.index or 0
        binding.bind_input(INPUT_NAME, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        for name, t in zip(self.output_names, self._outputs):
            binding.bind_output(name, "cuda", index, np.float32, tuple(t.shape), t.data_ptr())
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return self._outputs
