"""`mito-run` and `mito-watch` on a Dask cluster: one input per task, outputs written where the worker is.

How a run goes (`dispatch.run_on_cluster`; `mito-watch` uses the same tasks, `watch`):
1. Connect (`start`): `--scheduler tcp://HOST:8786` joins a running cluster; `--workers N` starts N
   worker processes on this machine, one per GPU (pinned by CUDA_VISIBLE_DEVICES) or, on a CPU, with
   the cores split between them (`devices`).
2. Every worker loads the model once (`plugin.ModelPlugin`, a WorkerPlugin) and keeps it for the run.
   The model folder is read by path (a shared file system); a worker that cannot read it, or reads
   other weights there (sha256), is sent the model files once (`bundle`).
3. One task per input (a stack's planes together, `task`): the worker reads the input by path, runs
   `pipeline.process_decoded` and writes the input's outputs and, last, its record into OUT, each
   atomically, exactly as the local path does. A worker that does not see the client's marker file
   in OUT (OUT not on a file system it shares) writes into a local scratch folder and returns the
   files; the client writes them (`returned`).
4. The client rebuilds objects.csv, images.csv and predictions.json from the records
   (`writers.tables.rebuild_tables`, the code that repairs the tables after a crash) and writes
   run.json with the cluster in it (`info`).

Exactly once: tables come from records, one per input key, written last and atomically; a task whose
worker dies is rerun by Dask on another worker and overwrites the same files. Needs the `[cluster]`
extra (`dask[distributed]`); nothing here is imported by the local path.
"""
from __future__ import annotations

EXTRA_HINT = "the cluster options need Dask: pip install 'mitotally[cluster]' (dask[distributed])"


class ClusterError(Exception):
    """The run cannot use the cluster (extra missing, scheduler unreachable, model or inputs unusable); one line."""


def require_distributed() -> None:
    """Raise `ClusterError` naming the extra when `distributed` is not installed."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ClusterError(f"{EXTRA_HINT} ({exc})") from None


__all__ = ["ClusterError", "EXTRA_HINT", "require_distributed"]
