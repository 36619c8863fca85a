"""mito-run and mito-watch on a real local Dask cluster: 2 worker processes, 1 thread each, the tiny model.

One cluster serves every test that uses the library or `--scheduler` (started once: worker processes
take seconds to import torch); the test that SIGKILLs a worker runs last on it. mito-watch starts its
own cluster through `--workers`. What must hold: the tables equal the in-process run's, every input
is in every table exactly once whatever dies or is cancelled, and a bad input is one failed row.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import tifffile

pytest.importorskip("distributed")

from mitotally.runtime import run_cli  # noqa: E402
from mitotally.runtime.cluster.dispatch import run_on_cluster  # noqa: E402
from mitotally.runtime.cluster.returned import remove_marker  # noqa: E402
from mitotally.runtime.cluster.start import start_local  # noqa: E402
from mitotally.runtime.cluster.workers import WorkerPool  # noqa: E402
from mitotally.runtime.pipeline import RunConfig, run  # noqa: E402
from mitotally.runtime.reader import discover_inputs  # noqa: E402
from mitotally.runtime.segmenter import Segmenter  # noqa: E402
from mitotally.runtime.watch import cli as watch_cli  # noqa: E402
from mitotally.runtime.watch.journal import DONE, FAILED, Journal, journal_path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mito_run_helpers import detecting_model, em_frame  # noqa: E402

N, SHAPE = 4, (120, 124)  # one tile per frame


@pytest.fixture(scope="module")
def det_model(tiny_model_dir, tmp_path_factory) -> Path:
    return detecting_model(tiny_model_dir, tmp_path_factory.mktemp("det"))


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    for i in range(N):
        tifffile.imwrite(folder / f"f{i}.tif", em_frame(SHAPE, seed=i))
    return folder


def config(model: Path, **kw) -> RunConfig:
    return RunConfig(model_dir=model, backend="torch", device="cpu", threads=1, **kw)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tables(out: Path) -> dict:
    """What must not differ between two runs of the same inputs (time_s is a clock reading)."""
    images = [{k: v for k, v in row.items() if k != "time_s"} for row in read_csv(out / "images.csv")]
    return {"images": images, "objects": read_csv(out / "objects.csv"),
            "predictions": json.loads((out / "predictions.json").read_text())}


def assert_each_input_once(out: Path, keys: set[str]) -> None:
    """One images.csv row and one record per input, one COCO image per input that succeeded."""
    t = tables(out)
    assert sorted(r["image"] for r in t["images"]) == sorted(keys)
    ok = sorted(r["image"] for r in t["images"] if r["status"] == "ok")
    assert sorted(i["file_name"] for i in t["predictions"]["images"]) == ok
    assert {r["image"] for r in t["objects"]} <= set(ok)
    assert sorted(p.name for p in (out / "records").iterdir()) == sorted(f"{k}.json" for k in keys)


def in_process(model: Path, frames: Path, out: Path, **kw) -> dict:
    """The in-process run of the same frames: what the cluster must reproduce."""
    import torch

    segmenter = Segmenter(model, backend="torch", device="cpu", threads=1, **kw)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: other thread counts may change a score's last float32 bit
    try:
        summary = run(discover_inputs([frames]), segmenter, out, config(model, **kw))
    finally:
        torch.set_num_threads(before)
    assert not summary.failed and summary.n_objects > 0
    return tables(out)


@pytest.fixture(scope="module")
def reference(det_model, frames, tmp_path_factory) -> dict:
    return in_process(det_model, frames, tmp_path_factory.mktemp("in_process"))


@pytest.fixture(scope="module")
def reference_off(det_model, frames, tmp_path_factory) -> dict:
    """As `reference`, without scale estimates (a resumed run's estimates come from its first unfinished
    frame, locally as on a cluster; the faster tests skip them)."""
    return in_process(det_model, frames, tmp_path_factory.mktemp("in_process_off"), scale_estimate="off")


@pytest.fixture(scope="module")
def cluster():
    conn = start_local(2, "cpu", 1)
    yield conn
    conn.close()


def run_there(conn, inputs, out: Path, cfg: RunConfig, on_result=None, hide_out: bool = False):
    items = discover_inputs(inputs)
    pool = WorkerPool(conn, cfg, out).start(items[0].path)
    if hide_out:  # as if OUT were not on a file system the workers share
        remove_marker(out, pool.marker)
        pool.marker = ".mito-cluster-not-here"
    try:
        return run_on_cluster(items, pool, out, cfg, on_result)
    finally:
        pool.close()


def test_results_equal_the_in_process_run(cluster, det_model, frames, reference, tmp_path):
    summary = run_there(cluster, [frames], tmp_path, config(det_model))
    assert not summary.failed and len(summary.results) == N
    assert tables(tmp_path) == reference  # same instances, measurements and scale estimate
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["cluster"]["kind"] == "local processes" and info["cluster"]["n_workers"] == 2
    assert info["cluster"]["devices"] == ["cpu"] and {w["threads"] for w in info["cluster"]["workers"]} == {1}
    assert info["backend"]["name"] == "torch" and info["counts"]["processed"] == N
    workers = {json.loads(p.read_text())["source"]["worker"] for p in (tmp_path / "records").iterdir()}
    assert workers <= {"0", "1"}


def test_workers_that_do_not_see_out_send_their_outputs_back(cluster, det_model, frames, reference_off, tmp_path):
    summary = run_there(cluster, [frames], tmp_path, config(det_model, scale_estimate="off"), hide_out=True)
    assert not summary.failed
    assert tables(tmp_path) == reference_off
    labels = sorted((tmp_path / "labels").iterdir())
    assert len(labels) == N and all(tifffile.imread(p).shape == SHAPE for p in labels)
    assert len(list((tmp_path / "rois").iterdir())) == N and len(list((tmp_path / "overlays").iterdir())) == N


def test_cancel_keeps_what_finished_and_a_rerun_skips_it(cluster, det_model, frames, reference_off, tmp_path):
    seen = []

    def stop_after_two(result):
        seen.append(result)
        if len(seen) == 2:
            raise KeyboardInterrupt

    off = config(det_model, scale_estimate="off")
    with pytest.raises(KeyboardInterrupt):
        run_there(cluster, [frames], tmp_path, off, on_result=stop_after_two)
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["interrupted"] is True
    listed = {r["image"] for r in read_csv(tmp_path / "images.csv")}
    assert len(listed) >= 2 and all(r["status"] == "ok" for r in read_csv(tmp_path / "images.csv"))
    again = run_there(cluster, [frames], tmp_path, off)
    skipped = [r for r in again.results if r.skipped]
    assert len(skipped) >= 2 and len(again.results) == N and not again.failed
    assert tables(tmp_path) == reference_off


def test_cli_scheduler_a_corrupt_file_is_one_failed_row(cluster, det_model, frames, reference_off, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        shutil.copy(frames / f"f{i}.tif", folder / f"f{i}.tif")
    (folder / "bad.tif").write_bytes(b"II*\x00 this is no TIFF")
    out = tmp_path / "out"
    rc = run_cli.main([str(folder), "-o", str(out), "--scheduler", cluster.address, "--model", str(det_model),
                       "--backend", "torch", "--device", "cpu", "--threads", "1", "--scale-estimate", "off", "-q"])
    assert rc == 1
    rows = read_csv(out / "images.csv")
    assert sorted(r["image"] for r in rows) == ["bad.tif", "f0.tif", "f1.tif", "f2.tif"]
    bad = [r for r in rows if r["status"] != "ok"]
    assert [r["image"] for r in bad] == ["bad.tif"] and bad[0]["error"]
    expected = [r for r in reference_off["objects"] if r["image"] in {"f0.tif", "f1.tif", "f2.tif"}]
    assert read_csv(out / "objects.csv") == expected
    assert json.loads((out / "run.json").read_text())["cluster"]["kind"] == "scheduler"


@pytest.mark.slow
def test_a_worker_killed_mid_image_loses_and_duplicates_nothing(cluster, det_model, frames, reference_off, tmp_path):
    """SIGKILL one worker while it segments: Dask reruns its image elsewhere (its Nanny restarts it)."""
    client = cluster.client
    pids = client.run(os.getpid)
    killed = []

    def kill_one_busy_worker(result):
        if killed:
            return
        busy = [a for a, keys in client.processing().items() if any(str(k).startswith("mitotally-process") for k in keys)]
        if busy:
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(busy[0])

    summary = run_there(cluster, [frames], tmp_path, config(det_model, scale_estimate="off"), on_result=kill_one_busy_worker)
    assert killed, "no worker was busy when the first result came back"
    assert not summary.failed and len(summary.results) == N
    assert_each_input_once(tmp_path, {f"f{i}.tif" for i in range(N)})
    assert tables(tmp_path) == reference_off


@pytest.mark.slow
def test_mito_watch_with_workers_takes_each_file_exactly_once(det_model, frames, tmp_path):
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    for i in range(3):
        shutil.copy(frames / f"f{i}.tif", in_dir / f"f{i}.tif")
    (in_dir / "broken.tif").write_bytes(b"II*\x00 cut short")
    rc = watch_cli.main([str(in_dir), "-o", str(out), "--workers", "2", "--once", "--settle", "0.2", "--retries", "0",
                         "--model", str(det_model), "--backend", "torch", "--device", "cpu", "--scale-estimate", "off",
                         "--log-level", "WARNING"])
    assert rc == 2  # --once finished, one file failed
    journal = Journal(journal_path(out), readonly=True)
    try:
        rows = {r.rel: r for r in journal.rows()}
    finally:
        journal.close()
    assert {rel: r.state for rel, r in rows.items()} == {**{f"f{i}.tif": DONE for i in range(3)}, "broken.tif": FAILED}
    assert all(r.runs == 1 for rel, r in rows.items() if r.state == DONE)
    assert_each_input_once(out, set(rows))
    records = {p.stem: json.loads(p.read_text()) for p in (out / "records").iterdir()}
    objects = read_csv(out / "objects.csv")
    for key, rec in records.items():
        assert len([o for o in objects if o["image"] == key]) == len(rec["object_rows"])
        assert rec["source"]["sha256"] and rec["source"]["worker"] in {"0", "1"}
    assert json.loads((out / "run.json").read_text())["cluster"]["n_workers"] == 2
