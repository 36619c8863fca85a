"""One daemon per output folder, and a liveness test that survives `kill -9`.

An OS file lock (flock / msvcrt) is released by the kernel when its process
dies however it dies, so `status` can tell "running" from "crashed" without
trusting a pid file. Two daemons on one OUT_DIR would process files twice.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

LOCK_NAME = "mito-watch.lock"


class AlreadyRunning(Exception):
    """Another mito-watch holds this output folder."""


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class FolderLock:
    """Held for the daemon's lifetime; the file's text (pid, host) is informative only."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise AlreadyRunning(f"{self.path.parent}: another mito-watch is already using this output folder ({holder(self.path.parent) or 'unknown pid'})")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {_host()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder(out_dir: Path) -> str:
    try:
        return (Path(out_dir) / LOCK_NAME).read_text().strip()
    except OSError:
        return ""


def is_locked(out_dir: Path) -> bool:
    """True while a live daemon holds OUT_DIR (tested by trying the lock, never by signalling a pid)."""
    path = Path(out_dir) / LOCK_NAME
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except PermissionError:  # `status` run by a user who may only read OUT_DIR (flock works on read-only fds)
        fd = os.open(path, os.O_RDONLY)
    try:
        if _try_lock(fd):
            _unlock(fd)
            return False
        return True
    finally:
        os.close(fd)


def _host() -> str:
    import socket

    return socket.gethostname()
