"""`mito-watch`'s resolved settings: one frozen dataclass, written to the journal at start."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .sources import Filters


@dataclass(frozen=True)
class WatchConfig:
    in_dir: Path
    out_dir: Path
    filters: Filters = field(default_factory=Filters)
    poll_s: float | None = None  # None: file-system events where they work, polling where they don't
    settle_s: float = 5.0  # size and mtime unchanged this long before a file is taken
    once: bool = False  # process the backlog and exit (cron, Task Scheduler)
    max_attempts: int = 4  # per file version; then recorded failed with its reason
    backoff_s: float = 10.0  # first retry delay; doubles per attempt
    max_backoff_s: float = 600.0
    batch: int = 16  # files per round; the tables are rebuilt once per round
    tables_interval_s: float = 30.0  # during a burst the tables are rewritten at most this often (always when idle)
    rescan_s: float = 60.0  # full scan interval even when events work (missed events cost at most this)
    heartbeat_s: float = 15.0

    def __post_init__(self) -> None:
        if self.settle_s < 0:
            raise ValueError(f"--settle must be >= 0 seconds, got {self.settle_s}")
        if self.poll_s is not None and self.poll_s <= 0:
            raise ValueError(f"--poll must be > 0 seconds, got {self.poll_s}")
        if self.max_attempts < 1:
            raise ValueError(f"--retries must be >= 0, got {self.max_attempts - 1}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")

    def retry_delay(self, attempts: int) -> float:
        """Back-off after the `attempts`-th failed attempt: backoff, 2x, 4x ... capped."""
        return min(self.backoff_s * 2 ** max(attempts - 1, 0), self.max_backoff_s)

    def to_dict(self) -> dict:
        return {
            "in_dir": str(self.in_dir), "out_dir": str(self.out_dir), "include": list(self.filters.include),
            "exclude": list(self.filters.exclude), "recursive": self.filters.recursive, "poll_s": self.poll_s,
            "settle_s": self.settle_s, "once": self.once, "max_attempts": self.max_attempts, "backoff_s": self.backoff_s,
            "batch": self.batch, "tables_interval_s": self.tables_interval_s, "rescan_s": self.rescan_s,
        }
