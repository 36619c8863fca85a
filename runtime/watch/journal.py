"""The durable journal: one SQLite row per input file, seen -> processing -> done / failed.

WAL mode with `synchronous=FULL`: a committed state change survives a
`kill -9` or a power cut, and `mito-watch status` can read while the daemon
writes. All timestamps are Unix seconds (wall clock) so they mean something
to a person reading `status`; settling uses the monotonic clock elsewhere.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

JOURNAL_NAME = "mito-watch.sqlite"

SEEN, PROCESSING, DONE, FAILED = "seen", "processing", "done", "failed"
STATES = (SEEN, PROCESSING, DONE, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    rel        TEXT PRIMARY KEY,          -- path relative to IN_DIR, '/'-separated
    key        TEXT NOT NULL,             -- output key (records/<key>.json ...)
    state      TEXT NOT NULL CHECK (state IN ('seen', 'processing', 'done', 'failed')),
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    sha256     TEXT,                      -- content taken for processing (or last final outcome's)
    outcome    TEXT,                      -- last final outcome ('done'/'failed') of `sha256`'s content
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_try   REAL NOT NULL DEFAULT 0,
    error      TEXT,
    seen_at    REAL NOT NULL,
    updated_at REAL NOT NULL,
    done_at    REAL,
    runs       INTEGER NOT NULL DEFAULT 0 -- successful processings (a replaced file counts again)
);
CREATE INDEX IF NOT EXISTS files_due ON files (state, next_try);
CREATE INDEX IF NOT EXISTS files_done_at ON files (done_at);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS errors (
    at    REAL NOT NULL,
    rel   TEXT,
    error TEXT NOT NULL
);
"""
_KEEP_ERRORS = 200  # the error log is for `status`, not an archive: bounded so the file stays small


class JournalError(Exception):
    """The journal cannot be opened or used; the message names the file and the cause."""


@dataclass(frozen=True)
class FileRow:
    rel: str
    key: str
    state: str
    size: int
    mtime_ns: int
    sha256: str | None
    outcome: str | None
    attempts: int
    next_try: float
    error: str | None
    seen_at: float
    updated_at: float
    done_at: float | None
    runs: int

    @property
    def signature(self) -> tuple[int, int]:
        return self.size, self.mtime_ns


_COLUMNS = "rel, key, state, size, mtime_ns, sha256, outcome, attempts, next_try, error, seen_at, updated_at, done_at, runs"


def journal_path(out_dir: Path) -> Path:
    return Path(out_dir) / JOURNAL_NAME


