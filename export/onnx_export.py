"""Write the model's convolutional trunk as a static-shape ONNX graph.

Only the trunk is exported (see `runtime.backends.torch_backend`): a whole
torchvision Mask R-CNN exports with `If`/`Loop` nodes and fixed-shape NMS and
RoIAlign that TensorRT cannot batch, and torchvision detection models do not
pass the dynamo exporter yet, so the TorchScript exporter (`dynamo=False`) is
pinned. Static tile and batch let TensorRT pick the fastest kernels.
"""
from __future__ import annotations

import copy
import hashlib
import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..runtime.backends.torch_backend import INPUT_NAME, Trunk
from ..runtime.writers.atomic import atomic_write_bytes

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
    weights_sha256: str = ""  # the model.safetensors it was exported from (a retrained model makes it stale)

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


class TwoLevelGroupNorm(nn.Module):
    """GroupNorm as plain ops whose means are taken in two stages (rows, then the group).

    torch exports GroupNorm as ONNX InstanceNormalization, which ONNX Runtime's
    CPU kernel accumulates over a whole group in one float sum: on a trained
    model's first GroupNorm (4 channels x 256 x 256 = 262k values per group)
    that is off by up to 6.5e-4 and the trunk misses rtol 1e-3/atol 1e-5 on
    ~1% of its values. Averaging rows first, then the row means, is the same
    algebra (equal-sized rows) with ~50x less rounding, and runs as fast.
    """

    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        self.groups, self.eps, self.affine = gn.num_groups, gn.eps, gn.affine
        self.weight, self.bias = gn.weight, gn.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = x.reshape(b, self.groups, c // self.groups * h, w)
        d = y - y.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)
        var = (d * d).mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)
        y = (d / torch.sqrt(var + self.eps)).reshape(b, c, h, w)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1) if self.affine else y


def exportable(trunk: Trunk) -> Trunk:
    """A copy of the trunk with every GroupNorm in its two-level form (the original is untouched)."""
    trunk = copy.deepcopy(trunk)
    for module in list(trunk.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.GroupNorm):
                setattr(module, name, TwoLevelGroupNorm(child))
    return trunk


def onnx_bytes(trunk: Trunk, tile: int, batch: int, opset: int = MIN_OPSET) -> bytes:
    """Serialise the trunk (CPU, FP32, eval) with static shapes and named inputs/outputs."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: use {MIN_OPSET} or newer")
    trunk = exportable(trunk.eval().cpu())
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
    return fp16_exact_initializers(buf.getvalue())


def fp16_exact_initializers(data: bytes, min_size: int = 1024) -> bytes:
    """Store weights that FP16 represents exactly as FP16 + a Cast to FP32: lossless, half the file.

    Weights saved with `save_model(..., fp16=True)` are all FP16-exact, so the
    trunk shipped beside them is ~24 MB instead of ~48 MB (tile 512, ResNet-18).
    The graph still computes in FP32: ONNX Runtime and TensorRT fold the Casts
    when they load it. Weights that are not exact (e.g. folded batch norms)
    stay FP32, so the result never differs from the FP32 export.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    inits, casts = [], []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and np.prod(init.dims) >= min_size:
            w = numpy_helper.to_array(init)
            half = w.astype(np.float16)
            if np.array_equal(half.astype(np.float32), w):
                inits.append(numpy_helper.from_array(half, f"{init.name}.fp16"))
                casts.append(helper.make_node("Cast", [f"{init.name}.fp16"], [init.name], to=TensorProto.FLOAT, name=f"{init.name}.cast"))
                continue
        inits.append(init)
    if not casts:
        return data
    del graph.initializer[:]
    graph.initializer.extend(inits)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString()


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
