"""`mito-run`: count and measure mitochondria in EM images (files or folders) with a trained model.

Exit status: 0 when every input succeeded (finished inputs skipped on a rerun
count as succeeded), 1 when at least one input failed (each has a row in
images.csv and one line on stderr), 2 when the run could not start (no model,
no inputs, output folder not writable, bad option), 130 when interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .image_io import parse_pixel_size

EPILOG = """\
examples:
  mito-run frames/ -o results/                     every image in frames/ (not subfolders)
  mito-run frames/ -o results/ --recursive         ... and in its subfolders
  mito-run a.tif b.tif -o results/ --pixel-size 4.2nm
  mito-run frames/ -o results/ --model runs/lucchi/model --device cuda

outputs (in OUT): objects.csv (one row per mitochondrion), images.csv (one row
per image, failed ones too), labels/<name>.tif, rois/<name>.zip (Fiji ROI
Manager), overlays/<name>.png, predictions.json (COCO), run.json, records/.
<name> is the input's path relative to the input folder without its extension,
e.g. sub/frame 01 for sub/frame 01.tif (the extension stays where two inputs
would share a name, e.g. a.tif and a.png).
Rerunning into the same OUT skips finished images (use --overwrite to redo).
exit status: 0 all inputs succeeded, 1 some failed, 2 could not start.
"""


def _pixel_size(text: str) -> float:
    try:
        return parse_pixel_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _device(text: str) -> str:
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def get_args_parser() -> argparse.ArgumentParser:
    from .backends.select import BACKEND_NAMES, PRECISIONS
    from .scale_probe import SCALE_ESTIMATE_MODES
    from .segmenter import CONTRASTS

    p = argparse.ArgumentParser(
        prog="mito-run",
        description="Find, count and measure mitochondria in EM images (TIFF 8/16-bit incl. ImageJ/OME and stacks, PNG, JPEG).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", type=Path, help="image files and/or folders of images")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="OUT", help="output folder (created if missing)")
    p.add_argument("--model", type=Path, metavar="DIR",
                   help="model folder (model.json + model.safetensors, from mito-train); default: the model shipped with mitotally")
    p.add_argument("--backend", choices=BACKEND_NAMES, default="auto",
                   help="inference engine; auto picks the fastest available and run.json says why (default: auto)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="arithmetic of the convolutional trunk: auto = FP16 on a GPU, FP32 on a CPU (the same instances as "
                        "PyTorch); int8 = the INT8 trunk written by `mito-export --int8` in ONNX Runtime on a CPU, 1.2-1.6x "
                        "the frames/s of FP32 (measured: the same F1 on held-out images; see BENCHMARKS.md). Proposal "
                        "decoding, NMS and the heads are always FP32 (default: auto)")
    p.add_argument("--device", default="auto", type=_device, metavar="{auto,cpu,cuda,cuda:N}",
                   help="where to run the model; auto = cuda when a GPU is visible, else cpu (default: auto)")
    p.add_argument("--pixel-size", type=_pixel_size, metavar="SIZE",
                   help="pixel size of every input, overriding file metadata, e.g. 4.2nm or 0.0042um. Without it, "
                        "the file's ImageJ/OME/TIFF resolution is used; files without one are measured in px only "
                        "(and their scale for the model is estimated: see --scale-estimate)")
    p.add_argument("--scale-estimate", choices=SCALE_ESTIMATE_MODES, default="auto",
                   help="the model finds mitochondria only near the scale it was trained at, so the image centre is "
                        "segmented at 2x coarser to 8x finer pixel sizes (about 0.6-2 s, once per image size). auto: "
                        "images without a pixel size are scaled by this estimate; for calibrated ones it is only a "
                        "check that warns when another scale finds clearly more. always: the estimate also sets the "
                        "scale the model sees calibrated images at; their µm values still use the calibration. off: "
                        "no estimate; images without a pixel size get the model's default (5 nm for the shipped "
                        "model). images.csv says which scale was used (scaling_source) (default: auto)")
    p.add_argument("--no-scale-estimate", dest="scale_estimate", action="store_const", const="off",
                   help="same as --scale-estimate off")
    p.add_argument("--contrast", choices=CONTRASTS, default="normal",
                   help="normal: membranes dark, mitochondria darker than cytoplasm, as in TEM (and in every image the "
                        "shipped model was trained on). inverted: membranes bright, as some SEM detectors record them or "
                        "an inverted stack shows them; each image is then read as its negative, exactly as if it had been "
                        "inverted in Fiji (Edit > Invert) first. The shipped model finds nothing in inverted images read "
                        "as normal (F1 0.00 on inverted held-out slices), so check one overlay (default: normal)")
    p.add_argument("--keep-data-bars", dest="skip_data_bars", action="store_false",
                   help="segment the whole frame. By default a flat dark or bright band along an edge (a TEM "
                        "camera's data bar with text and scale bar) is left out: it upsets the model's intensity "
                        "normalisation and tiles (F1 0.81 -> 0.48 on a cardiac frame with a bar), and image areas "
                        "and densities count the specimen region only; a warning says what was left out")
    p.add_argument("--recursive", "-r", action="store_true", help="also process images in subfolders of folder INPUTs, and in folders linked into them "
                        "(each real folder once; file links are always followed)")
    p.add_argument("--overwrite", action="store_true", help="redo inputs that already have finished results in OUT")
    p.add_argument("--batch", type=_positive, metavar="N", help="tiles per inference call (default: the backend's)")
    p.add_argument("--tile", type=_positive, metavar="N",
                   help="tile side in model pixels (default: the model's; torch backend only)")
    p.add_argument("--score-threshold", type=_fraction, metavar="S",
                   help="keep detections scoring at least S (default: the model's, chosen on its validation images; "
                        "detections under 0.05 are never kept)")
    p.add_argument("--mask-threshold", type=_fraction, metavar="M",
                   help="a pixel belongs to a mitochondrion where the mask probability is at least M; higher gives "
                        "tighter outlines and smaller areas (default: the model's)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: every tile is also segmented flipped left-right, up-down and both, and "
                        "the four views' detections are fused (a detection's score is its mean over the views). On a CPU "
                        "2.5-2.6x the frame time (the trunk runs 4 times); see BENCHMARKS.md for what it measured on held-out images "
                        "before you rely on it (default: off)")
    p.add_argument("--threads", type=_positive, metavar="N",
                   help="CPU threads for torch and ONNX Runtime (default: their own choice, usually all cores)")
    p.add_argument("--read-ahead", type=_positive, default=2, metavar="N",
                   help="images decoded ahead of inference; memory holds about N+1 decoded images (default: 2)")
    p.add_argument("--no-overlays", dest="overlays", action="store_false", help="skip the QC overlay PNGs")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary; failures and warnings still print")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDR",
                       help="send the images to a running Dask cluster, e.g. tcp://HOST:8786; workers read inputs and "
                            "the model by path and write into OUT (README: Many machines; needs the [cluster] extra)")
    where.add_argument("--workers", type=_positive, metavar="N",
                       help="start N worker processes here: one per GPU, or on a CPU each with cores/N threads "
                            "(--threads sets them); needs the [cluster] extra")
    return p


def _check_writable(out: Path) -> str | None:
    """None if `out` can be created and written, else the one-line reason."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".mito-run-probe.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        return f"cannot write to output folder {out}: {e.strerror or e}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from rich.console import Console

    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def fail(message: str) -> int:
        err.print(f"mito-run: error: {message}", markup=False)
        return 2

    from .reader import InputError, describe_skipped, find_inputs

    out = args.out.absolute()
    try:
        found = find_inputs(args.inputs, recursive=args.recursive, exclude=out)
    except InputError as e:
        return fail(str(e))
    items = found.items
    if found.skipped:  # one line, also with --quiet: a link the user made that was not followed
        err.print(f"mito-run: warning: {describe_skipped(found.skipped)}", markup=False)
    if not items:
        hint = "" if args.recursive else " (add --recursive to search subfolders)"
        return fail(f"no images (.tif .tiff .png .jpg .jpeg) found in {', '.join(map(str, args.inputs))}{hint}")
    problem = _check_writable(out)
    if problem:
        return fail(problem)

    from .pipeline import RunConfig

    config = RunConfig(model_dir=args.model, backend=args.backend, precision=args.precision, device=args.device, pixel_size_nm=args.pixel_size,
                       batch=args.batch, tile=args.tile, score_threshold=args.score_threshold,
                       mask_threshold=args.mask_threshold, overwrite=args.overwrite, recursive=args.recursive,
                       quiet=args.quiet, read_ahead=args.read_ahead, threads=args.threads, overlays=args.overlays,
                       scale_estimate=args.scale_estimate, skip_data_bars=args.skip_data_bars, tta=args.tta,
                       contrast=args.contrast)
    if args.scheduler or args.workers:  # the same outputs, made by a Dask cluster's workers
        from .cluster.command import run_command

        return run_command(items, out, config, args.scheduler, args.workers, err)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    segmenter = _load(config, fail)
    if isinstance(segmenter, int):
        return segmenter
    from .pipeline import run

    reporter = RunReporter(err, len(items), quiet=config.quiet)
    try:
        with reporter:
            summary = run(items, segmenter, out, config, on_result=reporter.update)
    except KeyboardInterrupt:
        err.print(f"mito-run: interrupted; finished images are kept in {out} (rerun to continue)", markup=False)
        return 130
    reporter.summary(summary, out, backend=f"{segmenter.backend_reason}, {segmenter.backend.precision} trunk")
    if summary.table_error:
        err.print(f"mito-run: error: {summary.table_error} (rerun to rebuild them)", markup=False)
    return 0 if not summary.failed and not summary.table_error else 1


