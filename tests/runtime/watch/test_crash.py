"""Crash safety with the real daemon process and the real (tiny) model: kill -9, SIGTERM, restart, status."""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import tifffile

from mitotally.runtime.pipeline import RunConfig
from mitotally.runtime.watch import cli
from mitotally.runtime.watch.config import WatchConfig
from mitotally.runtime.watch.daemon import serve
from mitotally.runtime.watch.journal import DONE, PROCESSING, Journal, journal_path
from mitotally.runtime.watch.processor import PipelineProcessor
from mitotally.runtime.watch.status import format_status, read_status

sys.path.insert(0, str(Path(__file__).resolve().parent))
from watchkit import ThresholdSegmenter, frame, journal_rows, sha256  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kill -9 / SIGTERM are POSIX")


def n_done(out_dir: Path) -> int:
    return sum(r.state == DONE for r in journal_rows(out_dir).values())


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def start_daemon(in_dir: Path, out: Path, model: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mitotally.runtime.watch.cli", str(in_dir), "-o", str(out), "--model", str(model),
           "--backend", "torch", "--device", "cpu", "--settle", "0.3", "--backoff", "0.2", "--retries", "6", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) while waiting for {what}: {proc.stderr.read()[-2000:]}")
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def assert_journal_and_outputs_agree(in_dir: Path, out: Path, names: list[str]) -> None:
    rows = journal_rows(out)
    images = read_csv(out / "images.csv")
    assert sorted(r["image"] for r in images) == sorted(names)  # each input exactly one row
    objects = read_csv(out / "objects.csv")
    keys = [(r["image"], r["plane"], r["id"]) for r in objects]
    assert len(keys) == len(set(keys)), "duplicate rows in objects.csv"
    assert len({tuple(r.values()) for r in objects}) == len(objects)
    per_image = Counter(r["image"] for r in objects)
    for name in names:
        rec = json.loads((out / "records" / f"{name}.json").read_text())
        assert rows[name].state == DONE and rec["status"] == "ok", name
        assert rec["source"]["sha256"] == rows[name].sha256 == sha256(in_dir / name), name
        assert per_image[name] == len(rec["object_rows"]), name
        assert rec["name"] == name.removesuffix(".tif"), name  # the name survives the kills: no second set of outputs
        assert (out / "labels" / f"{rec['name']}.tif").is_file() and (out / "rois" / f"{rec['name']}.zip").is_file()
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(f"{n.removesuffix('.tif')}.tif" for n in names)


def test_kill_9_three_times_during_a_burst_then_restart(tmp_path, watch_model_dir):
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    names = [f"burst{i:02d}.tif" for i in range(12)]
    rng = random.Random(20240607)
    proc = start_daemon(in_dir, out, watch_model_dir)
    try:
        wait_until(lambda: journal_path(out).exists(), 60, "journal", proc)
        for i, name in enumerate(names):  # the burst: the instrument writes frames back to back
            tifffile.imwrite(in_dir / name, frame(1000 + i)[0])
        interrupted_seen = 0
        for kill in range(3):
            before = n_done(out)
            wait_until(lambda: n_done(out) > before, 120, f"progress before kill {kill + 1}", proc)
            time.sleep(rng.uniform(0.0, 0.5))  # a random point: mid-image, between images, mid-write
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
            proc.stderr.close()
            st = read_status(out)  # the truth right after the crash
            rows = journal_rows(out)
            assert not st.running and "NOT running" in format_status(st)
            assert st.done == sum(r.state == DONE for r in rows.values())
            assert st.processing == sum(r.state == PROCESSING for r in rows.values()) <= 1
            assert sorted(st.interrupted) == sorted(r for r, row in rows.items() if row.state == PROCESSING)
            interrupted_seen += st.processing
            for rel, row in rows.items():  # done in the journal => written: never the other way round
                if row.state == DONE:
                    rec = json.loads((out / "records" / f"{rel}.json").read_text())
                    assert rec["status"] == "ok" and rec["source"]["sha256"] == row.sha256
            proc = start_daemon(in_dir, out, watch_model_dir) if kill < 2 else None
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    # the last restart runs in this process (same code as the subprocess, without another torch import)
    assert cli.main([str(in_dir), "-o", str(out), "--model", str(watch_model_dir), "--backend", "torch", "--device", "cpu",
                     "--settle", "0.3", "--backoff", "0.2", "--retries", "6", "--once"]) == 0
    assert_journal_and_outputs_agree(in_dir, out, names)
    st = read_status(out)
    assert (st.running, st.done, st.failed, st.queued, st.processing) == (False, len(names), 0, 0, 0)
    print(f"kill -9 x3: {interrupted_seen} file(s) were mid-processing at a kill")


