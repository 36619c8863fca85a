"""Getting a cluster: join a running scheduler (`--scheduler`) or start worker processes here (`--workers`).

Local workers are Nannies (a worker process each, restarted if it dies) with one task thread each:
the model runs one image at a time, so throughput comes from processes, not threads. Each is started
with its own environment (`devices.local_worker_specs`: CUDA_VISIBLE_DEVICES, thread counts), which
LocalCluster cannot do, hence a SpecCluster with one spec per worker. Memory is split evenly between
them; a worker that outgrows its share is restarted by its Nanny and its input retried elsewhere.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import ClusterError, require_distributed
from .devices import WorkerSpec, local_worker_specs, usable_cores, visible_gpus

LOCAL, SCHEDULER = "local processes", "scheduler"
CONNECT_TIMEOUT_S = 15


@dataclass
class Connection:
    client: object  # distributed.Client
    address: str  # the scheduler's
    kind: str  # LOCAL or SCHEDULER
    specs: list[WorkerSpec] = field(default_factory=list)  # LOCAL only
    cluster: object | None = None  # the SpecCluster we started (LOCAL)

    def nthreads(self) -> int:
        """Task slots of the workers now connected (at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


@contextmanager
def ignoring_sigint():
    """Worker processes started meanwhile ignore Ctrl-C (an ignored signal survives exec, and Python then
    installs no handler): Ctrl-C in the terminal reaches the whole process group, and only this client
    should act on it, by cancelling the work and closing the workers itself. Ctrl-C is held off while
    the workers start."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _gpu_count(device: str) -> int:
    if device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count()


def start_local(n: int, device: str, threads: int | None) -> Connection:
    """N worker processes on this machine (see `devices`), scheduler on localhost, no dashboard."""
    require_distributed()
    from distributed import Client, Nanny, Scheduler, SpecCluster
    from distributed.system import MEMORY_LIMIT

    try:
        gpus = visible_gpus(device, _gpu_count(device), os.environ.get("CUDA_VISIBLE_DEVICES"))
        specs = local_worker_specs(n, device, gpus, usable_cores(), threads)
    except ValueError as exc:
        raise ClusterError(str(exc)) from None
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")  # worker processes read it when they start: no INFO chatter
    memory = int(MEMORY_LIMIT // n)
    workers = {s.name: {"cls": Nanny, "options": {"nthreads": 1, "env": s.env, "memory_limit": memory, "name": s.name,
                                                  "host": "127.0.0.1"}} for s in specs}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False, "dashboard_address": "127.0.0.1:0"}}
    try:
        with ignoring_sigint():
            cluster = SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.ERROR, name="mitotally")
    except Exception as exc:  # noqa: BLE001 - one line instead of Dask's traceback
        raise ClusterError(f"cannot start {n} local worker process(es): {type(exc).__name__}: {exc}") from None
    client = Client(cluster)
    return Connection(client, cluster.scheduler_address, LOCAL, specs, cluster)


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Connection:
    """A running cluster's scheduler (`dask scheduler`, dask-jobqueue, ...); it must have workers within `timeout_s`."""
    require_distributed()
    from distributed import Client

    try:
        client = Client(address, timeout=timeout_s)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except TimeoutError:
        client.close()
        raise ClusterError(f"the Dask scheduler at {address} has no workers (waited {timeout_s:g} s): start some "
                           f"with `dask worker {address} --nthreads 1`") from None
    return Connection(client, address, SCHEDULER)


def open_connection(scheduler: str | None, workers: int | None, device: str, threads: int | None) -> Connection:
    if scheduler:
        return connect(scheduler)
    return start_local(workers or 1, device, threads)
