"""Check an exported trunk twice before it is recorded: tensor by tensor, then instance by instance.

1. Trunk parity: ONNX Runtime (CPU) vs PyTorch on real tiles, every output
   within rtol 1e-3 / atol 1e-5 (torchvision's own ONNX test tolerance).
   The PyTorch reference runs the same weights in float64: two FP32
   implementations each carry ~1.5e-5 of rounding on FPN features of
   magnitude ~5, so FP32-vs-FP32 adds both and fails atol 1e-5 on a handful
   of near-zero values, while each is within tolerance of the exact result.
   The FP32 PyTorch trunk's own distance to the reference is reported too.
2. End to end: whole images through tiling, heads, pasting and stitching with
   the ONNX trunk vs the PyTorch trunk; instances must agree at F1@0.5 >= 0.99
   (StarDist-style matching from `trainer.metrics`).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..runtime.backends import Backend
from ..runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from ..runtime.backends.torch_backend import Trunk, TorchBackend, strict_fp32
from ..runtime.image_io import read_image
from ..runtime.instances import Instances
from ..runtime.manifest import Manifest
from ..runtime.prepare import preprocess
from ..runtime.segment import segment_scaled
from ..runtime.tiling import TileGrid
from ..runtime.matching import match_image, pooled_stats

RTOL, ATOL = 1e-3, 1e-5
MIN_F1 = 0.99
IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class OutputCheck:
    name: str
    max_abs_error: float
    violations: int  # elements with |actual - expected| > atol + rtol * |expected|

    @property
    def ok(self) -> bool:
        return self.violations == 0


def compare_outputs(names: Sequence[str], expected: Sequence[np.ndarray], actual: Sequence[np.ndarray],
                    rtol: float = RTOL, atol: float = ATOL) -> list[OutputCheck]:
    checks = []
    for name, e, a in zip(names, expected, actual, strict=True):
        if e.shape != a.shape:
            raise ValueError(f"output {name}: shape {a.shape} != expected {e.shape}")
        err = np.abs(a.astype(np.float64) - e.astype(np.float64))
        bad = int(np.count_nonzero(err > atol + rtol * np.abs(e)))
        checks.append(OutputCheck(name, float(err.max()) if err.size else 0.0, bad))
    return checks


@dataclass(frozen=True)
class VerifyImage:
    name: str
    array: np.ndarray
    pixel_size_nm: float | None


def load_images(paths: Sequence[Path]) -> list[VerifyImage]:
    """Files, or the images directly inside folders (not recursive)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        else:
            files.append(p)
    out = []
    for f in files:
        data = read_image(f)
        out.append(VerifyImage(f.name, data.array, data.pixel_size_nm))
    return out


def as_the_runtime_sees(images: Sequence[VerifyImage], model: torch.nn.Module, manifest: Manifest) -> list[VerifyImage]:
    """Each frame as `mito-run` segments it (`segmenter.choose_view`): without a data bar, and, when it has no
    pixel size, at the scale the runtime estimates. Why: INT8 ranges calibrated on a bar or at a 4x wrong
    scale are ranges of inputs the runtime never feeds, and agreement checked there proves nothing."""
    from ..runtime.image_io import ImageData
    from ..runtime.scale_memory import ScaleMemory
    from ..runtime.segmenter import choose_view

    backend = TorchBackend(model, manifest.tile, 1, "cpu", manifest.score_threshold)
    estimates = ScaleMemory()  # shared by frames as the runtime shares them
    out = []
    for image in images:
        view = choose_view(ImageData(Path(image.name), image.array, image.pixel_size_nm), image.pixel_size_nm,
                           backend, manifest, estimates=estimates)
        out.append(VerifyImage(image.name, view.array, view.scaling_pixel_size_nm))
    return out


def synthetic_images(manifest: Manifest, n: int = 2, seed: int = 0) -> list[VerifyImage]:
    """EM-like frames (dark ellipses with darker membranes on mid-gray) at the model's pixel size, ~2x2 tiles each."""
    from scipy import ndimage
    from skimage.draw import ellipse

    rng = np.random.default_rng(seed)
    side = 2 * manifest.tile - manifest.overlap // 2
    frames = []
    for i in range(n):
        labels = np.zeros((side, side + 16 * i), np.int32)
        for k in range(1, int(labels.size / 3000) + 1):
            a, b = rng.uniform(6, 24, size=2)
            rr, cc = ellipse(*rng.uniform(0, labels.shape), a, b, shape=labels.shape, rotation=rng.uniform(0, np.pi))
            if len(rr) and not labels[rr, cc].any():
                labels[rr, cc] = k
        img = np.where(labels > 0, 90.0, 170.0)
        edge = (labels > 0) & ~ndimage.binary_erosion(labels > 0, iterations=2)
        img[edge] = 40.0
        img = ndimage.gaussian_filter(img, 1.0) + rng.normal(0, 8, labels.shape)
        frames.append(VerifyImage(f"synthetic_{i}", np.clip(img, 0, 255).astype(np.uint8), manifest.pixel_size_nm))
    return frames


