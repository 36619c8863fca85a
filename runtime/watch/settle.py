"""When is a file complete? Size and mtime unchanged for `settle` seconds, then it must decode fully.

Instruments write large TIFFs in chunks, often over SMB, and may pause between
chunks; no single test is enough, so a file passes three: it stops changing
(observed on our own monotonic clock, never by comparing the share's mtime to
our clock), it decodes completely, and it has not changed while we read it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

Signature = tuple[int, int]  # (size in bytes, mtime in ns)


def signature(path: Path) -> Signature | None:
    """(size, mtime_ns) of a regular file, without following a symlink; None if gone or not a plain file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_size, st.st_mtime_ns


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class _Watch:
    sig: Signature
    since: float  # monotonic time the signature was first seen


class Settler:
    """Tracks files that are still being written; `ready()` lists those quiet for `settle_s` seconds."""

    def __init__(self, settle_s: float, clock=time.monotonic):
        if settle_s < 0:
            raise ValueError(f"settle time must be >= 0 seconds, got {settle_s}")
        self.settle_s, self._clock = settle_s, clock
        self._watching: dict[str, _Watch] = {}

    def __len__(self) -> int:
        return len(self._watching)

    def __contains__(self, rel: str) -> bool:
        return rel in self._watching

    def observe(self, rel: str, sig: Signature) -> None:
        """Record what a stat saw; any change restarts that file's quiet period."""
        w = self._watching.get(rel)
        if w is None or w.sig != sig:
            self._watching[rel] = _Watch(sig, self._clock())

    def forget(self, rel: str) -> None:
        self._watching.pop(rel, None)

    def ready(self) -> list[tuple[str, Signature]]:
        """Files unchanged for the settle time; they leave the settler (the caller takes them)."""
        now = self._clock()
        out = [(rel, w.sig) for rel, w in self._watching.items() if now - w.since >= self.settle_s]
        for rel, _ in out:
            del self._watching[rel]
        return out

    def watching(self) -> list[str]:
        return list(self._watching)

    def next_deadline(self) -> float | None:
        """Monotonic time at which the next file could become ready."""
        if not self._watching:
            return None
        return min(w.since for w in self._watching.values()) + self.settle_s


class Incomplete(Exception):
    """The file is not a complete image (yet): the message says which end is missing."""


_TAIL = 4096  # JPEG writers may leave a few bytes after the end-of-image marker


def check_complete(path: Path) -> None:
    """Cheap structural completeness: every TIFF page's data inside the file, PNG/JPEG end markers present.

    Decoding catches most truncations, but not all: a truncated ImageJ stack
    decodes as its first plane, so its page chain is checked here.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".tif", ".tiff"):
        _check_tiff(Path(path))
    elif suffix == ".png":
        if not _tail(path).endswith(b"IEND\xaeB`\x82"):
            raise Incomplete("no PNG end chunk (IEND): file truncated or still being written")
    elif suffix in (".jpg", ".jpeg"):
        if b"\xff\xd9" not in _tail(path):
            raise Incomplete("no JPEG end-of-image marker: file truncated or still being written")


def _tail(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL))
        return f.read()


class _Collect(logging.Handler):
    """tifffile logs (rather than raises) broken page chains; collect this thread's messages."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread, self.messages = threading.get_ident(), []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def _check_tiff(path: Path) -> None:
    import tifffile

    size = os.path.getsize(path)
    logger, collect = logging.getLogger("tifffile"), _Collect()
    logger.addHandler(collect)
    try:
        with tifffile.TiffFile(path) as tif:
            pages = list(tif.pages)
            n_images = int((tif.imagej_metadata or {}).get("images", 1)) if tif.is_imagej else 1
    except Exception as exc:  # tifffile raises several types for broken structure
        raise Incomplete(f"TIFF structure unreadable: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    finally:
        logger.removeHandler(collect)
    if collect.messages:
        raise Incomplete(f"TIFF structure broken: {collect.messages[0]}")
    for i, page in enumerate(pages):
        end = max((int(o) + int(n) for o, n in zip(page.dataoffsets, page.databytecounts)), default=0)
        if end > size:
            raise Incomplete(f"TIFF page {i} needs {end} bytes, file has {size}: truncated or still being written")
    if len(pages) < n_images:
        raise Incomplete(f"ImageJ stack declares {n_images} images, file holds {len(pages)}: truncated or still being written")
