"""`pipeline.run` on a cluster: the same skipping, naming, tables and summary, one task per input.

Order of a run: output names are handed out and finished inputs skipped here, as `pipeline.run`
does; unless `--scale-estimate off`, the workers first say each input's scale-estimate key, so each
key's first input makes the estimate its other inputs use, as in a local run (`estimates`); the
inputs go out as tasks, a window of twice the workers' task slots at a time (so Ctrl-C has little
to cancel and a huge folder is not queued on the scheduler at once); results are taken as they
complete, in any order; at the end (also on Ctrl-C or a lost cluster) the tables and run.json are
rebuilt from the records on disk.

What a future can end as, and what it means for its input:
- finished: the worker wrote the outputs and record (or returned them, then they are written here);
- ModelMissing: a worker that joined late has no model: it is sent the files, the input resubmitted;
- KilledWorker: the input killed `distributed.scheduler.allowed-failures` + 1 workers (Dask reran it
  on another worker each time): it is recorded as one failed input, the run goes on;
- any other error: one failed input; ModelUnavailable or a cancelled future: the run stops
  (`ClusterError`), keeping what finished.
"""
from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from ..pipeline import RunConfig, RunSummary, RunTally, write_failure
from ..reader import InputItem
from ..results import ImageResult, failed
from ..writers.tables import rebuild_tables
from . import ClusterError
from .info import cluster_run_info, cluster_section, remote_model, write_cluster_run_json
from .estimates import EstimatePlan
from .plugin import ModelMissing, ModelUnavailable
from .returned import write_returned
from .task import TaskResult, key_of, process_input
from .workers import WorkerPool

MAX_RESUBMITS = 3  # per input, for workers that joined without the model


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


def record_lost(out_dir: Path, item: InputItem, exc: BaseException, source: dict | None = None) -> ImageResult:
    """The failed record of an input whose task did not come back (its workers died, or a bug)."""
    from distributed.scheduler import KilledWorker

    if isinstance(exc, KilledWorker):
        error = (f"its worker process died {exc.allowed_failures + 1} time(s) while processing it (out of memory? "
                 "see the workers' logs)")
    else:
        error = f"cannot process on the cluster: {_short(exc)}"
    try:
        return write_failure(out_dir, item.key, item.path, error, source=source, name=item.name)
    except OSError as os_exc:
        return failed(item.key, str(item.path), f"{error}; cannot write record: {os_exc.strerror or os_exc}", name=item.name)


def land(out_dir: Path, task: TaskResult) -> ImageResult:
    """The task's result, with returned outputs written into OUT first (OUT not shared with that worker)."""
    result = task.result
    if task.files is None:
        return result
    try:
        write_returned(out_dir, result, task.files)
    except OSError as exc:
        error = f"cannot write outputs: {exc.strerror or exc}: {exc.filename or out_dir}"
        result = failed(result.key, result.path, error, result.timings, result.source, result.name)
    return result


class TaskWindow:
    """Tasks in flight, at most twice the workers' task slots; they come back as they complete."""

    def __init__(self, pool: WorkerPool):
        from distributed import as_completed

        self.pool, self.client = pool, pool.conn.client
        self.pending: dict = {}  # future -> (function, args): what to resubmit
        self.completed = as_completed()
        self.resubmits: dict[str, int] = {}

    def fill(self, take: Callable[[], tuple | None]) -> None:
        limit = 2 * self.pool.conn.nthreads()
        while len(self.pending) < limit:
            call = take()
            if call is None:
                return
            self.submit(*call)

    def submit(self, fn, *args) -> None:
        future = self.client.submit(fn, *args, pure=False, key=f"mitotally-{fn.__name__}-{secrets.token_hex(8)}")
        self.pending[future] = (fn, args)
        self.completed.add(future)

    def __iter__(self):
        """(future, args) of each task that came back, resubmitting those that met a worker without the model."""
        for future in self.completed:
            fn, args = self.pending.pop(future)
            if future.status == "error" and self._resubmitted(future.exception(), fn, args):
                continue
            yield future, args
            future.release()

    def _resubmitted(self, exc: BaseException, fn, args) -> bool:
        if isinstance(exc, ModelUnavailable):
            raise ClusterError(str(exc.args[0]) if exc.args else str(exc))
        tag = f"{fn.__name__}:{args[0]!r}"
        if not isinstance(exc, ModelMissing) or self.resubmits.get(tag, 0) >= MAX_RESUBMITS:
            return False
        self.pool.ensure_model(exc.args[0])
        self.resubmits[tag] = self.resubmits.get(tag, 0) + 1
        self.submit(fn, *args)
        return True

    def cancel(self) -> None:
        """Drop what is queued (an image a worker is on finishes there, and its record counts on a rerun)."""
        if self.pending:
            try:
                self.client.cancel(list(self.pending))
            except Exception:  # noqa: BLE001 - the cluster may be gone; nothing of it is needed any more
                pass
            self.pending.clear()


