"""`mito-watch`: segment every image an instrument writes into a folder, exactly once, crash-safe.

    mito-watch IN_DIR -o OUT_DIR [--model DIR] [--backend NAME] [--recursive] [--include GLOB] [--exclude GLOB]
               [--poll SECONDS] [--settle SECONDS] [--once]
    mito-watch status OUT_DIR [--json]
"""
from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import sqlite3
import sys
import threading
from pathlib import Path

from .sources import DEFAULT_EXCLUDE, DEFAULT_INCLUDE

LOG_NAME = "mito-watch.log"
EXAMPLES = """examples:
  mito-watch /data/microscope/incoming -o /data/results/incoming --recursive
  mito-watch //scope-pc/export -o D:/results --poll 10 --settle 30      (SMB share: poll)
  mito-watch in/ -o out/ --once                                         (cron / Task Scheduler)
  mito-watch status out/

OUT_DIR gets mito-run's outputs (labels/, rois/, overlays/, records/, objects.csv, images.csv,
predictions.json, run.json) plus the journal mito-watch.sqlite and the log mito-watch.log.
Keep OUT_DIR on a local disk (SQLite's WAL mode does not work on network shares).
Exit codes: 0 stopped cleanly (SIGTERM/SIGINT) or --once finished; 2 --once finished but some files failed;
1 could not start (or --once could not write results)."""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be >= 0")
    return value


def _pixel_size(text: str) -> float:
    """'4.2', '4.2nm', '0.0042um' -> nanometres (the same parser as mito-run)."""
    from ..image_io import parse_pixel_size

    try:
        return parse_pixel_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def watch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mito-watch", description="Watch IN_DIR and turn every complete image written into it into mito-run results in OUT_DIR, "
        "exactly once, surviving crashes and restarts. `mito-watch status OUT_DIR` reports progress.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("in_dir", metavar="IN_DIR", type=Path, help="folder the instrument writes into (never written to)")
    p.add_argument("-o", "--output", dest="out_dir", metavar="OUT_DIR", type=Path, required=True,
                   help="results, journal and log; may be inside IN_DIR (it is then never scanned)")
    p.add_argument("--model", type=Path, default=None, help="model folder (model.json + model.safetensors); default: the shipped model")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"),
                   help="inference backend (default auto: the fastest available, as mito-run)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"),
                   help="trunk arithmetic, as mito-run: auto = FP16 on a GPU, FP32 on a CPU; int8 = the INT8 trunk "
                        "of `mito-export --int8` on a CPU (default auto)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--pixel-size", type=_pixel_size, default=None, help="override every file's pixel size, e.g. 4.2nm or 0.0042um")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (4 flips fused, ~2.5x the frame time on a CPU), as mito-run --tta")
    p.add_argument("--recursive", action="store_true", help="also watch subfolders (new ones included)")
    p.add_argument("--include", action="append", metavar="GLOB", default=None,
                   help=f"file names (or relative paths, if the glob has a '/') to take; repeatable; case-insensitive "
                        f"(default: {' '.join(DEFAULT_INCLUDE)})")
    p.add_argument("--exclude", action="append", metavar="GLOB", default=[],
                   help=f"names or relative paths to skip, added to the defaults ({' '.join(DEFAULT_EXCLUDE)}); a matching folder is skipped whole")
    p.add_argument("--poll", type=_seconds, metavar="SECONDS", default=None,
                   help="poll the folder every SECONDS instead of using file-system events (automatic on network shares)")
    p.add_argument("--settle", type=_seconds, metavar="SECONDS", default=5.0,
                   help="a file is taken once its size and mtime stayed the same this long (default 5); raise it for slow writers")
    p.add_argument("--once", action="store_true", help="process what is there (and anything arriving meanwhile), then exit")
    p.add_argument("--retries", type=int, default=3, metavar="N", help="retries of a failing file, with back-off, before it is recorded failed (default 3)")
    p.add_argument("--backoff", type=_seconds, default=10.0, metavar="SECONDS", help="first retry delay, doubled each time (default 10)")
    p.add_argument("--batch", type=int, default=None, help="tiles per inference call (default: the backend's)")
    p.add_argument("--no-overlays", action="store_true", help="do not write overlays/<name>.png")
    p.add_argument("--scale-estimate", choices=("auto", "always", "off"), default="auto",
                   help="as mito-run: auto scales images without a pixel size by an estimate and only checks "
                        "calibrated ones; always also rescales those for the model; off assumes the default")
    p.add_argument("--no-scale-estimate", dest="scale_estimate", action="store_const", const="off",
                   help="same as --scale-estimate off")
    p.add_argument("--keep-data-bars", action="store_true",
                   help="segment whole frames, including a flat data bar along an edge (as mito-run)")
    p.add_argument("--contrast", choices=("normal", "inverted"), default="normal",
                   help="as mito-run: inverted reads each frame as its negative, for instruments that show membranes "
                        "bright (default: normal, membranes dark)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDR",
                       help="segment on a running Dask cluster (tcp://HOST:8786); this daemon keeps the journal "
                            "(README: Many machines; needs the [cluster] extra)")
    where.add_argument("--workers", type=int, metavar="N",
                       help="segment in N worker processes here (one per GPU, or cores/N threads each); needs the [cluster] extra")
    return p


