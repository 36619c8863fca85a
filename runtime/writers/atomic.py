"""Atomic file writing: a temp file in the target folder, fsync, then rename over the target.

Readers (Fiji, Excel, a crashed run's rerun) never see half a file.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "atomic_write_bytes", "remove_stale_temps", "temp_path"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 would hide results from the lab group


# what `temp_path` names its files: "." + target name + "." + mkstemp's random part + ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")


def remove_stale_temps(folder: Path, older_than_s: float = 0.0) -> list[Path]:
    """Delete `temp_path`'s leftovers in `folder` and its direct subfolders: what a process killed (kill -9,
    power cut) between creating a temp file and renaming it leaves behind. Only files older than
    `older_than_s` go: a process that holds the folder exclusively (mito-watch's lock) passes 0, others
    an age no write of a running process reaches. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed, now = [], time.time()
    for parent in [folder, *(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())]:
        for entry in parent.iterdir():
            if not _TEMP_NAME.match(entry.name) or not entry.is_file() or entry.is_symlink():
                continue
            try:
                if now - entry.stat().st_mtime >= older_than_s:
                    entry.unlink()
                    removed.append(entry)
            except FileNotFoundError:  # renamed or removed meanwhile
                continue
    return removed


@contextmanager
def temp_path(path: Path) -> Iterator[Path]:
    """A temp path next to `path` for libraries that want a file name; renamed to `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, _MODE)
        yield Path(tmp)
        os.chmod(tmp, _MODE)  # again: some libraries recreate the file they are given
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """`open(path, mode)` that only replaces `path` when the block finishes without error."""
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open writes whole files: mode must be 'w' or 'wb'")
    with temp_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file and rename, with the permissions a plain write would give."""
    with atomic_open(path, "wb") as f:
        f.write(data)