def test_restart_finishes_an_image_written_just_before_the_crash_without_redoing_it(tmp_path, tiny_model_dir):
    """The narrow window: record durably written, then killed before the journal said done."""
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    tifffile.imwrite(in_dir / "a.tif", frame(1)[0])
    tifffile.imwrite(in_dir / "b.tif", frame(2)[0])
    make = lambda: PipelineProcessor(out, RunConfig(model_dir=tiny_model_dir), segmenter=ThresholdSegmenter(tiny_model_dir, "torch", "cpu"))  # noqa: E731
    out.mkdir()
    journal = Journal(journal_path(out))
    processor = make()
    for name in ("a.tif", "b.tif"):
        st = (in_dir / name).stat()
        journal.note(name, name, st.st_size, st.st_mtime_ns)
        journal.start(name, st.st_size, st.st_mtime_ns, sha256(in_dir / name))
    assert processor.process(in_dir / "a.tif", "a.tif", sha256(in_dir / "a.tif"), final=False).status == DONE
    journal._db.close()  # "kill -9": a.tif written but not marked done, b.tif never written
    record_mtime = (out / "records" / "a.tif.json").stat().st_mtime_ns
    cfg = WatchConfig(in_dir=in_dir, out_dir=out, settle_s=0.1, once=True, backoff_s=0.05)
    assert serve(cfg, make) == 0
    rows = journal_rows(out)
    assert rows["a.tif"].state == DONE and rows["a.tif"].attempts == 1  # finished from its record
    assert (out / "records" / "a.tif.json").stat().st_mtime_ns == record_mtime  # not processed a second time
    assert rows["b.tif"].state == DONE and rows["b.tif"].attempts == 2  # interrupted attempt counted, then redone
    assert sorted(r["image"] for r in read_csv(out / "images.csv")) == ["a.tif", "b.tif"]


def test_sigterm_twice_abandons_the_current_image_and_exits_0_with_a_flushed_journal(tmp_path, watch_model_dir):
    """Real signals to the real process: SIGTERM, then SIGTERM again while a large image is being segmented."""
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    tifffile.imwrite(in_dir / "big.tif", frame(3000, shape=(320, 320), n=12)[0])  # 16 tiles: seconds on a CPU
    proc = start_daemon(in_dir, out, watch_model_dir)
    try:
        wait_until(lambda: any(r.state == PROCESSING for r in journal_rows(out).values()), 120, "processing", proc)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "stop requested" in err and "stopped:" in err
    rows = journal_rows(out)
    assert all(r.state != PROCESSING for r in rows.values())
    assert not read_status(out).running
    wal = Path(str(journal_path(out)) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed into the main file on the way out
    row = rows["big.tif"]
    if "abandoned" in err:  # the usual case; if the image finished within 0.2 s it is simply done
        assert (row.state, row.attempts, row.error) == ("seen", 0, "abandoned by a second stop signal")
        assert not (out / "records" / "big.tif.json").exists()
        assert read_csv(out / "images.csv") == []
    else:
        assert row.state == DONE and [r["image"] for r in read_csv(out / "images.csv")] == ["big.tif"]
