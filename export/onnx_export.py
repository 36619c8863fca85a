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
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
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


def export_trunk(model: torch.nn.Module, out_dir: Path, tile: int, batch: int, opset: int = MIN_OPSET) -> OnnxExport:
    """Write `trunk.onnx` atomically into `out_dir`; returns its manifest entry (not yet verified)."""
    trunk = Trunk(model.eval().cpu())
    data = onnx_bytes(trunk, tile, batch, opset)
    path = Path(out_dir) / ONNX_FILE
    atomic_write_bytes(path, data)
    return OnnxExport(
        file=ONNX_FILE,
        sha256=hashlib.sha256(data).hexdigest(),
        tile=tile,
        batch=batch,
        opset=opset,
        input=INPUT_NAME,
        outputs=tuple(trunk.output_names),
        torch_version=torch.__version__,
        verification={},
    )


def model_file(model_dir: Path, name: str) -> Path:
    """A file named by the manifest, refused if the name would lead out of the model folder."""
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{Path(model_dir) / 'model.json'}: export file name {name!r} must be a plain file name inside the model folder")
    return Path(model_dir) / name
