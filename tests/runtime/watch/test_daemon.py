"""The daemon in-process: slow writers, corrupt files, replaced files, unwritable output, polling, memory.

The model is replaced by `ThresholdSegmenter` (a test double, see watchkit) where a test needs hundreds of
images; every other part (completeness checks, decode, writers, records, tables, journal) is the real code.
Tests marked with the real model use the tiny random-weight model through the real `Segmenter`.
"""
from __future__ import annotations

import csv
import errno
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import tifffile

from mitotally.runtime.pipeline import RunConfig
from mitotally.runtime.watch import cli
from mitotally.runtime.watch.config import WatchConfig
from mitotally.runtime.watch.daemon import rss_bytes
from mitotally.runtime.watch.journal import DONE, FAILED, SEEN, Journal, JournalError, journal_path
from mitotally.runtime.watch.processor import PipelineProcessor
from mitotally.runtime.watch.status import format_status, read_status

sys.path.insert(0, str(Path(__file__).resolve().parent))
from watchkit import DaemonThread, ThresholdSegmenter, frame, journal_rows, sha256, tiff_bytes, wait_for, write_slowly  # noqa: E402


def config(in_dir: Path, out_dir: Path, **kw) -> WatchConfig:
    fast = dict(settle_s=0.3, backoff_s=0.3, max_backoff_s=2.0, tables_interval_s=0.5, heartbeat_s=0.5, rescan_s=2.0)
    return WatchConfig(in_dir=in_dir, out_dir=out_dir, **{**fast, **kw})


def threshold_processor(out_dir: Path, model_dir: Path):
    return lambda: PipelineProcessor(out_dir, RunConfig(model_dir=model_dir), segmenter=ThresholdSegmenter(model_dir, "torch", "cpu"))


def counts(out_dir: Path) -> dict[str, int]:
    try:
        j = Journal(journal_path(out_dir), readonly=True)
    except JournalError:  # the daemon thread has not created it yet
        return dict.fromkeys((SEEN, "processing", DONE, FAILED), 0)
    try:
        return j.counts()
    finally:
        j.close()


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def record(out_dir: Path, key: str) -> dict:
    return json.loads((out_dir / "records" / f"{key}.json").read_text())


