"""An INT8 trunk for ONNX Runtime on CPU: static quantization calibrated on the user's real tiles.

Why: on a CPU the FP32 trunk already runs at the floating-point ceiling
(ONNX Runtime's convolutions are ~70% of it), so only cheaper arithmetic makes
it faster. INT8 convolutions (VNNI, or AVX2's 8-bit multiply-adds) are ~3x
faster; measured on the shipped model, 2-core EPYC: trunk 90 -> 48 ms per
512 tile, with the same F1 on held-out images (BENCHMARKS.md).

What is quantized, and why not more: only `Conv` (per-channel int8 weights,
uint8 activations, MinMax ranges from calibration tiles), written as
`QLinearConv` nodes (QOperator format): the QDQ format ran the same model
15% slower here (56 vs 48 ms), with its MaxPool out of ONNX Runtime's fast
layout and extra Transposes around every convolution.
GroupNorm, upsampling, the input normalisation and everything after the trunk
(proposal decoding, NMS, RoIAlign, box and mask heads) stay FP32. Weights use
7 bits (`reduce_range`) so AVX2 CPUs without VNNI, whose 8-bit multiply-add
saturates at 16 bits, compute the same result as VNNI ones.

The INT8 file is only recorded when its instances agree with the FP32
PyTorch model's on the given images (F1@0.5 >= MIN_AGREEMENT_F1).
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..runtime.manifest import Manifest
from ..runtime.tiling import TileGrid
from ..runtime.writers.atomic import atomic_write_bytes
from .verify import VerifyImage, prepare

INT8_FILE = "trunk.int8.onnx"
EXPORT_KEY = "onnx_int8"  # the manifest's `exports` entry
MIN_AGREEMENT_F1 = 0.95
MAX_CALIBRATION_TILES = 64


def calibration_tiles(images: Sequence[VerifyImage], manifest: Manifest, tile: int,
                      max_tiles: int = MAX_CALIBRATION_TILES) -> np.ndarray:
    """Tiles as the runtime cuts them (normalised, rescaled), taken in turn from each image, at most `max_tiles`."""
    per_image: list[list[np.ndarray]] = []
    for image in images:
        scaled, _ = prepare(image, manifest)
        grid = TileGrid(scaled.shape, tile, min(manifest.overlap, tile - 1))
        per_image.append([grid.crop(scaled, t).astype(np.float32) for t in grid.tiles])
    tiles: list[np.ndarray] = []
    for k in range(max(map(len, per_image), default=0)):  # round robin: every image contributes
        tiles.extend(t[k] for t in per_image if k < len(t))
    if not tiles:
        raise ValueError("no calibration tiles: give at least one image")
    return np.stack(tiles[:max_tiles])


def _batches(tiles: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """(batch, 1, T, T) blocks; the last one is completed with the first tiles (static batch)."""
    for i in range(0, len(tiles), batch):
        block = tiles[i : i + batch]
        if len(block) < batch:
            block = np.concatenate([block, tiles[: batch - len(block)]])
        yield block[:, None]


def quantize_trunk(fp32_onnx: bytes, tiles: np.ndarray, batch: int, input_name: str) -> bytes:
    """The trunk with INT8 convolutions, activation ranges calibrated on `tiles` (N, T, T)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._blocks = _batches(tiles, batch)

        def get_next(self):
            block = next(self._blocks, None)
            return None if block is None else {input_name: block}

    with tempfile.TemporaryDirectory(prefix="mito-int8-") as tmp:
        src, pre, out = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32_onnx)
        quant_pre_process(str(src), str(pre))  # shape inference + folding, as ONNX Runtime recommends before quantizing
        quantize_static(
            str(pre), str(out), Reader(),
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return out.read_bytes()


@dataclass(frozen=True)
class Int8Export:
    """The manifest entry of an INT8 trunk; stale when `source_sha256` is no longer trunk.onnx's sha256."""

    file: str
    sha256: str
    source_sha256: str  # the FP32 trunk.onnx it was quantized from
    weights_sha256: str
    tile: int
    batch: int
    calibration: dict  # method, images, tiles
    agreement: dict  # f1@0.5 vs FP32 PyTorch, instance counts, images, min_f1
    onnxruntime_version: str

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def passed(self) -> bool:
        return self.agreement["f1@0.5"] >= self.agreement["min_f1"]


def write_int8(data: bytes, out_dir: Path) -> str:
    """Write the INT8 trunk atomically; its sha256."""
    atomic_write_bytes(Path(out_dir) / INT8_FILE, data)
    return hashlib.sha256(data).hexdigest()