def _outcome(future, item: InputItem, out_dir: Path) -> tuple[ImageResult, object]:
    """(the input's result, the scale estimate it made) from a future that came back."""
    if future.status == "finished":
        task = future.result()
        return land(out_dir, task), task.made
    if future.status == "cancelled":
        raise ClusterError("the cluster dropped the work (scheduler stopped or unreachable?)")
    return record_lost(out_dir, item, future.exception()), None


def estimate_keys(pool: WorkerPool, items: Sequence[InputItem]) -> dict:
    """Every input's scale-estimate key, computed on the workers (`estimates`, step 1)."""
    queue = deque(items)
    keys: dict = {}
    window = TaskWindow(pool)
    try:
        window.fill(lambda: (key_of, queue.popleft(), pool.plugin_name) if queue else None)
        for future, (item, _) in window:
            keys[item.key] = future.result() if future.status == "finished" else None
            window.fill(lambda: (key_of, queue.popleft(), pool.plugin_name) if queue else None)
    finally:
        window.cancel()
    return keys


def run_on_cluster(items: Sequence[InputItem], pool: WorkerPool, out_dir: Path, config: RunConfig,
                   on_result: Callable[[ImageResult], None] | None = None) -> RunSummary:
    """Process `items` on `pool`'s workers (finished ones skipped unless `overwrite`), then rebuild the tables."""
    out_dir = Path(out_dir)
    tally = RunTally(items, out_dir, config.overwrite, on_result)
    todo, collect = tally.todo, tally.collect

    def take():
        nxt = plan.take()
        return None if nxt is None else (process_input, nxt[0], str(out_dir), pool.plugin_name, pool.marker, nxt[1])

    interrupted = False
    window = TaskWindow(pool)
    try:
        keys = estimate_keys(pool, todo) if todo and config.scale_estimate != "off" else {}
        plan = EstimatePlan(todo, keys)
        window.fill(take)
        for future, (item, *_rest) in window:
            result, made_seed = _outcome(future, item, out_dir)
            plan.finished(item, made_seed)
            collect(result)
            window.fill(take)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        window.cancel()
        summary = tally.summary(interrupted)
        finish_run(pool, out_dir, summary)
    return summary


def finish_run(pool: WorkerPool, out_dir: Path, summary: RunSummary) -> None:
    """Tables from the records, then run.json with the cluster; a write failure goes to `summary.table_error`."""
    try:
        pool.refresh()  # the workers' scale estimates, devices after restarts
    except Exception:  # noqa: BLE001 - a lost cluster: run.json keeps what the workers said at the start
        pass
    try:
        rebuild_tables(out_dir)
        model = remote_model(pool.model_dir, pool.weights_sha256, pool.workers)
        cluster = cluster_section(pool.conn.kind, pool.conn.address, pool.workers, pool.shared_out)
        write_cluster_run_json(out_dir, cluster_run_info(model, pool.config, summary, cluster, pool.workers))
    except OSError as exc:
        summary.table_error = f"cannot write the tables in {out_dir}: {exc.strerror or exc}"
    except ValueError as exc:  # no worker ever loaded the model: the tables are written, run.json is not
        summary.table_error = f"run.json not written: {exc}"
