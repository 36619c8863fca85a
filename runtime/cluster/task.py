"""The unit of work on a worker: one input, read by path, processed by the local pipeline's own code.

`process_input` is `pipeline.process_decoded` on the worker's warm model: the outputs and, last, the
record are written atomically into OUT, so a task killed halfway leaves no record and its rerun (on
any worker) writes the same files again. Where the worker does not see OUT (`ModelPlugin.out_shared`)
it writes into a scratch folder instead and returns the files for the client to write (`returned`).
`watch_input` is the same for `mito-watch`, with its completeness check and "not yet" outcome.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..pipeline import output_paths, process_decoded, write_failure
from ..reader import InputItem, decode
from ..results import ImageResult
from .estimates import Seed, estimate_key, made, plant


@dataclass
class TaskResult:
    result: ImageResult | None  # None: a watched file that is not complete yet (`not_yet` says why)
    worker: str  # the worker's name
    files: dict[str, bytes] | None = None  # outputs to write on the client (OUT not shared); None: written already
    not_yet: str = ""
    seconds: float = 0.0
    moved_bytes: int = 0  # bytes of `files`
    made: Seed | None = None  # a leader's scale estimate, for the other inputs of its key


def _plugin(plugin: str):
    from distributed import get_worker

    return get_worker().plugins[plugin]


def _collect(scratch: Path, result: ImageResult) -> dict[str, bytes]:
    """The outputs `result` lists (its record excepted: the client writes that from `result`)."""
    record = output_paths(result.name, result.key)["record"][0]
    return {rel: (scratch / rel).read_bytes() for rel in result.outputs if rel != record}


def _run(plugin: str, out_dir: str, marker: str, work) -> TaskResult:
    """`work(state, segmenter, folder)` -> (result, not_yet, made) into OUT when this worker shares it,
    else into a scratch folder whose files are returned."""
    state = _plugin(plugin)
    segmenter = state.ready_segmenter()  # raises ModelMissing / ModelUnavailable: handled by the client
    shared = state.out_shared(out_dir, marker)
    folder = Path(out_dir) if shared else Path(tempfile.mkdtemp(prefix="mitotally-out-"))
    t0 = time.perf_counter()
    try:
        result, not_yet, made_seed = work(state, segmenter, folder)
        files = None if shared or result is None else _collect(folder, result)
    finally:
        if not shared:
            shutil.rmtree(folder, ignore_errors=True)
    moved = sum(len(v) for v in (files or {}).values())
    return TaskResult(result, state.worker_name, files, not_yet, time.perf_counter() - t0, moved, made_seed)


def process_input(item: InputItem, out_dir: str, plugin: str, marker: str, seed: Seed | None = None) -> TaskResult:
    """Segment, measure and write one input (all planes of a stack) on this worker; `seed`: its key's
    scale estimate, or (a leader) the key whose estimate it makes and returns (`estimates`)."""
    def work(state, segmenter, folder):
        decoded = decode(item)  # outside the lock: a worker with two threads reads the next input meanwhile
        with state.lock:
            plant(segmenter, seed, state.planted)
            result = process_decoded(decoded, segmenter, folder, state.config, source={"worker": state.worker_name})
            return result, "", made(segmenter, seed)

    return _run(plugin, out_dir, marker, work)


def key_of(item: InputItem, plugin: str):
    """The scale-estimate key of `item` (`estimates.estimate_key`), None when unreadable or without one."""
    state = _plugin(plugin)
    segmenter = state.ready_segmenter()
    decoded = decode(item)
    try:
        return None if decoded.error is not None else estimate_key(decoded.first, segmenter, state.config)
    finally:
        decoded.close()


def watch_input(path: str, key: str, name: str, sha256: str, final: bool, out_dir: str, plugin: str,
                marker: str) -> TaskResult:
    """`watch.processor.PipelineProcessor.process` on this worker: an incomplete or undecodable file is
    only "not yet" (nothing recorded) until its `final` attempt."""
    from ..watch.processor import _prepare  # the watcher's own completeness check + decode

    def work(state, segmenter, folder):
        decoded, error = _prepare(Path(path), key, name)
        source = {"sha256": sha256, "worker": state.worker_name}
        if decoded is None:
            if not final:
                return None, error or "unreadable", None
            return write_failure(folder, key, Path(path), error or "unreadable", source=source, name=name), "", None
        with state.lock:
            return process_decoded(decoded, segmenter, folder, state.config, source=source), "", None

    return _run(plugin, out_dir, marker, work)
