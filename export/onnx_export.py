"""Write the model's convolutional trunk as a static-shape ONNX graph.

Only the trunk is exported (see `runtime.backends.torch_backend`): a whole
torchvision Mask R-CNN exports with `If`/`Loop` nodes and fixed-shape NMS and
RoIAlign that TensorRT cannot batch, and torchvision detection models do not
pass the dynamo exporter yet, so the TorchScript exporter (`dynamo=False`) is
pinned. Static tile and batch let TensorRT pick the fastest kernels.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..runtime.backends.torch_backend import INPUT_NAME, Trunk
from ..runtime.manifest import atomic_write_bytes

ONNX_FILE = "trunk.onnx"
MIN_OPSET = 17


@dataclass(frozen=True)
class OnnxExport:
    """What the manifest records about an exported trunk (file names are relative to the model folder)."""

    file: str
    sha256: str
    tile: int
    batch: int
    opset: int
    input: str
    outputs: tuple[str, ...]
    torch_version: str
    verification: dict  # filled by `verify`; empty until then

    def to_dict(self) -> dict:
        d = asdict(self)
        d["outputs"] = list(self.outputs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "OnnxExport":
        d = dict(d)
        d["outputs"] = tuple(d["outputs"])
        return cls(**d)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_bytes(trunk: Trunk, tile: int, batch: int, opset: int = MIN_OPSET) -> bytes:
    """Serialise the trunk (CPU, FP32, eval) with static shapes and named inputs/outputs."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: use {MIN_OPSET} or newer")
    trunk = trunk.eval().cpu()
    dummy = torch.full((batch, 1, tile, tile), 0.5)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # expected with a pinned TorchScript export of a static graph: the deprecation notice, and the
        # tracer freezing GroupNorm's shape checks (shapes are static by design)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.onnx")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            trunk,
            (dummy,),
            buf,
            input_names=[INPUT_NAME],
            output_names=trunk.output_names,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
    return buf.getvalue()


def write_trunk(data: bytes, out_dir: Path, tile: int, batch: int, opset: int, output_names: list[str]) -> OnnxExport:
    """Write serialised trunk bytes as `trunk.onnx` atomically; returns its manifest entry (not yet verified)."""
    atomic_write_bytes(Path(out_dir) / ONNX_FILE, data)
    return OnnxExport(
        file=ONNX_FILE,
        sha256=hashlib.sha256(data).hexdigest(),
        tile=tile,
        batch=batch,
        opset=opset,
        input=INPUT_NAME,
        outputs=tuple(output_names),
        torch_version=torch.__version__,
        verification={},
    )


def export_trunk(model: torch.nn.Module, out_dir: Path, tile: int, batch: int, opset: int = MIN_OPSET) -> OnnxExport:
    """Export and write `trunk.onnx` into `out_dir` (no verification: `mito-export` verifies before writing)."""
    trunk = Trunk(model.eval().cpu())
    return write_trunk(onnx_bytes(trunk, tile, batch, opset), out_dir, tile, batch, opset, trunk.output_names)
