"""The model on each worker: loaded once when the worker joins (a Dask WorkerPlugin) and kept warm.

Why a plugin: Dask hands it to every worker, also to one that joins or is restarted later, and
calls `setup` there before any task, so no task pays for loading the model. One plugin per run
(its name carries the run's token), removed at the end, so runs sharing a cluster do not meet.

States: `ready` (a `Segmenter` is loaded), `missing` (the model folder is not readable at the
client's path, or holds other weights: the client then sends the files, `bundle`), `error` (it
cannot load here, e.g. a backend this worker lacks: the run stops with that line). The model is
used by one task at a time per worker (`lock`): backends keep I/O buffers, and a worker started
with several threads must not run two images through one model at once.
"""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from ..manifest import MANIFEST, WEIGHTS
from ..pipeline import RunConfig
from ..scale_memory import NEVER, WATCH_EXPIRY
from .bundle import remove_unpacked, unpack_bundle
from .devices import split_cores, usable_cores

READY, MISSING, ERROR = "ready", "missing", "error"


class ModelMissing(Exception):
    """This worker has no model yet (the folder is not readable there); args: (worker address, why)."""


class ModelUnavailable(Exception):
    """The model cannot be loaded on this worker; args: (one line naming the worker and the cause,)."""


class ModelPlugin(WorkerPlugin):
    def __init__(self, model_dir: str, weights_sha256: str, config: RunConfig, threads: int | None = None,
                 processes_per_host: dict[str, int] | None = None, watch: bool = False, ignore_sigint: bool = False):
        self.model_dir, self.weights_sha256, self.config = str(model_dir), weights_sha256, config
        self.threads = threads  # local workers: cores // N, set by the client; None: split this host's cores
        self.processes_per_host = dict(processes_per_host or {})
        self.watch = watch  # mito-watch: scale estimates expire (scale_memory.WATCH_EXPIRY)
        self.ignore_sigint = ignore_sigint  # local workers: Ctrl-C in the terminal is the client's to handle

    # --- on the worker ----------------------------------------------------------------

    async def setup(self, worker) -> None:
        if self.ignore_sigint and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # also after a restart (see `start.ignoring_sigint`)
        self.address, self.worker_name, self.host = worker.address, str(worker.name), worker.ip
        self.lock = threading.Lock()
        self.segmenter, self.state, self.why, self.model_from, self.unpacked = None, MISSING, "", "", None
        self.load_s = 0.0
        self._out_checked: dict[tuple[str, str], bool] = {}
        self.planted: set = set()  # scale-estimate keys this worker's memory holds (`estimates.plant`)
        await asyncio.get_running_loop().run_in_executor(None, self._load_by_path)

    def teardown(self, worker) -> None:
        self.segmenter = None
        remove_unpacked(self.unpacked)

    def cpu_threads(self) -> int:
        if self.config.threads:
            return self.config.threads
        if self.threads:
            return self.threads
        return split_cores(usable_cores(), self.processes_per_host.get(self.host, 1))

    def _load_by_path(self) -> None:
        folder = Path(self.model_dir)
        if not ((folder / MANIFEST).is_file() and os.access(folder / WEIGHTS, os.R_OK)):
            self.state, self.why = MISSING, f"{folder} is not readable on this worker"
            return
        self._load(folder, "path")

    def _load(self, folder: Path, source: str) -> None:
        from ..segmenter import Segmenter

        try:
            import torch

            c, threads = self.config, self.cpu_threads()
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            seg = Segmenter(folder, backend=c.backend, device=c.device, batch=c.batch, tile=c.tile,
                            score_threshold=c.score_threshold, mask_threshold=c.mask_threshold, precision=c.precision,
                            threads=threads, scale_estimate=c.scale_estimate, skip_data_bars=c.skip_data_bars,
                            scale_expiry=WATCH_EXPIRY if self.watch else NEVER, tta=c.tta,
                            contrast=c.contrast)
        except Exception as exc:  # noqa: BLE001 - reported to the client in one line, which stops the run
            self.state, self.why = ERROR, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
            return
        if seg.weights_sha256 != self.weights_sha256:
            self.state, self.why = MISSING, f"{folder} holds other weights on this worker (sha256 {seg.weights_sha256[:12]})"
            return
        self.segmenter, self.state, self.why, self.model_from = seg, READY, "", source
        self.load_s = time.perf_counter() - t0

    async def install(self, bundle: dict[str, bytes]) -> None:
        """Load the model from files the client sent (this worker could not read the folder)."""
        def load():
            self.unpacked = unpack_bundle(bundle)
            self._load(self.unpacked, "sent by the client")

        if self.state != READY:
            await asyncio.get_running_loop().run_in_executor(None, load)

    def ready_segmenter(self):
        if self.state == READY:
            return self.segmenter
        if self.state == MISSING:
            raise ModelMissing(self.address, self.why)
        raise ModelUnavailable(f"worker {self.worker_name} ({self.address}): cannot load the model: {self.why}")

    def out_shared(self, out_dir: str, marker: str) -> bool:
        """Does this worker see the client's OUT (the marker file the client wrote there, writable)?"""
        key = (out_dir, marker)
        if key not in self._out_checked:
            path = Path(out_dir) / marker
            try:
                seen = path.read_text(encoding="utf-8") == marker
            except OSError:
                seen = False
            self._out_checked[key] = seen and os.access(out_dir, os.W_OK)
        return self._out_checked[key]

    def describe(self) -> dict:
        seg = self.segmenter
        out = {"name": self.worker_name, "address": self.address, "host": self.host, "pid": os.getpid(),
               "state": self.state, "why": self.why, "model_from": self.model_from, "threads": self.cpu_threads(),
               "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "load_s": round(self.load_s, 3)}
        if seg is not None:
            b = seg.backend
            out.update(device=seg.device, manifest=seg.manifest.to_dict(), weights_sha256=seg.weights_sha256,
                       backend={"name": b.name, "precision": getattr(b, "precision", "fp32"), "reason": seg.backend_reason,
                                "skipped": dict(seg.backend_skipped), "tile": b.tile, "batch": b.batch},
                       scale_estimates=[r.to_dict() for r in seg.scale_estimates.made()])
        return out


# --- called through Client.run (dask_worker is filled in by Dask) ------------------------


def describe_worker(plugin: str, dask_worker=None) -> dict:
    found = dask_worker.plugins.get(plugin)
    if found is None:
        return {"name": str(dask_worker.name), "address": dask_worker.address, "host": dask_worker.ip,
                "state": MISSING, "why": "the model plugin has not reached this worker yet"}
    return found.describe()


async def install_bundle(plugin: str, bundle: dict[str, bytes], dask_worker=None) -> dict:
    found = dask_worker.plugins[plugin]
    await found.install(bundle)
    return found.describe()


def can_read(path: str, dask_worker=None) -> bool:
    """Is `path` (an input) readable on this worker?"""
    return os.access(path, os.R_OK)
