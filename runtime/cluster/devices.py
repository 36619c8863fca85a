"""Which device and how many CPU threads each local worker process gets (`--workers N`); pure, no Dask.

Why: one model per GPU is the fastest arrangement (the GPU runs one image's tiles at a time anyway),
and on a CPU N processes with their own model beat one process only if they do not fight over the
cores. So worker i is pinned to GPU i mod G through CUDA_VISIBLE_DEVICES (set before its process
starts, so it sees exactly one GPU and `cuda` means that one), and each process gets
cores // N threads for torch, ONNX Runtime and the BLAS libraries.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # Dask sets them to 1 otherwise


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    threads: int  # CPU threads of this process (torch.set_num_threads, ONNX Runtime, BLAS)
    device: str  # the RunConfig device inside the worker: cuda (its one visible GPU), cpu or auto
    gpu: str | None = None  # the CUDA_VISIBLE_DEVICES entry it is pinned to (None: CPU)
    env: dict[str, str] = field(default_factory=dict)


def usable_cores() -> int:
    """Cores this process may run on (a batch job's allocation, not the whole node)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def visible_gpus(device: str, count: int, env_visible: str | None) -> list[str]:
    """GPU ids, as CUDA_VISIBLE_DEVICES names them, that local workers go to; [] for CPU workers.

    `count`: GPUs torch sees; `env_visible`: this process's CUDA_VISIBLE_DEVICES (None: unset).
    `cuda:K` puts every worker on the K-th visible GPU."""
    if device == "cpu" or count < 1:
        return []
    ids = [s.strip() for s in env_visible.split(",") if s.strip()] if env_visible else []
    ids = ids[:count] if ids else [str(i) for i in range(count)]
    if device.startswith("cuda:"):
        k = int(device[5:])
        if k >= len(ids):
            raise ValueError(f"--device {device}: only {len(ids)} GPU(s) visible")
        return [ids[k]]
    return ids


def local_worker_specs(n: int, device: str, gpus: list[str], cores: int, threads: int | None = None) -> list[WorkerSpec]:
    """N workers: on GPUs round-robin (one per GPU when N equals the GPU count), each with
    `threads` (default cores // N, at least 1) CPU threads."""
    if n < 1:
        raise ValueError(f"--workers must be at least 1, got {n}")
    if device.startswith("cuda") and not gpus:
        raise ValueError(f"--device {device}: no GPU visible")
    per = threads or split_cores(cores, n)
    specs = []
    for i in range(n):
        gpu = gpus[i % len(gpus)] if gpus else None
        env = {name: str(per) for name in THREAD_VARIABLES}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        specs.append(WorkerSpec(str(i), per, "cuda" if gpu is not None else device, gpu, env))
    return specs


def processes_per_host(hosts: list[str]) -> dict[str, int]:
    """Worker processes per host of an existing cluster: each splits its host's cores by this count."""
    counts: dict[str, int] = {}
    for h in hosts:
        counts[h] = counts.get(h, 0) + 1
    return counts


def split_cores(cores: int, processes: int) -> int:
    return max(1, cores // max(1, processes))
