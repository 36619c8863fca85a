"""Find the inputs and decode them ahead of inference in worker threads.

Two jobs, both before the model sees a pixel:
- `discover_inputs`: turn the user's files and folders into `InputItem`s, each
  with a *key*: the file's path relative to the input root, in POSIX form
  (`sub/frame 01.tif`). The root is the deepest folder holding every INPUT (a
  folder INPUT counts as itself, a file INPUT as its parent folder), so keys
  are unique for unique files and are valid names on the filesystem they came
  from. The key is the `image` column and names the file's record; its outputs
  are named by the key's stem (`labels/sub/frame 01.tif`, see `names`).
- `read_ahead`: decode the next files while the current one is segmented,
  in input order, with at most `depth` files decoded and waiting, whatever
  the folder size. A stack's first plane is decoded ahead; its other planes
  are read one at a time when the consumer asks for them.
"""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .image_io import IMAGE_SUFFIXES, ImageData, ImageReadError, ImageSource
from .names import stem_name


@dataclass(frozen=True)
class InputItem:
    path: Path  # as found (absolute, symlinks not resolved)
    key: str  # POSIX path relative to the input root: the `image` column and the record's name
    name: str = ""  # names labels/<name>.tif ...; "" = the key's stem (`run` and the watcher hand out unique ones)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", stem_name(self.key))


class InputError(Exception):
    """An INPUT argument that cannot be used at all (missing path): the run does not start."""


def _is_candidate(name: str) -> bool:
    # hidden files include macOS '._x.tif' resource forks, which carry an image suffix but no image
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _walk(folder: Path, recursive: bool, exclude: Path | None) -> Iterator[Path]:
    """Image files in `folder`; symlinks leading out of the folder are not followed."""
    real_root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        if exclude is not None and _inside(here.resolve(), exclude):
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in sorted(filenames):
            path = here / name
            if not _is_candidate(name):
                continue
            if path.is_symlink() and not _inside(path.resolve(), real_root):
                continue
            yield path


def input_root(inputs: Sequence[Path]) -> Path:
    """The deepest folder holding every INPUT; keys are relative to it."""
    anchors = [str(p if p.is_dir() else p.parent) for p in (Path(os.path.abspath(x)) for x in inputs)]
    return Path(os.path.commonpath(anchors))


def discover_inputs(inputs: Sequence[Path], recursive: bool = False, exclude: Path | None = None) -> list[InputItem]:
    """Files named directly are kept whatever their suffix (they fail later with a clear cause);
    folders contribute their image files (`.tif .tiff .png .jpg .jpeg`, any case, not hidden),
    subfolders too when `recursive`. `exclude` (the output folder) is never searched."""
    if not inputs:
        raise InputError("no INPUT given")
    paths = [Path(os.path.abspath(p)) for p in inputs]
    for p in paths:
        if not p.exists() and not p.is_symlink():
            raise InputError(f"{p}: no such file or folder")
    root = input_root(paths)
    exclude = Path(exclude).resolve() if exclude is not None else None
    seen: set[Path] = set()
    items: list[InputItem] = []
    for p in paths:
        found = _walk(p, recursive, exclude) if p.is_dir() else iter([p])
        for f in found:
            real = f.resolve()
            if real in seen:
                continue
            seen.add(real)
            items.append(InputItem(f, f.relative_to(root).as_posix()))
    return items


@dataclass
class Decoded:
    """One input as the reader hands it over: an open source and its first plane, or the read error."""

    item: InputItem
    source: ImageSource | None
    first: ImageData | None
    error: str | None
    read_s: float  # seconds spent opening and decoding the first plane

    @property
    def n_planes(self) -> int:
        return self.source.n_planes if self.source is not None else 0

    def planes(self) -> Iterator[tuple[ImageData, float]]:
        """Every plane with the seconds spent reading it; raises `ImageReadError` on a bad plane."""
        assert self.source is not None and self.first is not None
        yield self.first, self.read_s
        for i in range(1, self.source.n_planes):
            t0 = time.perf_counter()
            plane = self.source.read(i)
            yield plane, time.perf_counter() - t0

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
        self.first = None


def decode(item: InputItem) -> Decoded:
    t0 = time.perf_counter()
    source = None
    try:
        source = ImageSource(item.path)
        first = source.read(0)
        return Decoded(item, source, first, None, time.perf_counter() - t0)
    except ImageReadError as exc:
        if source is not None:
            source.close()
        return Decoded(item, None, None, str(exc), time.perf_counter() - t0)


def read_ahead(items: Sequence[InputItem], depth: int = 2, workers: int = 2) -> Iterator[Decoded]:
    """`Decoded` inputs in order; at most `depth` decoded inputs wait while the consumer works on one.

    The consumer must `close()` each `Decoded` it receives (it holds an open file for stacks).
    """
    if depth < 1 or workers < 1:
        raise ValueError("depth and workers must be >= 1")
    pending: deque[Future[Decoded]] = deque()
    it = iter(items)
    with ThreadPoolExecutor(max_workers=min(workers, depth), thread_name_prefix="mito-read") as pool:
        try:
            for item in it:
                pending.append(pool.submit(decode, item))
                if len(pending) >= depth:
                    break
            while pending:
                decoded = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(decode, nxt))
                yield decoded
        finally:  # consumer stopped early: drop what was decoded ahead
            for fut in pending:
                fut.cancel()
            for fut in pending:
                if not fut.cancelled():
                    fut.result().close()