def status_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mito-watch status", description="What a mito-watch output folder's journal says: "
                                "daemon running or not, queue, done, failed (with reasons), rate, last error.")
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def setup_logging(out_dir: Path, level: str) -> list[logging.Handler]:
    """A rotating log file in OUT_DIR (5 x 5 MB) plus the terminal (stderr, which systemd's journal keeps)."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = logging.handlers.RotatingFileHandler(out_dir / LOG_NAME, maxBytes=5 * 2**20, backupCount=5, encoding="utf-8")
    term = logging.StreamHandler(sys.stderr)
    handlers = [file_handler, term]
    for h in handlers:
        h.setFormatter(fmt)
    for name in ("mito-watch", "mitotally"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for h in handlers:
            logger.addHandler(h)
    return handlers


def _teardown_logging(handlers: list[logging.Handler]) -> None:
    for name in ("mito-watch", "mitotally"):
        for h in handlers:
            logging.getLogger(name).removeHandler(h)
    for h in handlers:
        h.close()


def _status(argv: list[str]) -> int:
    from .journal import JournalError
    from .status import format_status, read_status

    args = status_parser().parse_args(argv)
    try:
        st = read_status(args.out_dir)
    except JournalError as exc:
        print(f"mito-watch status: {exc}", file=sys.stderr)
        return 1
    except (sqlite3.Error, OSError) as exc:
        print(f"mito-watch status: {args.out_dir}: cannot read the journal: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(st.to_dict(), indent=2) if args.json else format_status(st))
    return 0


def config_from_args(args: argparse.Namespace):
    from .config import WatchConfig
    from .sources import Filters

    include = tuple(args.include) if args.include else DEFAULT_INCLUDE
    filters = Filters(include=include, exclude=DEFAULT_EXCLUDE + tuple(args.exclude), recursive=args.recursive)
    return WatchConfig(in_dir=args.in_dir.absolute(), out_dir=args.out_dir.absolute(), filters=filters, poll_s=args.poll,
                       settle_s=args.settle, once=args.once, max_attempts=args.retries + 1, backoff_s=args.backoff)


def run_config_from_args(args: argparse.Namespace):
    """What each frame's pipeline run depends on (recorded in run.json)."""
    from ..pipeline import RunConfig

    return RunConfig(model_dir=args.model, backend=args.backend, precision=args.precision, device=args.device,
                     pixel_size_nm=args.pixel_size, batch=args.batch, recursive=args.recursive, quiet=True,
                     overlays=not args.no_overlays, scale_estimate=args.scale_estimate,
                     skip_data_bars=not args.keep_data_bars, tta=args.tta, contrast=args.contrast)


def _processor_factory(args: argparse.Namespace, cfg, run_cfg):
    """The model here (`PipelineProcessor`), or on a cluster (`cluster.watch.ClusterProcessor`)."""
    if not (args.scheduler or args.workers):
        from .processor import PipelineProcessor

        return lambda: PipelineProcessor(cfg.out_dir, run_cfg)

    def on_cluster():
        from ..cluster.start import open_connection
        from ..cluster.watch import ClusterProcessor

        return ClusterProcessor(cfg.out_dir, run_cfg, open_connection(args.scheduler, args.workers, run_cfg.device, None))

    return on_cluster


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "status":
        return _status(argv[1:])
    args = watch_parser().parse_args(argv)
    if args.retries < 0:
        print("mito-watch: --retries must be >= 0", file=sys.stderr)
        return 1
    if not args.in_dir.is_dir():
        print(f"mito-watch: {args.in_dir}: not a folder", file=sys.stderr)
        return 1
    if args.workers is not None and args.workers < 1:
        print("mito-watch: --workers must be >= 1", file=sys.stderr)
        return 1
    if args.scheduler or args.workers:
        from ..cluster import ClusterError, require_distributed

        try:
            require_distributed()
        except ClusterError as exc:
            print(f"mito-watch: {exc}", file=sys.stderr)
            return 1
    try:
        cfg = config_from_args(args)
        if args.workers:  # a burst keeps every worker busy (the daemon sends a burst at a time)
            from dataclasses import replace

            cfg = replace(cfg, batch=max(cfg.batch, 2 * args.workers))
        from .daemon import open_output

        open_output(cfg.out_dir)
    except (ValueError, OSError) as exc:
        print(f"mito-watch: {args.out_dir}: cannot use as output folder: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    handlers = setup_logging(cfg.out_dir, args.log_level)
    log = logging.getLogger("mito-watch")
    try:
        from .daemon import StartupError, serve
        from .journal import JournalError
        from .lock import AlreadyRunning

        run_cfg = run_config_from_args(args)
        try:
            return serve(cfg, _processor_factory(args, cfg, run_cfg), stop=stop)
        except (AlreadyRunning, JournalError, StartupError) as exc:
            log.error("%s", exc)
            return 1
        except sqlite3.Error as exc:
            log.error("%s: journal not writable: %s", cfg.out_dir, exc)
            return 1
    finally:
        _teardown_logging(handlers)


if __name__ == "__main__":
    sys.exit(main())
