"""The model folder as bytes, for a worker that cannot read it by path.

Why: on a cluster the model folder is normally on a shared file system and every worker reads it
where the client does. A worker on a machine without that path (a cloud node, a lab PC) is sent
these files once, by the client, straight to that worker (`Client.run`), and unpacks them into a
scratch folder of its own. Only what the runtime loads travels: the manifest, the weights, exported
ONNX trunks and TensorRT engines (not the model card, curves or recipe).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..manifest import MANIFEST, WEIGHTS

RUNTIME_SUFFIXES = (".json", ".safetensors", ".onnx", ".engine")


def model_bundle(model_dir: Path) -> dict[str, bytes]:
    """Name -> bytes of the files the runtime reads from `model_dir` (its top level only)."""
    model_dir = Path(model_dir)
    files = {p.name: p.read_bytes() for p in sorted(model_dir.iterdir())
             if p.is_file() and not p.name.startswith(".") and p.suffix in RUNTIME_SUFFIXES}
    missing = [n for n in (MANIFEST, WEIGHTS) if n not in files]
    if missing:
        raise FileNotFoundError(f"{model_dir}: no {' or '.join(missing)} to send to the workers")
    return files


def bundle_bytes(bundle: dict[str, bytes]) -> int:
    return sum(len(v) for v in bundle.values())


def unpack_bundle(bundle: dict[str, bytes], parent: str | None = None) -> Path:
    """Write `bundle` into a new scratch folder (removed by `remove_unpacked`) and return it."""
    folder = Path(tempfile.mkdtemp(prefix="mitotally-model-", dir=parent))
    for name, data in bundle.items():
        if Path(name).name != name:
            shutil.rmtree(folder, ignore_errors=True)
            raise ValueError(f"model bundle: unexpected file name {name!r}")
        (folder / name).write_bytes(data)
    return folder


def remove_unpacked(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
