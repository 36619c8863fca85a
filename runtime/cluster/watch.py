"""`mito-watch --scheduler ADDR | --workers N`: the daemon's journal decides, the cluster's workers segment.

The daemon stays the single source of truth: it takes a burst of settled files (journal:
processing), hands them to `process_many`, and commits each outcome as it comes back; a file is
marked done only once its record is written (by the worker into OUT, or here from what the worker
returned). Names are handed out here, never on a worker, so two workers cannot give two files one
name. Everything else (recognising finished work after a crash, recording failures, tables) is
`PipelineProcessor`'s own code, running here. Each worker keeps its own scale estimates, expiring
as the local watcher's do (`scale_memory.WATCH_EXPIRY`).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..pipeline import RunConfig
from ..watch.journal import DONE, FAILED, Journal
from ..watch.processor import _OUTPUT_ERRORS, INPUT, OUTPUT, Outcome, PipelineProcessor
from ..writers import atomic_write_bytes
from . import ClusterError
from .dispatch import TaskWindow
from .info import cluster_section, remote_model, scale_estimates
from .returned import write_returned
from .start import Connection
from .task import TaskResult, watch_input
from .workers import WorkerPool

log = logging.getLogger("mito-watch")


class ClusterProcessor(PipelineProcessor):
    def __init__(self, out_dir: Path, config: RunConfig, conn: Connection):
        self.conn = conn
        self.pool = WorkerPool(conn, config, out_dir, watch=True)
        try:
            self.pool.start(None)
            model = remote_model(self.pool.model_dir, self.pool.weights_sha256, self.pool.workers)
        except BaseException:
            self.pool.close()
            conn.close()
            raise
        for notice in (self.pool.out_notice(), self.pool.model_notice()):
            if notice:
                log.warning("%s", notice)
        log.info("cluster at %s: %d worker(s) on %s", conn.address, len(self.pool.workers), model.device)
        super().__init__(out_dir, self.pool.config, segmenter=model)

    def prefetch(self, path: Path, key: str) -> None:
        """Workers read the files themselves."""

    def process(self, path: Path, key: str, sha256: str, final: bool) -> Outcome:
        for _, outcome in self.process_many([(path, key, sha256, final)]):
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        raise RuntimeError("the cluster returned nothing")

    def process_many(self, jobs: Sequence[tuple[Path, str, str, bool]]) -> Iterator[tuple[int, Outcome | BaseException]]:
        """(index into `jobs`, outcome or the task's exception) as each comes back; closing it cancels the rest."""
        index = {key: i for i, (_, key, _, _) in enumerate(jobs)}
        queue = list(reversed(jobs))
        out, plugin, marker = str(self.out_dir), self.pool.plugin_name, self.pool.marker

        def take():
            if not queue:
                return None
            path, key, sha256, final = queue.pop()
            return watch_input, str(path), key, self._name(key), sha256, final, out, plugin, marker

        window = TaskWindow(self.pool)
        left = set(index.values())
        try:
            window.fill(take)
            for future, args in window:
                i = index[args[1]]
                left.discard(i)
                yield i, self._outcome(future)
                window.fill(take)
        except ClusterError as exc:  # a worker cannot load the model: not these files' fault
            for i in sorted(left):
                yield i, Outcome(OUTPUT, str(exc))
        finally:
            window.cancel()

    def _outcome(self, future) -> Outcome | BaseException:
        if future.status == "cancelled":
            return Outcome(OUTPUT, "the cluster dropped the work (scheduler stopped or unreachable?)")
        if future.status != "finished":
            return future.exception()
        task: TaskResult = future.result()
        if task.result is None:
            return Outcome(INPUT, task.not_yet)
        result = task.result
        if task.files is not None:
            try:
                write_returned(self.out_dir, result, task.files)
            except OSError as exc:
                return Outcome(OUTPUT, f"cannot write record: {exc.strerror or exc}")
        for stage, s in result.timings.items():
            self._timings[stage] = self._timings.get(stage, 0.0) + s
        if result.ok:
            return Outcome(DONE, f"{result.n_objects} mitochondria in {result.planes} plane(s), "
                                 f"{sum(result.timings.values()):.2f} s on worker {task.worker}")
        if result.error.startswith(_OUTPUT_ERRORS):
            return Outcome(OUTPUT, result.error)
        return Outcome(FAILED, result.error)

    def write_run_json(self, journal: Journal, watch: dict, interrupted: bool = False) -> None:
        """The local watcher's run.json, plus the cluster and each worker's scale estimates."""
        super().write_run_json(journal, watch, interrupted)
        try:
            self.pool.refresh()
        except Exception:  # noqa: BLE001 - a lost cluster: keep what the workers said last
            pass
        path = self.out_dir / "run.json"
        info = json.loads(path.read_text(encoding="utf-8"))
        info["scale_estimates"] = scale_estimates(self.pool.workers)
        info["cluster"] = cluster_section(self.conn.kind, self.conn.address, self.pool.workers, self.pool.shared_out)
        atomic_write_bytes(path, json.dumps(info, indent=2, ensure_ascii=False).encode("utf-8"))

    def close(self) -> None:
        try:
            super().close()
        finally:
            try:
                self.pool.close()
            finally:
                self.conn.close()

