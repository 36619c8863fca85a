"""Helpers for the mito-watch tests: a model double, image writers, a daemon in a thread."""
from __future__ import annotations

import hashlib
import sys
import threading
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/ (for conftest helpers)
from conftest import ellipse_labels, render_em_like  # noqa: E402

from mitotally.runtime.instances import Instances  # noqa: E402
from mitotally.runtime.segmenter import Segmentation, Segmenter  # noqa: E402
from mitotally.runtime.watch.journal import Journal, JournalError, journal_path  # noqa: E402


class ThresholdSegmenter(Segmenter):
    """TEST DOUBLE for the model only: dark connected blobs become instances (exact, deterministic, fast).

    Everything around it (decode, label TIFF, ROIs, overlay, record, tables, journal) is the real code;
    the model itself is exercised by the tests that use `watch_model_dir` with the real `Segmenter`.
    """

    def segment(self, image, pixel_size_nm):
        from scipy import ndimage

        labels, _ = ndimage.label(np.asarray(image.array) < 128)
        inst = Instances.from_label_image(labels)
        return Segmentation(inst, self.factor_for(pixel_size_nm)[0], 1.0, {"scale": 0.0, "infer": 0.0, "stitch": 0.0})


def frame(seed: int, shape=(64, 64), n: int = 3) -> tuple[np.ndarray, int]:
    """A distinct synthetic EM-like frame and its number of dark blobs (what ThresholdSegmenter finds)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = render_em_like(ellipse_labels(shape, n, rng, axes=(4, 10)), rng, noise=2.0)
    return img, int(ndimage.label(img < 128)[1])


def tiff_bytes(img: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, img)
    return buf.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_slowly(path: Path, data: bytes, chunks: int, pause: float) -> None:
    """Write `data` in `chunks` pieces with `pause` seconds between them, as an instrument over SMB does."""
    step = -(-len(data) // chunks)
    with open(path, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()
            time.sleep(pause)


class DaemonThread:
    """`serve` in a background thread (no signal handlers there); `stop()` returns its exit code."""

    def __init__(self, cfg, make_processor, **kwargs):
        from mitotally.runtime.watch.daemon import serve

        self.stop_event = threading.Event()
        self.code: int | None = None
        self.error: BaseException | None = None

        def target():
            try:
                self.code = serve(cfg, make_processor, stop=self.stop_event, **kwargs)
            except BaseException as exc:  # surfaced by stop()
                self.error = exc

        self.thread = threading.Thread(target=target, name="mito-watch-test", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 60) -> int:
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "daemon did not stop"
        if self.error:
            raise self.error
        return self.code


def wait_for(predicate, timeout: float, what: str, daemon: DaemonThread | None = None, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon is not None and not daemon.thread.is_alive():
            raise AssertionError(f"daemon exited while waiting for {what}: {daemon.error!r}")
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def journal_rows(out_dir: Path) -> dict:
    """The journal's rows by relative path, read-only; {} when there is no journal yet."""
    try:
        j = Journal(journal_path(out_dir), readonly=True)
    except JournalError:
        return {}
    try:
        return {r.rel: r for r in j.rows()}
    finally:
        j.close()
