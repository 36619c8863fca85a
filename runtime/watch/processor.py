"""The daemon's view of `mito-run`'s pipeline: process one file, recognise a finished one, rebuild tables.

The daemon decodes each file itself (after the structural completeness
check) and hands the decoded image to `pipeline.process_decoded`, so a file
is read once; during a burst the next file is checked and decoded in a
worker thread while the current one is segmented (one file ahead at most). An incomplete or undecodable file is not recorded until its
last attempt: until then it is only "not yet", and `images.csv` does not list
a failure that a retry may clear. The content hash travels into each record's
`source`, which is what lets a restart recognise work finished just before a
crash.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..names import OutputNames
from ..pipeline import RunConfig, process_decoded, rebuild_tables, write_failure
from ..reader import Decoded, InputItem, decode
from ..scale_memory import WATCH_EXPIRY
from ..segmenter import Segmenter
from ..writers import atomic_write_bytes
from ..writers.run_info import run_info
from ..writers.tables import read_record
from .journal import DONE, FAILED, Journal
from .settle import Incomplete, check_complete

INPUT, OUTPUT = "input", "output"
_OUTPUT_ERRORS = ("cannot write outputs", "cannot write record")  # pipeline's wording for output-side failures


@dataclass(frozen=True)
class Outcome:
    status: str  # done | failed (recorded as failed) | input (incomplete/undecodable, nothing recorded) | output (results not written)
    message: str


class Processor(Protocol):
    def key(self, rel: str) -> str:
        """The output key of the file at `rel` (relative to IN_DIR)."""
        ...

    def process(self, path: Path, key: str, sha256: str, final: bool) -> Outcome:
        """Process one complete-looking file; on the `final` attempt a failure is always recorded."""
        ...

    def recorded(self, key: str, sha256: str) -> tuple[str, str] | None:
        """(status, error) of the record of `key` if that record is for content `sha256`, else None."""
        ...

    def record_failure(self, path: Path, key: str, sha256: str, error: str) -> None: ...

    def rebuild(self) -> None:
        """Rewrite the per-folder tables from the records."""
        ...

    def write_run_json(self, journal: Journal, watch: dict, interrupted: bool = False) -> None: ...

    def prefetch(self, path: Path, key: str) -> None:
        """Hint: `path` is probably next; start reading it (may be ignored)."""
        ...

    def close(self) -> None: ...


def _prepare(path: Path, key: str, name: str) -> tuple[Decoded | None, str | None]:
    """Completeness check + decode: (decoded, None) or (None, why it is not a usable image yet)."""
    try:
        check_complete(path)
    except Incomplete as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"cannot read file: {exc.strerror or exc}"
    decoded = decode(InputItem(Path(path), key, name))
    if decoded.error is not None:
        decoded.close()
        return None, decoded.error
    return decoded, None


def _close_prepared(future: Future) -> None:
    try:
        decoded, _ = future.result()
    except Exception:  # noqa: BLE001 - a dropped read-ahead must never disturb the daemon
        return
    if decoded is not None:
        decoded.close()


class PipelineProcessor:
    """The real thing: the model is loaded once here and stays warm; a scale estimate expires (WATCH_EXPIRY)."""

    def __init__(self, out_dir: Path, config: RunConfig, segmenter: Segmenter | None = None):
        self.out_dir, self.config = Path(out_dir), config
        self.segmenter = segmenter or Segmenter(config.model_dir, config.backend, config.device, config.batch, config.tile,
                                                precision=config.precision, threads=config.threads,
                                                scale_estimate=config.scale_estimate,
                                                skip_data_bars=config.skip_data_bars, scale_expiry=WATCH_EXPIRY,
                                                tta=config.tta, contrast=config.contrast)
        self._started = time.time()
        self._timings: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mito-watch-read")
        self._ahead: tuple[str, str, Future] | None = None
        self._names = OutputNames.of_folder(self.out_dir)  # a record's name is kept; a new file gets a free one

    def key(self, rel: str) -> str:
        return rel  # `reader`'s rule: the POSIX path relative to the input root, here IN_DIR

    def prefetch(self, path: Path, key: str) -> None:
        self._drop_ahead()
        self._ahead = (str(path), key, self._pool.submit(_prepare, Path(path), key, self._name(key)))

    def _drop_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead[2].add_done_callback(_close_prepared)
            self._ahead = None

    def _prepared(self, path: Path, key: str) -> tuple[Decoded | None, str | None]:
        """The read-ahead result if it is for this file, else read now. Safe: the daemon checks size and
        mtime before and after processing, so a file that changed since the read-ahead is redone."""
        if self._ahead is not None and self._ahead[:2] == (str(path), key):
            future, self._ahead = self._ahead[2], None
            return future.result()
        self._drop_ahead()
        return _prepare(Path(path), key, self._name(key))

    def _name(self, key: str) -> str:
        """Output name of `key`: the stem unless another file of this folder holds it (see `names`)."""
        return self._names.assign([key])[key]

    def close(self) -> None:
        self._drop_ahead()
        self._pool.shutdown(wait=True)

    def process(self, path: Path, key: str, sha256: str, final: bool) -> Outcome:
        decoded, error = self._prepared(path, key)
        if decoded is None:
            return self._not_yet(path, key, sha256, error or "unreadable", final)
        result = process_decoded(decoded, self.segmenter, self.out_dir, self.config, source={"sha256": sha256})
        for stage, s in result.timings.items():
            self._timings[stage] = self._timings.get(stage, 0.0) + s
        if result.ok:
            return Outcome(DONE, f"{result.n_objects} mitochondria in {result.planes} plane(s), {sum(result.timings.values()):.2f} s")
        if result.error.startswith(_OUTPUT_ERRORS):
            return Outcome(OUTPUT, result.error)
        return Outcome(FAILED, result.error)

    def _not_yet(self, path: Path, key: str, sha256: str, error: str, final: bool) -> Outcome:
        if not final:
            return Outcome(INPUT, error)
        try:
            self.record_failure(path, key, sha256, error)
        except OSError as exc:
            return Outcome(OUTPUT, f"cannot write record: {exc.strerror or exc}")
        return Outcome(FAILED, error)

    def recorded(self, key: str, sha256: str) -> tuple[str, str] | None:
        rec = read_record(self.out_dir, key)
        if rec is None or rec.source.get("sha256") != sha256:
            return None
        return (DONE, "") if rec.ok else (FAILED, rec.error)

    def record_failure(self, path: Path, key: str, sha256: str, error: str) -> None:
        write_failure(self.out_dir, key, Path(path), error, source={"sha256": sha256}, name=self._name(key))

    def rebuild(self) -> None:
        rebuild_tables(self.out_dir)

    def write_run_json(self, journal: Journal, watch: dict, interrupted: bool = False) -> None:
        """`run.json` as `mito-run` writes it, with the journal's counts (the daemon keeps no result list)."""
        from ..pipeline import RunSummary

        info = run_info(self.segmenter, self.config, RunSummary([], dict(self._timings), time.time() - self._started, interrupted))
        counts = journal.counts()
        info["counts"] = {"inputs": sum(counts.values()), "done": counts[DONE], "failed": counts[FAILED],
                          "queued": counts["seen"], "processing": counts["processing"]}
        info["watch"] = watch
        atomic_write_bytes(self.out_dir / "run.json", json.dumps(info, indent=2, ensure_ascii=False).encode("utf-8"))
