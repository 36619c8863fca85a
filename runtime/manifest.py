"""A model travels as `model.safetensors` + `model.json`: weights plus everything needed to use them."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .model import ModelConfig, build_model
from .writers.atomic import atomic_write_bytes, temp_path
from .normalize import Normalization

MANIFEST = "model.json"
WEIGHTS = "model.safetensors"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """What the runtime must know to reproduce what the model saw in training."""

    model: ModelConfig = field(default_factory=ModelConfig)
    normalization: Normalization = field(default_factory=Normalization)
    pixel_size_nm: float = 10.0  # the model sees images at this pixel size
    default_input_pixel_size_nm: float = 5.0  # assumed when an input carries no pixel size
    tile: int = 512
    overlap: int = 128
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    # `mito-run --tta`'s score threshold (a fused score is a mean over flipped views, so it runs lower);
    # None: score_threshold. Chosen on the validation blocks like the others
    tta_score_threshold: float | None = None
    classes: tuple[str, ...] = ("background", "mitochondrion")
    training: dict = field(default_factory=dict)  # data summary, config, code version
    metrics: dict = field(default_factory=dict)  # validation metrics of these weights
    exports: dict = field(default_factory=dict)  # e.g. {"onnx": {...}}
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["normalization"] = self.normalization.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown manifest keys: {sorted(unknown)}")
        d = dict(d)
        d["model"] = ModelConfig.from_dict(d.get("model", {}))
        d["normalization"] = Normalization.from_dict(d.get("normalization", {}))
        if "classes" in d:
            d["classes"] = tuple(d["classes"])
        return cls(**d)

    def replace(self, **changes) -> "Manifest":
        from dataclasses import replace

        return replace(self, **changes)


def save_model(directory: Path, manifest: Manifest, state_dict: dict[str, torch.Tensor], fp16: bool = False) -> Path:
    """Write weights and manifest atomically; FP16 storage halves the file, weights load back as FP32."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if fp16 and v.is_floating_point() else v).detach().cpu().contiguous() for k, v in state_dict.items()}
    with temp_path(directory / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_bytes(directory / MANIFEST, json.dumps(manifest.to_dict(), indent=2).encode())
    return directory


def load_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model manifest (expected {MANIFEST} next to {WEIGHTS})")
    return Manifest.from_dict(json.loads(path.read_text()))


def weights_sha256(directory: Path) -> str:
    h = hashlib.sha256()
    with open(Path(directory) / WEIGHTS, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(directory: Path, device: str = "cpu") -> tuple[torch.nn.Module, Manifest]:
    """Build the architecture from the manifest and load the safetensors weights (never a pickle)."""
    manifest = load_manifest(directory)
    model = build_model(manifest.model, manifest.tile)
    state = load_file(str(Path(directory) / WEIGHTS), device="cpu")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state)
    return model.to(device).eval(), manifest


def manifest_lock(model_dir: Path):
    """An OS lock around read-modify-write of model.json: two exports (two GPUs sharing a folder) never lose a record."""
    from filelock import FileLock

    return FileLock(str(Path(model_dir) / (MANIFEST + ".lock")), timeout=120)


def record_export(model_dir: Path, key: str, entry: dict) -> None:
    """Add or replace `exports[key]` in model.json (atomic rewrite under `manifest_lock`; other fields untouched).

    It lives with the manifest: mito-export writes records, the runtime only reads them."""
    with manifest_lock(model_dir):
        manifest = load_manifest(model_dir)
        exports = dict(manifest.exports)
        exports[key] = entry
        data = manifest.replace(exports=exports).to_dict()
        atomic_write_bytes(Path(model_dir) / MANIFEST, json.dumps(data, indent=2).encode())


ENGINES_KEY = "tensorrt"


def recorded_engines(manifest: Manifest) -> list[dict]:
    """Every TensorRT engine recorded for this model folder (one per GPU type, TensorRT, tile and batch)."""
    entry = manifest.exports.get(ENGINES_KEY) or {}
    if "engines" in entry:
        return [e for e in entry["engines"] if isinstance(e, dict)]
    return [entry] if entry.get("file") else []  # a single engine, as recorded before several were kept


def record_engine(model_dir: Path, entry: dict) -> None:
    """Add an engine to model.json, replacing only a record of the same file (engines of other GPUs stay)."""
    with manifest_lock(model_dir):
        manifest = load_manifest(model_dir)
        engines = [e for e in recorded_engines(manifest) if e.get("file") != entry["file"]] + [entry]
        exports = {**manifest.exports, ENGINES_KEY: {"engines": engines}}
        data = manifest.replace(exports=exports).to_dict()
        atomic_write_bytes(Path(model_dir) / MANIFEST, json.dumps(data, indent=2).encode())
