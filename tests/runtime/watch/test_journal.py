"""The journal's state machine, its durability across reopen, and concurrent reading (WAL)."""
import sqlite3

import pytest

from mitotally.runtime.watch.journal import DONE, FAILED, PROCESSING, SEEN, Journal, JournalError


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def journal(tmp_path, clock):
    j = Journal(tmp_path / "j.sqlite", clock=clock)
    yield j
    j.close()


def test_lifecycle_seen_processing_done(journal):
    row = journal.note("a.tif", "a", 10, 111)
    assert (row.state, row.attempts, row.runs) == (SEEN, 0, 0)
    assert [r.rel for r in journal.due()] == ["a.tif"]
    journal.start("a.tif", 10, 111, "h1")
    assert journal.get("a.tif").state == PROCESSING
    assert journal.due() == []
    journal.done("a.tif")
    row = journal.get("a.tif")
    assert (row.state, row.outcome, row.sha256, row.attempts, row.runs) == (DONE, DONE, "h1", 1, 1)
    assert journal.counts() == {SEEN: 0, PROCESSING: 0, DONE: 1, FAILED: 0}


def test_same_version_noted_again_is_not_requeued(journal):
    journal.note("a.tif", "a", 10, 111)
    journal.start("a.tif", 10, 111, "h1")
    journal.done("a.tif")
    assert journal.note("a.tif", "a", 10, 111).state == DONE
    assert journal.due() == []


def test_new_version_requeues_with_fresh_attempts_and_keeps_old_hash(journal):
    journal.note("a.tif", "a", 10, 111)
    journal.start("a.tif", 10, 111, "h1")
    journal.failed("a.tif", "cannot decode")
    row = journal.note("a.tif", "a", 12, 222)
    assert (row.state, row.attempts, row.error, row.sha256, row.outcome) == (SEEN, 0, None, "h1", FAILED)
    journal.unchanged("a.tif", 12, 222)  # same bytes as before: keeps the final outcome
    assert journal.get("a.tif").state == FAILED


def test_retry_backoff_and_due_time(journal, clock):
    journal.note("a.tif", "a", 10, 111)
    journal.start("a.tif", 10, 111, "h1")
    journal.retry("a.tif", "boom", delay=30)
    assert journal.due() == []
    assert journal.next_retry() == pytest.approx(1030)
    clock.t += 31
    row = journal.due()[0]
    assert (row.rel, row.attempts, row.error) == ("a.tif", 1, "boom")
    assert journal.recent_errors()[0][1:] == ("a.tif", "boom")


def test_requeue_refunds_the_attempt(journal):
    journal.note("a.tif", "a", 10, 111)
    journal.start("a.tif", 10, 111, "h1")
    journal.requeue("a.tif", "output folder full", delay=0)
    row = journal.get("a.tif")
    assert (row.state, row.attempts, row.error) == (SEEN, 0, "output folder full")


def test_state_survives_reopen_and_processing_rows_are_reported(tmp_path, clock):
    j = Journal(tmp_path / "j.sqlite", clock=clock)
    j.note("a.tif", "a", 1, 1)
    j.note("b.tif", "b", 2, 2)
    j.start("b.tif", 2, 2, "hb")
    j._db.close()  # no checkpoint, no clean close: as after kill -9
    j2 = Journal(tmp_path / "j.sqlite", clock=clock)
    assert [r.rel for r in j2.interrupted()] == ["b.tif"]
    assert j2.get("a.tif").state == SEEN
    j2.close()


def test_reader_sees_committed_state_while_writer_is_open(tmp_path, clock):
    w = Journal(tmp_path / "j.sqlite", clock=clock)
    w.note("a.tif", "a", 1, 1)
    r = Journal(tmp_path / "j.sqlite", readonly=True)
    assert r.counts()[SEEN] == 1
    w.start("a.tif", 1, 1, "h")
    w.done("a.tif")
    assert r.counts()[DONE] == 1
    with pytest.raises(sqlite3.OperationalError):
        r._db.execute("DELETE FROM files")
    r.close()
    w.close()


def test_wal_mode(journal):
    assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_readonly_missing_journal_is_a_clear_error(tmp_path):
    with pytest.raises(JournalError, match="no mito-watch journal"):
        Journal(tmp_path / "nope.sqlite", readonly=True)


def test_error_log_is_bounded(journal):
    journal.note("a.tif", "a", 1, 1)
    for i in range(250):
        journal.log_error("a.tif", f"e{i}")
    n = journal._db.execute("SELECT COUNT(*) FROM errors").fetchone()[0]
    assert n == 200
    assert journal.recent_errors(1)[0][2] == "e249"