def prepare(image: VerifyImage, manifest: Manifest) -> tuple[np.ndarray, float]:
    """The model's input (`runtime.prepare.preprocess`, as `mito-run` and `mito-train` make it) and the output
    pixels per model pixel. Frames from files are already the runtime's view, data bar left out
    (`as_the_runtime_sees`)."""
    px = image.pixel_size_nm or manifest.default_input_pixel_size_nm
    factor = px / manifest.pixel_size_nm
    return preprocess(image.array, manifest.normalization, factor), 1.0 / factor


def segment_image(backend: Backend, manifest: Manifest, image: VerifyImage) -> Instances:
    scaled, out_per_model = prepare(image, manifest)
    return segment_scaled(backend, scaled, image.array.shape[:2], out_per_model, manifest.overlap,
                          manifest.score_threshold, manifest.mask_threshold)


def first_tiles(image: VerifyImage, manifest: Manifest, tile: int, batch: int) -> np.ndarray:
    """The first `batch` tiles of an image (repeated when it has fewer), as the trunk sees them."""
    scaled, _ = prepare(image, manifest)
    grid = TileGrid(scaled.shape, tile, min(manifest.overlap, tile - 1))
    tiles = [grid.crop(scaled, t) for t in grid.tiles[:batch]]
    return np.stack([tiles[i % len(tiles)] for i in range(batch)]).astype(np.float32)


def f1_between(reference: Sequence[Instances], other: Sequence[Instances], shapes: Sequence[tuple[int, int]]) -> float:
    """F1@0.5 of `other` against `reference`, pooled over images."""
    matches = [match_image(r.to_label_image(s, np.int32), o.to_label_image(s, np.int32)) for r, o, s in zip(reference, other, shapes)]
    return pooled_stats(matches, 0.5).f1


@dataclass
class Verification:
    trunk: list[OutputCheck]  # ONNX Runtime FP32 vs the float64 PyTorch reference
    torch_fp32: list[OutputCheck]  # PyTorch FP32 vs the same reference, for scale
    f1: float
    instances_torch: int
    instances_onnx: int
    images: list[str]
    source: str  # "files" or "synthetic"

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.trunk) and self.f1 >= MIN_F1

    def failure(self) -> str:
        bad = [f"{c.name} ({c.violations} values off, max |err| {c.max_abs_error:.2e})" for c in self.trunk if not c.ok]
        parts = [f"trunk outputs outside rtol {RTOL}/atol {ATOL}: " + ", ".join(bad)] if bad else []
        if self.f1 < MIN_F1:
            parts.append(f"end-to-end F1@0.5 {self.f1:.4f} < {MIN_F1}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "rtol": RTOL,
            "atol": ATOL,
            "reference": "pytorch float64",
            "trunk": [asdict(c) for c in self.trunk],
            "torch_fp32_max_abs_error": max((c.max_abs_error for c in self.torch_fp32), default=0.0),
            "end_to_end": {"f1@0.5": self.f1, "min_f1": MIN_F1, "instances_torch": self.instances_torch,
                           "instances_onnx": self.instances_onnx, "images": self.images, "source": self.source},
        }


@torch.inference_mode()
def verify_export(model: torch.nn.Module, manifest: Manifest, onnx: bytes, tile: int, batch: int,
                  output_names: Sequence[str], images: list[VerifyImage], source: str, threads: int | None = None) -> Verification:
    """Both checks on CPU; `model` is left in eval mode on the CPU."""
    import onnxruntime as ort

    model = model.eval().cpu()
    tiles = first_tiles(images[0], manifest, tile, batch)
    x = torch.from_numpy(tiles)[:, None]
    expected = [o.numpy() for o in copy.deepcopy(Trunk(model)).double()(x.double())]
    fp32 = compare_outputs(output_names, expected, [o.numpy() for o in Trunk(model)(x)])
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx, sess_options=opts, providers=["CPUExecutionProvider"])
    actual = session.run(list(output_names), {session.get_inputs()[0].name: tiles[:, None]})
    trunk = compare_outputs(output_names, expected, actual)

    torch_backend = TorchBackend(model, tile, batch, "cpu", manifest.score_threshold)
    onnx_backend = OnnxRuntimeBackend(onnx, model, tile, batch, output_names, "cpu", manifest.score_threshold, threads=threads)
    f1, n_ref, n_onnx = backend_agreement(torch_backend, onnx_backend, manifest, images)
    return Verification(trunk, fp32, f1, n_ref, n_onnx, [im.name for im in images], source)


def backend_agreement(reference: Backend, other: Backend, manifest: Manifest, images: Sequence[VerifyImage]) -> tuple[float, int, int]:
    """F1@0.5 of `other`'s instances against `reference`'s on whole images, and both instance counts.

    The reference runs in strict FP32 (no TF32 on CUDA), so it is the precision it claims to be."""
    with strict_fp32():
        ref = [segment_image(reference, manifest, im) for im in images]
    got = [segment_image(other, manifest, im) for im in images]
    return f1_between(ref, got, [im.array.shape[:2] for im in images]), sum(map(len, ref)), sum(map(len, got))
