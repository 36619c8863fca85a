"""End-to-end `mito-run` benchmark: a folder of full 4864x3704 frames, per-stage times and frames/s.

Writes N synthetic EM-like frames (8-bit ImageJ TIFFs at 5 nm with ~300
mitochondria-sized ellipses each, or real images from `--from-images`
resized to the frame size), loads the model once, warms it up on one tile,
then runs the real pipeline (`runtime.pipeline.run`: read-ahead, scale,
infer, stitch, measure, write) into a scratch output folder. Prints a
markdown table for BENCHMARKS.md with the machine named.

Stage times are summed over frames; `read` runs in worker threads while the
previous frame is segmented, so it overlaps the other stages, and frames/s is
measured on the wall clock. "around inference" is every stage but `infer`,
as a share of the per-frame stage total (the goal: under 20%). Measuring and
writing frame k run on a worker thread while the model segments frame k+1, so
the stage times add up to more than the wall clock; `--no-overlap` runs them
one after the other (the baseline for that overlap).

    python bench/bench_run.py --model models/em-mito-r18 --frames 8 --device cuda
    python bench/bench_run.py --frames 2 --threads 2 --backend onnxruntime --precision int8
    python bench/bench_run.py --random-model --frames 1 --threads 2   # plumbing and non-model costs only
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

FRAME = (3704, 4864)  # rows, cols of an instrument frame
PIXEL_NM = 5.0


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="model folder (default: the model shipped with mitotally)")
    p.add_argument("--random-model", action="store_true",
                   help="an untrained model of the default architecture (timings only: its detections are arbitrary)")
    p.add_argument("--frames", type=int, default=8, help="number of full frames (default: 8)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--backend", default="auto", help="auto | torch | onnxruntime | tensorrt (default: auto)")
    p.add_argument("--precision", default="auto", help="auto | fp32 | fp16 | int8, as mito-run (default: auto)")
    p.add_argument("--batch", type=int, help="tiles per inference call (default: the backend's)")
    p.add_argument("--no-overlap", action="store_true",
                   help="measure and write each frame before the model starts on the next (the A/B baseline)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--tta", action="store_true", help="test-time augmentation, as mito-run --tta (4 flips per tile)")
    p.add_argument("--scale-estimate", default="auto", choices=("auto", "always", "off"),
                   help="as mito-run; auto checks the frames' 5 nm calibration once per run (default: auto)")
    p.add_argument("--from-images", type=Path, help="make frames from the images in this folder (resized to 4864x3704)")
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary folder, deleted afterwards)")
    p.add_argument("--profile", action="store_true",
                   help="also split `infer` into trunk, RPN decode, RoIAlign, box and mask heads (bench/profile_heads.py)")
    return p


def synthetic_frame(seed: int, n: int = 300) -> np.ndarray:
    """Mid-gray cytoplasm, dark mitochondria 0.3-1.5 um long with a darker membrane, noise (8-bit)."""
    from scipy import ndimage
    from skimage.draw import ellipse

    rng = np.random.default_rng(seed)
    labels = np.zeros(FRAME, np.int32)
    for k in range(1, n + 1):
        a, b = rng.uniform(30, 150), rng.uniform(25, 60)  # semi-axes in px at 5 nm
        rr, cc = ellipse(rng.uniform(0, FRAME[0]), rng.uniform(0, FRAME[1]), a, b, shape=FRAME, rotation=rng.uniform(0, np.pi))
        free = labels[rr, cc] == 0
        labels[rr[free], cc[free]] = k
    img = np.full(FRAME, 170.0, np.float32)
    inside = labels > 0
    img[inside] = 95.0
    img[inside & ~ndimage.binary_erosion(inside, iterations=3)] = 45.0
    img = ndimage.gaussian_filter(img, 1.5) + rng.normal(0, 10, FRAME).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def frames_from_images(folder: Path, count: int) -> list[np.ndarray]:
    from PIL import Image

    from mitotally.runtime.image_io import IMAGE_SUFFIXES, read_image
    from mitotally.runtime.normalize import to_gray

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {folder}")
    out = []
    for i in range(count):
        gray = np.clip(to_gray(read_image(files[i % len(files)]).array), 0, 255).astype(np.uint8)
        out.append(np.asarray(Image.fromarray(gray).resize((FRAME[1], FRAME[0]), Image.BILINEAR)))
    return out


def random_model(folder: Path, frame: np.ndarray) -> Path:
    """Untrained default architecture; its score threshold keeps ~0.5% of proposals, so a frame gets a few
    hundred (arbitrary) instances instead of thousands of overlapping ones."""
    from mitotally.runtime.backends.torch_backend import TorchBackend
    from mitotally.runtime.manifest import Manifest, save_model
    from mitotally.runtime.model import ModelConfig, build_model
    from mitotally.runtime.prepare import prepare

    torch.manual_seed(0)
    manifest = Manifest(model=ModelConfig(), pixel_size_nm=10.0, default_input_pixel_size_nm=PIXEL_NM, tile=512, overlap=128)
    model = build_model(manifest.model, manifest.tile)
    tile = prepare(frame, manifest.normalization, PIXEL_NM / manifest.pixel_size_nm)[:512, :512]
    scores = TorchBackend(model, 512, 1, "cpu", 0.0).infer(tile[None])[0].scores
    manifest = manifest.replace(score_threshold=float(np.percentile(scores, 99.5)) if len(scores) else 0.5)
    return save_model(folder, manifest, model.state_dict())


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__}, {torch.get_num_threads()} torch threads"
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mitotally.runtime.pipeline import STAGES, RunConfig, run
    from mitotally.runtime.reader import discover_inputs
    from mitotally.runtime.segmenter import Segmenter

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_run_"))
    try:
        frames_dir, out = work / "frames", work / "out"
        shutil.rmtree(out, ignore_errors=True)
        frames_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        images = frames_from_images(args.from_images, args.frames) if args.from_images else [synthetic_frame(i) for i in range(args.frames)]
        for i, img in enumerate(images):
            tifffile.imwrite(frames_dir / f"frame_{i:03d}.tif", img, imagej=True,
                             resolution=(1000 / PIXEL_NM, 1000 / PIXEL_NM), metadata={"unit": "um"})
        print(f"wrote {args.frames} frames of {FRAME[1]}x{FRAME[0]} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        model_dir = random_model(work / "random_model", images[0]) if args.random_model else args.model
        t0 = time.perf_counter()
        seg = Segmenter(model_dir, backend=args.backend, device=args.device, batch=args.batch, precision=args.precision,
                        threads=args.threads, scale_estimate=args.scale_estimate, tta=args.tta)
        warm = np.full((1, seg.backend.tile, seg.backend.tile), 0.5, np.float32)
        seg.backend.infer(np.repeat(warm, seg.backend.batch, axis=0))  # cudnn autotune, lazy init: not timed
        load_s = time.perf_counter() - t0
        clock = None
        if args.profile:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from profile_heads import instrument

            clock = instrument(seg.plain_backend)  # the wrapped backend's heads, also under --tta
        items = discover_inputs([frames_dir])
        summary = run(items, seg, out, RunConfig(model_dir=model_dir, device=args.device, backend=args.backend,
                                                 precision=args.precision, batch=args.batch, threads=args.threads,
                                                 overlap_writes=not args.no_overlap, scale_estimate=args.scale_estimate,
                                                 tta=args.tta))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in summary.results if not r.ok]
    if failed:
        print(f"{len(failed)} frame(s) failed: {failed[0].error}", file=sys.stderr)
    n = len(summary.results) - len(failed)
    busy = sum(summary.timings.values())
    print(f"\n### mito-run end to end, {datetime.date.today()} ({machine(str(seg.device))})\n")
    print(f"model `{seg.model_dir}` ({'untrained, ' if args.random_model else ''}{seg.manifest.model.backbone}, tile {seg.backend.tile}, "
          f"batch {seg.backend.batch}, {seg.manifest.pixel_size_nm:g} nm), backend {seg.backend.name} {seg.backend.precision} on {seg.device}; "
          f"{n} frame(s) {FRAME[1]}x{FRAME[0]} at {PIXEL_NM:g} nm, {summary.n_objects} mitochondria found; model load + warm-up {load_s:.1f} s\n")
    print("| stage | total s | s / frame | share |")
    print("|---|---:|---:|---:|")
    for stage in STAGES:
        v = summary.timings.get(stage, 0.0)
        print(f"| {stage} | {v:.2f} | {v / max(n, 1):.3f} | {v / busy:.1%} |" if busy else f"| {stage} | 0 | 0 | - |")
    around = busy - summary.timings.get("infer", 0.0)
    print(f"| **around inference** (all but infer) | {around:.2f} | {around / max(n, 1):.3f} | **{around / busy:.1%}** |" if busy else "")
    if clock is not None:
        infer = summary.timings.get("infer", 0.0)
        print("\n| inside infer | s / frame | share of the frame's stage total |")
        print("|---|---:|---:|")
        for stage, v in clock.table(infer):
            print(f"| {stage} | {v / max(n, 1):.3f} | {v / busy:.1%} |")
        rois = {k: v for k, v in clock.rois.items()}
        if rois:
            print("\nRoIs pooled per frame: " + ", ".join(f"{k} {v / max(n, 1):.0f}" for k, v in rois.items()))
    print(f"\n**{n / summary.wall_s:.3f} frames/s** ({summary.wall_s / max(n, 1):.2f} s per frame, wall clock; " + ("read overlaps in threads, measure + write do not: --no-overlap)" if args.no_overlap else "read, and measure + write, overlap the model in threads)"))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
