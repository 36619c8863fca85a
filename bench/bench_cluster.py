"""In-process `mito-run` vs `--workers N` on the same frames: frames/s, the ratio, bytes moved per frame.

Writes N synthetic EM-like frames (as bench_run.py: 8-bit ImageJ TIFFs at 5 nm, full 4864x3704 unless
--size), then runs them twice into scratch folders: in this process with --threads T (default 2), and
on a local Dask cluster of --workers N processes with T // N threads each (the `--workers` path of
mito-run: one task per frame, the model loaded once per worker). Frames/s is on the wall clock of the
runs themselves; starting the workers and loading the model are reported apart (a long run pays them
once). Also measured per frame: the input bytes a worker reads, the output bytes it writes into OUT,
and the result it sends to the client (pickled): what a cluster moves over its network and file system.

    python bench/bench_cluster.py --frames 8                          # CPU: 2 threads vs 2 workers x 1 thread
    python bench/bench_cluster.py --frames 16 --device cuda --workers 2 --threads 8   # one worker per GPU
    python bench/bench_cluster.py --frames 1 --size 512x512           # plumbing check only
"""
from __future__ import annotations

import argparse
import datetime
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import PIXEL_NM, machine, synthetic_frame  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="model folder (default: the model shipped with mitotally)")
    p.add_argument("--frames", type=int, default=8, help="number of frames (default: 8)")
    p.add_argument("--size", default="", metavar="WxH", help="crop the synthetic frames to WxH (default: 4864x3704)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the cluster run (default: 2)")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU threads of the in-process run; each worker gets threads // workers (default: 2)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")
    p.add_argument("--backend", default="auto", help="auto | torch | onnxruntime | tensorrt (default: auto)")
    p.add_argument("--scale-estimate", default="auto", choices=("auto", "always", "off"), help="as mito-run (default: auto)")
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary folder, deleted afterwards)")
    return p


def write_frames(folder: Path, count: int, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    w, h = (int(v) for v in size.lower().split("x")) if size else (None, None)
    for i in range(count):
        img = synthetic_frame(i)
        if w:
            img = img[:h, :w]
        tifffile.imwrite(folder / f"frame_{i:03d}.tif", img, imagej=True,
                         resolution=(1000 / PIXEL_NM, 1000 / PIXEL_NM), metadata={"unit": "um"})


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def in_process(items, out: Path, config):
    import torch

    from mitotally.runtime.pipeline import run
    from mitotally.runtime.segmenter import Segmenter

    torch.set_num_threads(config.threads)
    t0 = time.perf_counter()
    seg = Segmenter(config.model_dir, backend=config.backend, device=config.device, threads=config.threads,
                    scale_estimate=config.scale_estimate)
    load_s = time.perf_counter() - t0
    return run(items, seg, out, config), load_s, f"{seg.backend.name} {seg.backend.precision} on {seg.device}"


def on_cluster(items, out: Path, config, workers: int):
    from mitotally.runtime.cluster.dispatch import run_on_cluster
    from mitotally.runtime.cluster.start import start_local
    from mitotally.runtime.cluster.workers import WorkerPool

    t0 = time.perf_counter()
    conn = start_local(workers, config.device, config.threads)
    try:
        pool = WorkerPool(conn, config, out).start(items[0].path)
        start_s = time.perf_counter() - t0
        try:
            summary = run_on_cluster(items, pool, out, config)
        finally:
            pool.close()
    finally:
        conn.close()
    return summary, start_s


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from mitotally.runtime.pipeline import RunConfig
    from mitotally.runtime.reader import discover_inputs
    from mitotally.runtime.segmenter import default_model_dir

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    model = args.model or default_model_dir()
    per_worker = max(1, args.threads // args.workers)
    try:
        frames = work / "frames"
        shutil.rmtree(work / "local", ignore_errors=True)
        shutil.rmtree(work / "cluster", ignore_errors=True)
        write_frames(frames, args.frames, args.size)
        items = discover_inputs([frames])
        base = dict(model_dir=model, backend=args.backend, device=args.device, scale_estimate=args.scale_estimate)
        local, load_s, backend = in_process(items, work / "local", RunConfig(threads=args.threads, **base))
        cluster, start_s = on_cluster(items, work / "cluster", RunConfig(threads=per_worker, **base), args.workers)
        n = len(items)
        in_bytes = folder_bytes(frames) / n
        out_bytes = (folder_bytes(work / "cluster") - folder_bytes(work / "cluster" / "records")) / n
        result_bytes = sum(len(pickle.dumps(r)) for r in cluster.results) / n
        same = (work / "local" / "objects.csv").read_bytes() == (work / "cluster" / "objects.csv").read_bytes()
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    failed = len(local.failed) + len(cluster.failed)
    size = args.size or "4864x3704"
    print(f"\n### in-process vs --workers {args.workers}, {datetime.date.today()} ({machine(args.device)})\n")
    print(f"model `{model}`, backend {backend}; {n} frame(s) {size} at {PIXEL_NM:g} nm; "
          f"objects.csv {'identical' if same else 'DIFFERENT'} between the two runs\n")
    print("| run | processes x threads | frames/s | s / frame | start-up s (not in frames/s) |")
    print("|---|---|---:|---:|---:|")
    fps_local, fps_cluster = n / local.wall_s, n / cluster.wall_s
    print(f"| in-process | 1 x {args.threads} | {fps_local:.3f} | {local.wall_s / n:.2f} | {load_s:.1f} (model load) |")
    print(f"| `--workers {args.workers}` | {args.workers} x {per_worker} | {fps_cluster:.3f} | {cluster.wall_s / n:.2f} | "
          f"{start_s:.1f} (workers + model) |")
    print(f"\n**ratio {fps_cluster / fps_local:.2f}x** (`--workers {args.workers}` / in-process frames/s)\n")
    print(f"per frame: {in_bytes / 2**20:.2f} MiB input read by a worker, {out_bytes / 2**20:.2f} MiB outputs written into "
          f"OUT, {result_bytes / 1024:.1f} KiB result sent to the client")
    return 0 if not failed and same else 1


if __name__ == "__main__":
    sys.exit(main())
