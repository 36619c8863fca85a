"""`mito-run ... --scheduler ADDR | --workers N`: the cluster run behind the usual progress bar and summary.

Exit status as `mito-run`'s: 2 when the cluster, the model or the inputs cannot be used at all (one
line saying which), 1 when an input failed or the cluster was lost mid-run (finished inputs are kept,
a rerun does the rest), 130 on Ctrl-C.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..pipeline import RunConfig
from ..reader import InputItem
from ..writers.tables import rebuild_tables
from . import ClusterError, require_distributed


def _first_readable(items: Sequence[InputItem]) -> Path | None:
    """An input this machine can read, to check the workers read it too (unreadable ones fail as rows)."""
    return next((item.path for item in items if os.access(item.path, os.R_OK)), None)


def run_command(items: Sequence[InputItem], out: Path, config: RunConfig, scheduler: str | None,
                workers: int | None, err) -> int:
    from ..run_cli import RunReporter
    from ..segmenter import ModelNotFound

    def say(kind: str, message: str) -> None:
        err.print(f"mito-run: {kind}: {message}", markup=False)

    try:
        require_distributed()
        from .dispatch import run_on_cluster
        from .info import remote_model
        from .start import LOCAL, open_connection
        from .workers import WorkerPool, resolve_model_dir

        resolve_model_dir(config)  # a missing model fails before any worker starts
        conn = open_connection(scheduler, workers, config.device, config.threads)
    except (ClusterError, ModelNotFound, OSError, ValueError) as exc:
        say("error", str(exc))
        return 2
    pool, interrupted = None, False
    try:
        try:
            pool = WorkerPool(conn, config, out)
            pool.start(_first_readable(items))
        except (ClusterError, ModelNotFound, OSError, ValueError) as exc:
            say("error", str(exc))
            return 2
        for notice in (pool.out_notice(), pool.model_notice()):
            if notice:
                say("note", notice)
        reporter = RunReporter(err, len(items), quiet=config.quiet)
        try:
            with reporter:
                summary = run_on_cluster(items, pool, out, config, on_result=reporter.update)
        except KeyboardInterrupt:
            interrupted = True
            say("interrupted", f"queued images cancelled; finished images are kept in {out} (rerun to continue)")
            return 130
        except ClusterError as exc:
            say("error", f"{exc}; finished images are kept in {out} (rerun to continue)")
            return 1
        devices = sorted({str(w.get("device")) for w in pool.workers.values() if w.get("device")})
        where = f"cluster: {len(pool.workers)} worker(s) on {', '.join(devices) or '?'} at {conn.address}"
        try:
            model = remote_model(pool.model_dir, pool.weights_sha256, pool.workers)
            where = f"{model.backend_reason}, {model.backend.precision} trunk; {where}"
        except ValueError:  # every worker gone by the end
            pass
        reporter.summary(summary, out, backend=where)
        if summary.table_error:
            say("error", f"{summary.table_error} (rerun to rebuild them)")
        return 0 if not summary.failed and not summary.table_error else 1
    finally:
        if pool is not None:
            pool.close()
        conn.close()
        if interrupted and conn.kind == LOCAL:  # images the workers were on may have landed meanwhile
            try:
                rebuild_tables(out)
            except OSError:
                pass