class Journal:
    """All state transitions are single committed transactions; callers never hold one open."""

    def __init__(self, path: Path, readonly: bool = False, clock=time.time):
        self.path, self._clock = Path(path), clock
        if readonly and not self.path.is_file():
            raise JournalError(f"{self.path}: no mito-watch journal here (has mito-watch run with this output folder?)")
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 30000")
            if readonly:
                self._db.execute("PRAGMA query_only = 1")
                if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files'").fetchone() is None:
                    self._db.close()
                    raise JournalError(f"{self.path}: journal not initialised yet (mito-watch is starting?)")
            else:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise JournalError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); put the output folder on a local disk")
                self._db.execute("PRAGMA synchronous = FULL")
                self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot open journal: {exc}") from None

    def close(self) -> None:
        """Checkpoint the WAL into the main file so a copy of the folder is complete."""
        try:
            if not self._readonly():
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # e.g. disk full: the WAL still holds every committed change and is replayed on next open
        finally:
            self._db.close()

    def _readonly(self) -> bool:
        return bool(self._db.execute("PRAGMA query_only").fetchone()[0])

    def _write(self, sql: str, params=()) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(sql, params)

    # --- reads -------------------------------------------------------------

    def get(self, rel: str) -> FileRow | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM files WHERE rel = ?", (rel,)).fetchone()
        return FileRow(*row) if row else None

    def rows(self, state: str | None = None) -> list[FileRow]:
        if state is None:
            cur = self._db.execute(f"SELECT {_COLUMNS} FROM files ORDER BY rel")
        else:
            cur = self._db.execute(f"SELECT {_COLUMNS} FROM files WHERE state = ? ORDER BY rel", (state,))
        return [FileRow(*r) for r in cur]

    def signatures(self) -> dict[str, tuple[int, int, str]]:
        """rel -> (size, mtime_ns, state): what a scan compares against."""
        return {r: (s, m, st) for r, s, m, st in self._db.execute("SELECT rel, size, mtime_ns, state FROM files")}

    def due(self, now: float | None = None, limit: int = 16) -> list[FileRow]:
        """Queued files whose retry time has come, oldest first."""
        now = self._clock() if now is None else now
        cur = self._db.execute(
            f"SELECT {_COLUMNS} FROM files WHERE state = ? AND next_try <= ? ORDER BY next_try, seen_at, rel LIMIT ?",
            (SEEN, now, limit),
        )
        return [FileRow(*r) for r in cur]

    def next_retry(self) -> float | None:
        """Earliest `next_try` of a queued file (None when the queue is empty)."""
        return self._db.execute("SELECT MIN(next_try) FROM files WHERE state = ?", (SEEN,)).fetchone()[0]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        out.update(self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state"))
        return out

    def done_since(self, since: float) -> int:
        return self._db.execute("SELECT COUNT(*) FROM files WHERE state = ? AND done_at >= ?", (DONE, since)).fetchone()[0]

    def recent_errors(self, limit: int = 5) -> list[tuple[float, str | None, str]]:
        return list(self._db.execute("SELECT at, rel, error FROM errors ORDER BY at DESC, rowid DESC LIMIT ?", (limit,)))

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT k, v FROM meta"))

    # --- transitions ---------------------------------------------------------

    def note(self, rel: str, key: str, size: int, mtime_ns: int) -> FileRow:
        """A complete (settled) version of `rel` exists: queue it unless the journal already has this version."""
        now = self._clock()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(f"SELECT {_COLUMNS} FROM files WHERE rel = ?", (rel,)).fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO files (rel, key, state, size, mtime_ns, seen_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rel, key, SEEN, size, mtime_ns, now, now),
                )
            elif (row[3], row[4]) != (size, mtime_ns) and row[2] != PROCESSING:
                # a new version: a fresh set of attempts; the old hash stays to recognise identical content
                self._db.execute(
                    "UPDATE files SET state = ?, size = ?, mtime_ns = ?, attempts = 0, next_try = 0, error = NULL, updated_at = ? WHERE rel = ?",
                    (SEEN, size, mtime_ns, now, rel),
                )
        return self.get(rel)

    def start(self, rel: str, size: int, mtime_ns: int, sha256: str) -> None:
        """Taken for processing: the attempt counts now, so a file that crashes the daemon cannot loop forever."""
        self._write(
            "UPDATE files SET state = ?, size = ?, mtime_ns = ?, sha256 = ?, outcome = NULL, attempts = attempts + 1, updated_at = ? WHERE rel = ?",
            (PROCESSING, size, mtime_ns, sha256, self._clock(), rel),
        )

    def done(self, rel: str) -> None:
        """Only called after the pipeline has durably written this file's record."""
        now = self._clock()
        self._write(
            "UPDATE files SET state = ?, outcome = ?, error = NULL, next_try = 0, done_at = ?, updated_at = ?, runs = runs + 1 WHERE rel = ?",
            (DONE, DONE, now, now, rel),
        )

    def unchanged(self, rel: str, size: int, mtime_ns: int) -> None:
        """Same bytes as the last final outcome (touched or copied again): keep that outcome."""
        self._write(
            "UPDATE files SET state = outcome, size = ?, mtime_ns = ?, next_try = 0, updated_at = ? WHERE rel = ?",
            (size, mtime_ns, self._clock(), rel),
        )

    def retry(self, rel: str, error: str, delay: float) -> None:
        """A failed attempt with attempts left: back to the queue after `delay` seconds."""
        now = self._clock()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE files SET state = ?, error = ?, next_try = ?, updated_at = ? WHERE rel = ?", (SEEN, error, now + delay, now, rel))
            self._log_error(now, rel, error)

    def failed(self, rel: str, error: str) -> None:
        now = self._clock()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE files SET state = ?, outcome = ?, error = ?, next_try = 0, updated_at = ? WHERE rel = ?", (FAILED, FAILED, error, now, rel)
            )
            self._log_error(now, rel, error)

    def requeue(self, rel: str, reason: str | None = None, delay: float = 0.0, refund: bool = True) -> None:
        """Back to the queue without spending an attempt (stop requested, output folder unwritable, file changed)."""
        now = self._clock()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE files SET state = ?, attempts = MAX(attempts - ?, 0), next_try = ?, error = COALESCE(?, error), updated_at = ? WHERE rel = ?",
                (SEEN, 1 if refund else 0, now + delay, reason, now, rel),
            )
            if reason:
                self._log_error(now, rel, reason)

    def defer(self, rel: str, delay: float) -> None:
        """Not yet (the file changed after it settled): look again in `delay` seconds, no attempt spent."""
        self._write("UPDATE files SET next_try = ?, updated_at = ? WHERE rel = ?", (self._clock() + delay, self._clock(), rel))

    def forget(self, rel: str) -> None:
        """A queued file that vanished before it was ever processed: nothing to record."""
        self._write("DELETE FROM files WHERE rel = ?", (rel,))

    def interrupted(self) -> list[FileRow]:
        """Rows left in `processing` by a crash (the daemon never leaves one there on a clean exit)."""
        return self.rows(PROCESSING)

    def log_error(self, rel: str | None, error: str) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._log_error(self._clock(), rel, error)

    def _log_error(self, at: float, rel: str | None, error: str) -> None:
        self._db.execute("INSERT INTO errors (at, rel, error) VALUES (?, ?, ?)", (at, rel, error))
        self._db.execute("DELETE FROM errors WHERE rowid <= (SELECT MAX(rowid) FROM errors) - ?", (_KEEP_ERRORS,))

    def set_meta(self, **values: object) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])