def test_slowly_written_files_each_give_exactly_one_result(tmp_path, tiny_model_dir):
    """>= 200 files written in chunks while the daemon runs; some writers pause longer than --settle mid-file."""
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    n, writers = 200, 4
    frames = {f"f{i:03d}.tif": frame(i) for i in range(n)}
    daemon = DaemonThread(config(in_dir, out, settle_s=0.4), threshold_processor(out, tiny_model_dir))

    def write(names):
        for k, name in enumerate(names):
            data = tiff_bytes(frames[name][0])
            if k % 10 == 3:  # a stalled writer: half the file, then a pause longer than the settle time
                with open(in_dir / name, "wb") as f:
                    f.write(data[: len(data) // 2])
                    f.flush()
                    time.sleep(0.8)
                    f.write(data[len(data) // 2 :])
            else:
                write_slowly(in_dir / name, data, chunks=4, pause=0.01)

    names = sorted(frames)
    threads = [threading.Thread(target=write, args=(names[w::writers],)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: counts(out)[DONE] == n, 240, f"{n} files done", daemon)
    assert daemon.stop() == 0

    rows = journal_rows(out)
    assert sorted(rows) == names
    images = read_csv(out / "images.csv")
    assert sorted(r["image"] for r in images) == names  # each input exactly one row
    assert {r["status"] for r in images} == {"ok"}
    objects = read_csv(out / "objects.csv")
    per_image = Counter(r["image"] for r in objects)
    for name in names:
        rec = record(out, name)
        assert rec["source"]["sha256"] == sha256(in_dir / name), f"{name}: processed from a partial read"
        assert per_image[name] == frames[name][1], name  # the objects of the complete image, not of a prefix
        assert rows[name].runs == 1 and rows[name].state == DONE, name
        assert rec["name"] == name.removesuffix(".tif")  # outputs by stem: labels/f000.tif
        labels = tifffile.imread(out / "labels" / f"{rec['name']}.tif")
        assert labels.shape == frames[name][0].shape and labels.max() == frames[name][1]


def test_backlog_once_corrupt_files_fail_with_cause_and_the_rest_goes_on(tmp_path, watch_model_dir):
    """Real model. Corrupt, truncated and empty files are recorded failed with their cause; the others done."""
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    good = {f"good{i}.tif": frame(100 + i)[0] for i in range(3)}
    for name, img in good.items():
        tifffile.imwrite(in_dir / name, img)
    (in_dir / "garbage.tif").write_bytes(b"this is not an image at all" * 10)
    (in_dir / "truncated.tif").write_bytes(tiff_bytes(frame(7)[0])[:2000])
    (in_dir / "empty.png").write_bytes(b"")
    (in_dir / "notes.txt").write_text("ignored: not an image name")
    code = cli.main([str(in_dir), "-o", str(out), "--model", str(watch_model_dir), "--backend", "torch", "--device", "cpu",
                     "--once", "--settle", "0.2", "--backoff", "0.05", "--retries", "2"])
    assert code == 2  # --once finished, some files failed
    rows = journal_rows(out)
    assert set(rows) == set(good) | {"garbage.tif", "truncated.tif", "empty.png"}
    for name in good:
        assert rows[name].state == DONE
    images = {r["image"]: r for r in read_csv(out / "images.csv")}
    assert len(images) == 6
    for name, cause in (("garbage.tif", "not a TIFF"), ("truncated.tif", "TIFF"), ("empty.png", "PNG end")):
        assert rows[name].state == FAILED and rows[name].attempts == 3
        assert cause in rows[name].error, rows[name].error
        assert images[name]["status"] == "failed" and images[name]["error"] == rows[name].error
    for name in good:
        assert images[name]["status"] == "ok"
        assert not (out / "labels" / "garbage.tif").exists()
    objects = read_csv(out / "objects.csv")
    assert {r["image"] for r in objects} <= set(good) and len(objects) == sum(len(record(out, n)["object_rows"]) for n in good)
    assert (out / "run.json").is_file() and (out / cli.LOG_NAME).read_text().count("FAILED") == 3
    st = read_status(out)
    assert (st.running, st.done, st.failed, st.queued, st.processing) == (False, 3, 3, 0, 0)
    assert "garbage.tif" in format_status(st)


def test_replaced_file_is_reprocessed_and_old_results_replaced(tmp_path, tiny_model_dir):
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (a_img, a_n), (b_img, b_n) = frame(1, n=1), frame(2, n=5)
    assert a_n != b_n
    tifffile.imwrite(in_dir / "x.tif", a_img)
    tifffile.imwrite(in_dir / "other.tif", frame(3)[0])
    daemon = DaemonThread(config(in_dir, out), threshold_processor(out, tiny_model_dir))
    wait_for(lambda: counts(out)[DONE] == 2, 60, "first versions done", daemon)
    first = record(out, "x.tif")
    assert len(first["object_rows"]) == a_n

    tifffile.imwrite(in_dir / "x.tif", b_img)  # replaced in place with new content
    wait_for(lambda: journal_rows(out)["x.tif"].runs == 2 and counts(out)[DONE] == 2, 60, "x.tif redone", daemon)
    # the same bytes written again (a re-copy): not processed a third time
    time.sleep(0.05)
    (in_dir / "x.tif").write_bytes((in_dir / "x.tif").read_bytes())
    recopied_mtime = (in_dir / "x.tif").stat().st_mtime_ns
    # noted first (state seen), then hashed and found unchanged (state done again): wait for both
    wait_for(lambda: (journal_rows(out)["x.tif"].mtime_ns, journal_rows(out)["x.tif"].state) == (recopied_mtime, DONE),
             60, "re-copy noted and found unchanged", daemon)
    assert daemon.stop() == 0

    row = journal_rows(out)["x.tif"]
    assert (row.state, row.runs, row.sha256) == (DONE, 2, sha256(in_dir / "x.tif"))
    rec = record(out, "x.tif")
    assert rec["source"]["sha256"] == sha256(in_dir / "x.tif") and len(rec["object_rows"]) == b_n
    assert tifffile.imread(out / "labels" / "x.tif").max() == b_n
    objects = read_csv(out / "objects.csv")
    assert sum(r["image"] == "x.tif" for r in objects) == b_n  # old rows gone, no duplicates
    assert [r["image"] for r in read_csv(out / "images.csv")].count("x.tif") == 1


def test_output_disk_full_is_retried_and_nothing_is_marked_done_unwritten(tmp_path, tiny_model_dir, monkeypatch):
    """ENOSPC from the label writer: the queue pauses with back-off; done only once the results exist."""
    import mitotally.runtime.pipeline as pipeline

    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    for i in range(3):
        tifffile.imwrite(in_dir / f"f{i}.tif", frame(10 + i)[0])
    real = pipeline.write_labels
    disk = {"full": True, "refused": 0}
    done_while_full: list[str] = []

    def write_labels(path, *args, **kwargs):
        if disk["full"]:
            disk["refused"] += 1
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "write_labels", write_labels)
    daemon = DaemonThread(config(in_dir, out, backoff_s=0.2, max_backoff_s=0.4), threshold_processor(out, tiny_model_dir))
    wait_for(lambda: disk["refused"] >= 3, 60, "three refused writes", daemon)
    c = counts(out)
    done_while_full.extend(r for r, row in journal_rows(out).items() if row.state == DONE)
    assert c[DONE] == 0 and c[FAILED] == 0 and c[SEEN] + c["processing"] == 3
    assert "No space left" in read_status(out).last_error[2]
    disk["full"] = False
    wait_for(lambda: counts(out)[DONE] == 3, 60, "all done after space is freed", daemon)
    assert daemon.stop() == 0
    assert done_while_full == []
    assert all(row.attempts == 1 for row in journal_rows(out).values())  # refused writes spent no attempt of the files
    for i in range(3):
        assert record(out, f"f{i}.tif")["status"] == "ok" and (out / "labels" / f"f{i}.tif").is_file()
    assert {r["status"] for r in read_csv(out / "images.csv")} == {"ok"}


def test_output_never_writable_once_exits_1_and_keeps_files_queued(tmp_path, tiny_model_dir, monkeypatch):
    import mitotally.runtime.pipeline as pipeline

    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    tifffile.imwrite(in_dir / "a.tif", frame(5)[0])

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pipeline, "write_labels", full)
    daemon = DaemonThread(config(in_dir, out, once=True, backoff_s=0.05, max_backoff_s=0.1, max_attempts=2),
                          threshold_processor(out, tiny_model_dir))
    daemon.thread.join(60)
    assert daemon.stop() == 1
    row = journal_rows(out)["a.tif"]
    assert row.state == SEEN and "No space left" in row.error  # queued for the next run, not failed, not done
    rec = json.loads((out / "records" / "a.tif.json").read_text()) if (out / "records" / "a.tif.json").exists() else None
    assert rec is None or rec["status"] == "failed"


class StopMidImage(ThresholdSegmenter):
    """Calls the daemon's signal handler from inside `segment`: a SIGTERM arriving mid-image, deterministically."""

    daemon = None
    signals = 1

    def segment(self, image, pixel_size_nm):
        for _ in range(self.signals):
            self.daemon.request_stop()
        return super().segment(image, pixel_size_nm)


@pytest.mark.parametrize("signals", [1, 2])
def test_stop_signal_mid_image_finishes_it_and_a_second_abandons_it(tmp_path, tiny_model_dir, signals):
    from mitotally.runtime.watch.daemon import WatchDaemon
    from mitotally.runtime.watch.sources import ChangeFeed

    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out.mkdir()
    for i in range(3):
        tifffile.imwrite(in_dir / f"f{i}.tif", frame(i)[0])
    segmenter = StopMidImage(tiny_model_dir, "torch", "cpu")
    segmenter.signals = signals
    processor = PipelineProcessor(out, RunConfig(model_dir=tiny_model_dir), segmenter=segmenter)
    journal = Journal(journal_path(out))
    cfg = config(in_dir, out, settle_s=0.0)
    feed = ChangeFeed(in_dir, recursive=False, poll_s=0.1)
    feed.start()
    daemon = WatchDaemon(cfg, processor, journal, feed)
    segmenter.daemon = daemon
    assert daemon.run() == 0
    journal.close()
    rows = journal_rows(out)
    states = Counter(r.state for r in rows.values())
    if signals == 1:  # the image in progress is finished and recorded, the others stay queued
        assert states == {DONE: 1, SEEN: 2}
        done = next(r for r, row in rows.items() if row.state == DONE)
        assert [r["image"] for r in read_csv(out / "images.csv")] == [done]
    else:  # abandoned: back in the queue without spending an attempt, nothing written for it
        assert states == {SEEN: 3}
        assert all(row.attempts == 0 for row in rows.values())
        assert not (out / "records").exists() or not any((out / "records").iterdir())
        assert read_csv(out / "images.csv") == []


def test_polling_mode_when_events_are_disabled(tmp_path, tiny_model_dir):
    """--poll: no observer is ever created; files (incl. in new subfolders) are found by scans alone."""
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()

    def no_events():
        raise AssertionError("an event observer was created in polling mode")

    daemon = DaemonThread(config(in_dir, out, poll_s=0.2, filters=cli.config_from_args(
        cli.watch_parser().parse_args([str(in_dir), "-o", str(out), "--recursive"])).filters),
        threshold_processor(out, tiny_model_dir), observer_factory=no_events)
    tifffile.imwrite(in_dir / "a.tif", frame(1)[0])
    (in_dir / "day2").mkdir()
    tifffile.imwrite(in_dir / "day2" / "b.tif", frame(2)[0])
    wait_for(lambda: counts(out)[DONE] == 2, 60, "both files done by polling", daemon)
    assert daemon.stop() == 0
    assert set(journal_rows(out)) == {"a.tif", "day2/b.tif"}
    assert read_status(out).mode == "polling"


def test_network_share_falls_back_to_polling(tmp_path, tiny_model_dir, monkeypatch):
    """A folder on NFS/SMB (where inotify sees no remote writes) is polled automatically."""
    import mitotally.runtime.watch.sources as sources

    monkeypatch.setattr(sources, "network_filesystem", lambda path: "cifs")
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()

    def no_events():
        raise AssertionError("an event observer was created for a network share")

    daemon = DaemonThread(config(in_dir, out), threshold_processor(out, tiny_model_dir), observer_factory=no_events)
    tifffile.imwrite(in_dir / "a.tif", frame(1)[0])
    wait_for(lambda: counts(out)[DONE] == 1, 60, "file done by polling", daemon)
    assert daemon.stop() == 0
    assert read_status(out).mode == "polling"


def test_a_later_file_with_the_same_stem_gets_its_own_outputs(tmp_path, tiny_model_dir):
    """Outputs are named by stem; a name a record holds is never given to another file, also after a restart."""
    from PIL import Image

    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (a_img, a_n), (b_img, b_n) = frame(1, n=2), frame(2, n=4)
    tifffile.imwrite(in_dir / "a.tif", a_img)
    daemon = DaemonThread(config(in_dir, out), threshold_processor(out, tiny_model_dir))
    wait_for(lambda: counts(out)[DONE] == 1, 60, "a.tif done", daemon)
    assert daemon.stop() == 0
    Image.fromarray(b_img).save(in_dir / "a.png")
    daemon = DaemonThread(config(in_dir, out), threshold_processor(out, tiny_model_dir))  # restarted: names from the records
    wait_for(lambda: counts(out)[DONE] == 2, 60, "a.png done", daemon)
    assert daemon.stop() == 0
    assert (record(out, "a.tif")["name"], record(out, "a.png")["name"]) == ("a", "a.png")
    assert tifffile.imread(out / "labels" / "a.tif").max() == a_n and tifffile.imread(out / "labels" / "a.png.tif").max() == b_n
    assert (out / "overlays" / "a.png").is_file() and (out / "overlays" / "a.png.png").is_file()


def test_outputs_inside_the_input_folder_are_never_taken_as_inputs(tmp_path, tiny_model_dir):
    in_dir = tmp_path / "in"
    out = in_dir / "results"
    in_dir.mkdir()
    tifffile.imwrite(in_dir / "a.tif", frame(1)[0])
    filters = cli.config_from_args(cli.watch_parser().parse_args([str(in_dir), "-o", str(out), "--recursive"])).filters
    daemon = DaemonThread(config(in_dir, out, once=True, filters=filters), threshold_processor(out, tiny_model_dir))
    daemon.thread.join(60)
    assert daemon.stop() == 0
    assert set(journal_rows(out)) == {"a.tif"}  # not results/labels/a.tif, not results/overlays/a.png


@pytest.mark.slow
def test_memory_is_flat_over_500_images(tmp_path, tiny_model_dir):
    """RSS after 500 images within 5% of RSS after 50 (daemon + real writers/tables; the model is the double)."""
    if rss_bytes() is None:
        pytest.skip("RSS is read from /proc/self/statm (Linux only)")
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    daemon = DaemonThread(config(in_dir, out, settle_s=0.1, tables_interval_s=2.0), threshold_processor(out, tiny_model_dir))
    blobs = [tiff_bytes(frame(i, (48, 48))[0]) for i in range(20)]
    rss = {}
    for target in (50, 500):
        start = counts(out)[DONE] if (out / "mito-watch.sqlite").exists() else 0
        for i in range(start, target):
            (in_dir / f"f{i:04d}.tif").write_bytes(blobs[i % len(blobs)] + i.to_bytes(4, "little"))  # distinct content
        wait_for(lambda: counts(out)[DONE] == target, 300, f"{target} done", daemon, poll=0.25)
        time.sleep(0.5)
        rss[target] = rss_bytes()
    assert daemon.stop() == 0
    print(f"RSS after 50 images: {rss[50] / 2**20:.1f} MB, after 500: {rss[500] / 2**20:.1f} MB")
    assert rss[500] <= rss[50] * 1.05, f"RSS grew from {rss[50] / 2**20:.1f} MB to {rss[500] / 2**20:.1f} MB"
    assert len(read_csv(out / "images.csv")) == 500