class RunReporter:
    """Progress bar (images/s, ETA), failures and each distinct warning (once) as they happen, then a summary table."""

    def __init__(self, console, total: int, quiet: bool = False):
        self.console, self.total, self.quiet = console, total, quiet
        self.processed = self.skipped = self.failed = self.objects = 0
        self.warned: set[str] = set()
        self._progress = self._task = None
        self._t0 = None

    def __enter__(self) -> "RunReporter":
        import time

        self._t0 = time.perf_counter()
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]mito-run[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                console=self.console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("images", total=self.total, rate="- images/s", status="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _print(self, text: str) -> None:
        (self._progress.console if self._progress is not None else self.console).print(text, markup=False)

    def update(self, result) -> None:
        import time

        if result.skipped:
            self.skipped += 1
        else:
            self.processed += 1
        self.objects += result.n_objects
        if not result.ok:
            self.failed += 1
            self._print(f"mito-run: failed: {result.path}: {result.error}")
        if result.warnings and not result.skipped:
            for text in result.warnings:  # each different warning once (e.g. every new scale estimate), not per image
                if text not in self.warned:
                    self._print(f"mito-run: warning: {result.path}: {text} (shown once; every image's warnings "
                                "are in records/<key>.json, and images.csv says how each was scaled)")
                    self.warned.add(text)
        if self._progress is not None:
            elapsed = time.perf_counter() - self._t0
            rate = f"{self.processed / elapsed:.2f} images/s" if self.processed and elapsed > 0 else "- images/s"
            status = f"{self.objects} mitochondria" + (f", {self.failed} failed" if self.failed else "")
            self._progress.update(self._task, advance=1, rate=rate, status=status)

    def summary(self, summary, out: Path, backend: str = "") -> None:
        if self.quiet:
            return
        from rich.table import Table

        t = Table(title=f"mito-run: results in {out}", show_header=True)
        for col in ("images", "done now", "skipped (already done)", "failed", "mitochondria", "time"):
            t.add_column(col, justify="right")
        t.add_row(str(len(summary.results)), str(self.processed), str(self.skipped), str(len(summary.failed)),
                  str(summary.n_objects), f"{summary.wall_s:.1f} s")
        self.console.print(t)
        busy = sum(summary.timings.values())
        if busy:
            shares = ", ".join(f"{k} {v / busy:.0%}" for k, v in summary.timings.items())
            self.console.print(f"time per stage: {shares}", markup=False)
        if backend:
            self.console.print(f"backend: {backend}", markup=False)
        if summary.failed:
            self.console.print(f"{len(summary.failed)} input(s) failed: see the error column of {out / 'images.csv'}", markup=False)


def _load(config, fail):
    """The Segmenter, or an exit status after a one-line error."""
    from .backends.select import BackendUnavailable
    from .segmenter import ModelNotFound, Segmenter

    try:
        return Segmenter(config.model_dir, backend=config.backend, device=config.device, batch=config.batch, tile=config.tile,
                         score_threshold=config.score_threshold, mask_threshold=config.mask_threshold,
                         precision=config.precision, threads=config.threads, scale_estimate=config.scale_estimate,
                         skip_data_bars=config.skip_data_bars, tta=config.tta, contrast=config.contrast)
    except (ModelNotFound, BackendUnavailable) as e:
        return fail(str(e))
    except FileNotFoundError as e:
        return fail(f"{e.filename or config.model_dir}: {e.strerror or e}" if e.filename else str(e))
    except (ValueError, RuntimeError, OSError) as e:
        where = config.model_dir if config.model_dir else "model"
        return fail(f"{where}: cannot load the model: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


if __name__ == "__main__":
    sys.exit(main())
