"""The watch loop: scan -> settle -> journal -> process -> rebuild tables, until stopped.

Single-threaded on purpose: one file is in `processing` at a time, every state
change is committed before the next step, and the only other thread (watchdog)
just wakes the loop. With a cluster (`--scheduler`/`--workers`: a processor with
`process_many`) a whole burst is marked `processing` and sent out at once; each
outcome is still committed here, one at a time, as it comes back. Exactly-once comes from three rules: a file is marked done
only after its record is durably written; a row found in `processing` at start
is finished from its record if that record is for the same content (the
record carries the content hash), else redone; outputs are keyed by input path
and written atomically, so redoing one replaces it instead of adding rows.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import WatchConfig
from .journal import DONE, FAILED, SEEN, FileRow, Journal, journal_path
from ..writers.atomic import remove_stale_temps
from .lock import FolderLock
from .processor import OUTPUT, Outcome, Processor
from .settle import Settler, file_sha256, signature
from .sources import ChangeFeed, relative_inside, scan

FAILED_UNRECORDED = "error"  # an attempt failed unexpectedly and nothing was recorded for it

log = logging.getLogger("mito-watch")


class StartupError(Exception):
    """The daemon could not start (model, backend); the message is one line."""


class Abandon(BaseException):
    """Raised by the second SIGTERM/SIGINT: drop the current image (it goes back to the queue)."""


@dataclass
class Tally:
    done: int = 0
    failed: int = 0
    retried: int = 0

    def __str__(self) -> str:
        return f"{self.done} done, {self.failed} failed, {self.retried} retries"


def rss_bytes() -> int | None:
    """Resident memory of this process (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class _Taken:
    """A file marked processing: what committing its outcome needs."""

    row: FileRow
    path: Path
    sig: tuple[int, int]
    digest: str
    attempts: int  # this one included
    final: bool  # the last attempt: a failure is recorded


def _unexpected(exc: BaseException) -> Outcome:
    return Outcome(FAILED_UNRECORDED, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")


class WatchDaemon:
    def __init__(self, cfg: WatchConfig, processor: Processor, journal: Journal, feed: ChangeFeed,
                 stop: threading.Event | None = None, clock=time.monotonic):
        self.cfg, self.processor, self.journal, self.feed, self._clock = cfg, processor, journal, feed, clock
        self.settler = Settler(cfg.settle_s, clock=clock)
        self.tally = Tally()
        self._stop = stop or threading.Event()
        self._in_process = False  # a second signal abandons only an image in progress, never the bookkeeping
        self._tables_stale = True  # rebuild at start: the previous run may have died between record and tables
        self._next_rebuild = 0.0
        self._output_failures = 0
        self._paused_until = 0.0  # monotonic; output or journal trouble pauses the whole queue, not one file
        self._needs_recovery = True
        self._next_heartbeat = 0.0
        self._out_rel = relative_inside(cfg.in_dir, Path(cfg.out_dir) / "x")  # OUT_DIR inside IN_DIR: never scanned

    # --- control -------------------------------------------------------------

    def request_stop(self, *_args) -> None:
        """First signal: finish the current image and exit. Second: abandon it (it is requeued)."""
        if self._stop.is_set():
            if self._in_process:
                self._in_process = False
                raise Abandon()
            return
        log.info("stop requested: finishing the current image (send the signal again to abandon it)")
        self._stop.set()
        self.feed.wake()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- the loop --------------------------------------------------------------

    def run(self) -> int:
        """Exit code: 0 clean stop or backlog done, 2 when files failed this run (--once), 1 when stuck (--once)."""
        code = 0
        try:
            while not self.stopping:
                try:
                    if self._needs_recovery:
                        self.recover()
                    self._rebuild_tables(force=not self._has_due())
                    changes = self.feed.wait(self._timeout())
                    if self.stopping:
                        break
                    if changes.full_scan:
                        self._full_scan()
                    else:
                        self._look_at(changes.paths)
                    self._take_settled()
                    self._process_batch()
                    self._heartbeat()
                except sqlite3.OperationalError as exc:  # e.g. the disk holding OUT_DIR is full
                    self._pause(f"journal not writable: {exc}")
                    self._needs_recovery = True
                if self.cfg.once and self._backlog_finished():
                    break
                if self.cfg.once and self._output_failures >= self.cfg.max_attempts:
                    log.error("results still cannot be written after %d tries; queued files stay queued for the next run", self._output_failures)
                    code = 1
                    break
        except Abandon:
            log.info("current image abandoned; it stays queued")
        finally:
            try:
                self._rebuild_tables(force=True)
                self._heartbeat(force=True)
            except sqlite3.Error as exc:
                log.error("journal not writable at exit: %s (committed states are safe)", exc)
        log.info("stopped: %s this run", self.tally)
        return code or (2 if self.cfg.once and self.tally.failed else 0)

    def _has_due(self) -> bool:
        retry = self.journal.next_retry()
        return retry is not None and retry <= time.time() and self._clock() >= self._paused_until

    def _timeout(self) -> float:
        now = self._clock()
        waits = [self.feed.interval]
        deadline = self.settler.next_deadline()
        if deadline is not None:
            waits.append(deadline - now)
        if self._paused_until > now:
            waits.append(self._paused_until - now)
        else:
            retry = self.journal.next_retry()
            if retry is not None:
                waits.append(retry - time.time())
        return max(0.0, min(waits))

    def _backlog_finished(self) -> bool:
        counts = self.journal.counts()
        return not len(self.settler) and counts[SEEN] == 0 and counts["processing"] == 0

    def _pause(self, why: str) -> None:
        self._output_failures += 1
        delay = self.cfg.retry_delay(self._output_failures)
        self._paused_until = self._clock() + delay
        log.error("%s; pausing %.1f s", why, delay)

    # --- discovery ---------------------------------------------------------------

    def _full_scan(self) -> None:
        known = self.journal.signatures()
        for rel, sig in scan(self.cfg.in_dir, self.cfg.filters, (self.cfg.out_dir,)):
            self._consider(rel, sig, known.get(rel))

    def _look_at(self, paths: set[str]) -> None:
        for p in paths:
            rel = relative_inside(self.cfg.in_dir, p)
            if rel is None or not self.cfg.filters.accepts(rel) or self._in_output(rel):
                continue
            sig = signature(self.cfg.in_dir / rel)
            if sig is None:
                self.settler.forget(rel)
                continue
            row = self.journal.get(rel)
            self._consider(rel, sig, None if row is None else (row.size, row.mtime_ns, row.state))

    def _in_output(self, rel: str) -> bool:
        return self._out_rel is not None and rel.startswith(self._out_rel[: -len("x")])

    def _consider(self, rel: str, sig, known) -> None:
        if known is not None and (known[0], known[1]) == sig:
            self.settler.forget(rel)  # this version is already queued, in progress or finished
            return
        self.settler.observe(rel, sig)

    def _take_settled(self) -> None:
        for rel, sig in self.settler.ready():
            now_sig = signature(self.cfg.in_dir / rel)
            if now_sig is None:
                continue  # gone before it settled (a temp file renamed away): nothing to do
            if now_sig != sig:
                self.settler.observe(rel, now_sig)  # still being written
                continue
            row = self.journal.note(rel, self.processor.key(rel), *sig)
            if row.state == SEEN and row.attempts == 0:
                log.info("queued %s (%d bytes)", rel, sig[0])

    # --- processing ----------------------------------------------------------------

    def _process_batch(self) -> None:
        """One burst of up to `batch` files; the loop comes back for more after looking at the folder again."""
        if self._clock() < self._paused_until:
            return
        due = self.journal.due(limit=self.cfg.batch)
        if hasattr(self.processor, "process_many") and len(due) > 1:  # a cluster: the whole burst in flight at once
            self._process_concurrently(due)
            self._rebuild_tables()
            return
        for i, row in enumerate(due):
            if self.stopping or self._clock() < self._paused_until:
                break
            if i + 1 < len(due):  # read the next file while this one is segmented
                self.processor.prefetch(self.cfg.in_dir / due[i + 1].rel, due[i + 1].key)
            self._process_one(row)
            self._heartbeat()
        self._rebuild_tables()

    def _process_one(self, row: FileRow) -> None:
        taken = self._take(row)
        if taken is None:
            return
        try:
            self._in_process = True
            outcome = self.processor.process(taken.path, row.key, taken.digest, final=taken.final)
        except Abandon:
            self.journal.requeue(row.rel, "abandoned by a second stop signal", refund=True)
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or a device error in one file must not stop the daemon
            log.exception("%s: unexpected error", row.rel)
            outcome = _unexpected(exc)
        finally:
            self._in_process = False
        self._settle(taken, outcome)

    def _process_concurrently(self, due: list[FileRow]) -> None:
        """Every due file taken (journal: processing) and handed to the processor at once; each outcome is
        committed as it comes back, exactly as `_process_one` commits its one."""
        taken = []
        for row in due:
            if self.stopping or self._clock() < self._paused_until:
                break
            t = self._take(row)
            if t is not None:
                taken.append(t)
        if not taken:
            return
        left = dict(enumerate(taken))
        outcomes = self.processor.process_many([(t.path, t.row.key, t.digest, t.final) for t in taken])
        try:
            self._in_process = True
            for i, outcome in outcomes:
                self._in_process = False  # a second signal abandons images, never the bookkeeping
                t = left.pop(i)
                if isinstance(outcome, BaseException):
                    log.error("%s: unexpected error: %s", t.row.rel, outcome)
                    outcome = _unexpected(outcome)
                self._settle(t, outcome)
                self._heartbeat()
                self._in_process = True
        except Abandon:
            for t in left.values():
                self.journal.requeue(t.row.rel, "abandoned by a second stop signal", refund=True)
            raise
        finally:
            self._in_process = False
            outcomes.close()  # cancels what is still out

    def _take(self, row: FileRow) -> _Taken | None:
        """Check, hash and mark `row` processing; None when it is not to be processed now."""
        rel, path = row.rel, self.cfg.in_dir / row.rel
        sig = signature(path)
        if sig is None:
            log.warning("%s: vanished before it was processed", rel)
            if row.outcome is None:
                self.journal.forget(rel)
            else:
                self.journal.unchanged(rel, row.size, row.mtime_ns)  # keep the earlier version's result
            return None
        if sig != row.signature:  # changed after it settled: settle the new version first
            self.settler.observe(rel, sig)
            self.journal.defer(rel, self.cfg.settle_s)
            return None
        try:
            digest = file_sha256(path)
        except OSError as exc:
            self.journal.start(rel, *sig, row.sha256 or "")
            self._attempt_failed(row, f"cannot read file: {exc.strerror or exc}", row.attempts + 1, row.sha256 or "")
            return None
        if row.outcome is not None and row.sha256 == digest:
            log.info("%s: rewritten with identical content; keeping its %s result", rel, row.outcome)
            self.journal.unchanged(rel, *sig)
            return None
        self.journal.start(rel, *sig, digest)
        attempts = row.attempts + 1
        return _Taken(row, path, sig, digest, attempts, attempts >= self.cfg.max_attempts)

    def _settle(self, taken: _Taken, outcome: Outcome) -> None:
        """Commit one processed file's outcome (done, retry, failed, or redo if it changed meanwhile)."""
        row, rel, path, sig, digest, attempts = taken.row, taken.row.rel, taken.path, taken.sig, taken.digest, taken.attempts
        self._tables_stale = True
        if signature(path) != sig:
            log.info("%s: changed while it was processed; it is redone once it settles", rel)
            self.journal.requeue(rel, refund=True, delay=self.cfg.settle_s)
            self.settler.observe(rel, signature(path) or sig)
        elif outcome.status == DONE:
            self.journal.done(rel)
            self.tally.done += 1
            self._output_failures = 0
            log.info("done %s: %s", rel, outcome.message)
        elif outcome.status == OUTPUT:  # not the file's fault: no attempt spent, the whole queue waits
            self.journal.requeue(rel, f"results not written: {outcome.message}", refund=True)
            self._pause(f"cannot write results of {rel}: {outcome.message} (nothing is marked done until written)")
        else:
            self._attempt_failed(row, outcome.message, attempts, digest, recorded=outcome.status == FAILED)

    def _attempt_failed(self, row: FileRow, message: str, attempts: int, digest: str, recorded: bool = False) -> None:
        rel = row.rel
        if attempts >= self.cfg.max_attempts:
            if not recorded:
                try:
                    self.processor.record_failure(self.cfg.in_dir / rel, row.key, digest, message)
                except OSError as exc:  # cannot even record the failure: keep it queued, wait for the disk
                    self.journal.retry(rel, message, 0.0)
                    self._pause(f"cannot record the failure of {rel}: {exc.strerror or exc}")
                    return
                self._tables_stale = True
            self.journal.failed(rel, message)
            self.tally.failed += 1
            log.error("FAILED %s after %d attempt(s): %s", rel, attempts, message)
        else:
            delay = self.cfg.retry_delay(attempts)
            self.journal.retry(rel, message, delay)
            self.tally.retried += 1
            log.warning("%s: attempt %d/%d failed (%s); retrying in %.1f s", rel, attempts, self.cfg.max_attempts, message, delay)

    def _rebuild_tables(self, force: bool = False) -> None:
        """Tables lag the records by at most `tables_interval_s` during a burst; always current when idle."""
        if not self._tables_stale or (not force and self._clock() < self._next_rebuild):
            return
        t0 = self._clock()
        try:
            self.processor.rebuild()
            self.processor.write_run_json(self.journal, self.cfg.to_dict())
            self._tables_stale = False
        except OSError as exc:
            log.error("cannot rewrite the tables in %s: %s; will retry", self.cfg.out_dir, exc.strerror or exc)
            self.journal.log_error(None, f"tables not rewritten: {exc.strerror or exc}")
        spent = self._clock() - t0
        self._next_rebuild = self._clock() + max(self.cfg.tables_interval_s, 10 * spent)  # rebuilding stays <10% of the time

    # --- crash recovery -------------------------------------------------------------------

    def recover(self) -> None:
        """Rows left in `processing` (crash, kill -9, journal write failure): finish them from their record, or retry."""
        for row in self.journal.interrupted():
            found = self.processor.recorded(row.key, row.sha256) if row.sha256 else None
            if found is not None and found[0] == DONE:
                self.journal.done(row.rel)
                log.info("recovered %s: its results were written before the interruption", row.rel)
            elif found is not None:
                self._attempt_failed(row, found[1], row.attempts, row.sha256 or "", recorded=True)
            else:
                message = "interrupted: the daemon stopped or crashed while processing this file"
                self._attempt_failed(row, message, row.attempts, row.sha256 or "")
            self._tables_stale = True
        self._needs_recovery = False

    def _heartbeat(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.cfg.heartbeat_s
        rss = rss_bytes()
        self.journal.set_meta(heartbeat=time.time(), rss_mb=f"{rss / 2**20:.1f}" if rss else "", mode=self.feed.mode)


def _install_signal_handlers(daemon: WatchDaemon) -> dict:
    """SIGTERM (systemd, `kill`), SIGINT (Ctrl+C; NSSM sends Ctrl+C on Windows), SIGBREAK, SIGHUP."""
    previous = {}
    if threading.current_thread() is not threading.main_thread():
        return previous  # embedded in a thread (tests): the caller stops it with the stop event
    for name in ("SIGTERM", "SIGINT", "SIGBREAK", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, daemon.request_stop)
    return previous


def open_output(out_dir: Path) -> None:
    """Create OUT_DIR and prove it is writable before anything else."""
    out_dir.mkdir(parents=True, exist_ok=True)
    probe = out_dir / f".mito-watch-probe-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def serve(cfg: WatchConfig, make_processor: Callable[[], Processor], stop: threading.Event | None = None,
          observer_factory: Callable[[], object] | None = None) -> int:
    """Lock OUT_DIR, open the journal, load the model once, watch until stopped; returns the exit code."""
    open_output(cfg.out_dir)
    with FolderLock(cfg.out_dir):
        for leftover in remove_stale_temps(cfg.out_dir):  # the lock says no one else writes here now
            log.info("removed %s, left by a write a crash interrupted", leftover)
        journal = Journal(journal_path(cfg.out_dir))
        try:
            journal.set_meta(started_at=time.time(), heartbeat=time.time(), in_dir=str(cfg.in_dir), pid=os.getpid(),
                             config=json.dumps(cfg.to_dict()), mode="starting")
            try:
                processor = make_processor()
            except Exception as exc:  # noqa: BLE001 - a service must say in one line why it cannot start
                text = (str(exc).splitlines() or [""])[0]
                raise StartupError(f"cannot load the model: {type(exc).__name__}: {text}") from exc
            feed = ChangeFeed(cfg.in_dir, cfg.filters.recursive, cfg.poll_s, cfg.rescan_s, observer_factory=observer_factory)
            mode = feed.start()
            log.info("watching %s (%s: %s) -> %s; settle %g s%s", cfg.in_dir, mode, feed.reason, cfg.out_dir, cfg.settle_s,
                     ", once" if cfg.once else "")
            daemon = WatchDaemon(cfg, processor, journal, feed, stop)
            previous = _install_signal_handlers(daemon)
            try:
                return daemon.run()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                feed.stop()
                processor.close()
        finally:
            journal.close()
