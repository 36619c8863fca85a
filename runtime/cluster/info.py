"""run.json for a cluster run: `writers.run_info`'s document from what the workers said, plus `cluster`.

The client loads no model, so `RemoteModel` stands in for the `Segmenter` that `run_info` reads:
the manifest, weights hash and backend as the first ready worker reports them. `cluster` records
the scheduler, every worker (device, backend, threads, where its model came from, whether it wrote
into OUT itself) and the devices; `scale_estimates` lists each worker's own estimates (each worker
keeps its own memory, so images.csv's `scale_estimate` numbers count per worker; a record's
`source.worker` says which worker processed the input).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from ..manifest import Manifest
from ..writers import atomic_write_bytes
from ..writers.run_info import run_info


@dataclass
class RemoteModel:
    """What `run_info` reads of a `Segmenter`, as the workers report it."""

    model_dir: Path
    weights_sha256: str
    manifest: Manifest
    backend: SimpleNamespace
    backend_reason: str
    backend_skipped: dict = field(default_factory=dict)
    device: str = ""
    scale_estimates: None = None  # per worker: see `cluster_section`


def remote_model(model_dir: Path, weights_sha256: str, workers: dict[str, dict]) -> RemoteModel:
    ready = [w for w in workers.values() if "backend" in w]
    if not ready:
        raise ValueError("no worker has loaded the model")
    first = ready[0]
    devices = sorted({w["device"] for w in ready})
    b = first["backend"]
    backends = sorted({w["backend"]["name"] for w in ready})
    reason = b["reason"] if len(backends) == 1 else f"workers differ: {', '.join(backends)} (see cluster.workers)"
    return RemoteModel(model_dir, weights_sha256, Manifest.from_dict(first["manifest"]),
                       SimpleNamespace(name=b["name"] if len(backends) == 1 else "mixed", precision=b["precision"],
                                       tile=b["tile"], batch=b["batch"]),
                       reason, b["skipped"], devices[0] if len(devices) == 1 else ", ".join(devices))


def cluster_section(kind: str, address: str, workers: dict[str, dict], shared_out: dict[str, bool]) -> dict:
    listed = []
    for address_, w in sorted(workers.items(), key=lambda kv: str(kv[1].get("name"))):
        listed.append({
            "name": w.get("name"), "address": address_, "host": w.get("host"), "pid": w.get("pid"),
            "device": w.get("device"), "cuda_visible_devices": w.get("cuda_visible_devices"),
            "threads": w.get("threads"), "backend": (w.get("backend") or {}).get("name"),
            "precision": (w.get("backend") or {}).get("precision"), "model_from": w.get("model_from"),
            "model_load_s": w.get("load_s"), "writes_out": shared_out.get(address_, None),
        })
    return {"kind": kind, "scheduler": address, "n_workers": len(listed),
            "devices": sorted({str(w["device"]) for w in listed if w["device"]}), "workers": listed}


def scale_estimates(workers: dict[str, dict]) -> list[dict]:
    return [{"worker": w.get("name"), **e} for w in workers.values() for e in w.get("scale_estimates", [])]


def cluster_run_info(model: RemoteModel, config, summary, cluster: dict, workers: dict[str, dict]) -> dict:
    info = run_info(model, config, summary)
    info["scale_estimates"] = scale_estimates(workers)
    info["cluster"] = cluster
    return info


def write_cluster_run_json(out_dir: Path, info: dict) -> Path:
    path = Path(out_dir) / "run.json"
    atomic_write_bytes(path, json.dumps(info, indent=2, ensure_ascii=False).encode("utf-8"))
    return path
