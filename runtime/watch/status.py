"""`mito-watch status OUT_DIR`: what the journal says, read while the daemon runs or after it died.

Liveness comes from the folder lock (released by the kernel on any death),
never from a pid file; rows left in `processing` by a dead daemon are shown
as interrupted, because that is what they are.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .journal import DONE, FAILED, PROCESSING, SEEN, Journal, journal_path
from .lock import holder, is_locked

RATE_WINDOW_S = 600.0


@dataclass(frozen=True)
class Status:
    out_dir: str
    running: bool
    holder: str  # "pid N on host" from the lock file
    mode: str  # events / polling, as last reported
    in_dir: str
    started_at: float | None
    heartbeat: float | None
    rss_mb: str
    queued: int  # waiting, incl. retries
    retrying: int  # queued after a failed attempt
    next_retry: float | None
    processing: int  # in progress (running) or interrupted (not running)
    done: int
    failed: int
    done_last_window: int
    rate_per_min: float  # over the last RATE_WINDOW_S seconds
    failures: list[tuple[str, str]] = field(default_factory=list)  # (rel, reason), most recent first
    interrupted: list[str] = field(default_factory=list)
    last_error: tuple[float, str, str] | None = None  # (time, rel, error)

    def to_dict(self) -> dict:
        return asdict(self)


def read_status(out_dir: Path, now: float | None = None, max_failures: int = 10) -> Status:
    now = time.time() if now is None else now
    out_dir = Path(out_dir)
    journal = Journal(journal_path(out_dir), readonly=True)
    try:
        running = is_locked(out_dir)  # after opening the journal: a daemon that dies now reads as stopped, not vice versa
        counts = journal.counts()
        meta = journal.meta()
        seen = journal.rows(SEEN)
        failed = sorted(journal.rows(FAILED), key=lambda r: r.updated_at, reverse=True)
        processing = journal.rows(PROCESSING)
        recent = journal.done_since(now - RATE_WINDOW_S)
        errors = journal.recent_errors(1)
    finally:
        journal.close()
    return Status(
        out_dir=str(out_dir),
        running=running,
        holder=holder(out_dir) if running else "",
        mode=meta.get("mode", ""),
        in_dir=meta.get("in_dir", ""),
        started_at=_float(meta.get("started_at")),
        heartbeat=_float(meta.get("heartbeat")),
        rss_mb=meta.get("rss_mb", ""),
        queued=counts[SEEN],
        retrying=sum(1 for r in seen if r.attempts > 0),
        next_retry=min((r.next_try for r in seen), default=None),
        processing=counts[PROCESSING],
        done=counts[DONE],
        failed=counts[FAILED],
        done_last_window=recent,
        rate_per_min=recent / (RATE_WINDOW_S / 60.0),
        failures=[(r.rel, r.error or "") for r in failed[:max_failures]],
        interrupted=[r.rel for r in processing],
        last_error=tuple(errors[0]) if errors else None,
    )


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v else None
    except ValueError:
        return None


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    s = max(0.0, now - t)
    if s < 120:
        return f"{s:.0f} s ago"
    if s < 7200:
        return f"{s / 60:.0f} min ago"
    return f"{s / 3600:.1f} h ago"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def format_status(st: Status, now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = [f"output:     {st.out_dir}"]
    if st.in_dir:
        lines.append(f"watching:   {st.in_dir}" + (f" ({st.mode})" if st.mode else ""))
    if st.running:
        lines.append(f"daemon:     running ({st.holder}), last heartbeat {_ago(st.heartbeat, now)}" + (f", {st.rss_mb} MB resident" if st.rss_mb else ""))
    else:
        lines.append(f"daemon:     NOT running (last heartbeat {_ago(st.heartbeat, now)})")
    queue = f"queue:      {st.queued} waiting"
    if st.retrying:
        queue += f" ({st.retrying} retrying" + (f", next retry {_when(st.next_retry)}" if st.next_retry else "") + ")"
    lines.append(queue)
    if st.processing:
        if st.running:
            lines.append(f"processing: {st.processing} ({', '.join(st.interrupted)})")
        else:
            lines.append(f"interrupted: {st.processing} file(s) were being processed when the daemon stopped; "
                         f"they are redone (or finished from their results) on restart: {', '.join(st.interrupted)}")
    lines.append(f"done:       {st.done}")
    lines.append(f"rate:       {st.rate_per_min:.1f} files/min over the last {RATE_WINDOW_S / 60:.0f} min ({st.done_last_window} files)")
    lines.append(f"failed:     {st.failed}")
    for rel, reason in st.failures:
        lines.append(f"  {rel}: {reason}")
    if st.failed > len(st.failures):
        lines.append(f"  ... and {st.failed - len(st.failures)} more")
    if st.last_error:
        at, rel, err = st.last_error
        lines.append(f"last error: {_when(at)} {rel + ': ' if rel else ''}{err}")
    return "\n".join(lines)
