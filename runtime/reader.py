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


@dataclass(frozen=True)
class Skipped:
    """A folder entry that looked like an input but was left out, and why (said once, in one line)."""

    path: str  # as the user sees it: relative to the input root, a folder ending in '/'
    why: str  # e.g. "broken link", "directory link", "link loop"
    hint: str = ""  # what to do about it, e.g. "use --recursive"

    def __str__(self) -> str:
        return f"{self.why} {self.path}" + (f" ({self.hint})" if self.hint else "")


def describe_skipped(skipped: Sequence[Skipped], limit: int = 10) -> str:
    """'skipped 2 entries: broken link x.tif, directory link sub/ (use --recursive)'."""
    n = len(skipped)
    more = f" and {n - limit} more" if n > limit else ""
    return f"skipped {n} entr{'y' if n == 1 else 'ies'}: " + ", ".join(map(str, skipped[:limit])) + more


def _walk(folder: Path, recursive: bool, exclude: Path | None, root: Path, skipped: list[Skipped]) -> Iterator[Path]:
    """Image files in `folder`, in sorted order, by the path they were found at (links not resolved).

    The user named the folder and linked the files into it, so file links are followed wherever they
    point. Folder links are followed only when `recursive` (a subfolder is searched only then), after
    the folder's own subfolders, and each real folder is searched once: a link back up the tree (a
    loop) or to a folder already searched is skipped and said so. `exclude` (the output folder) is
    never searched, through a link neither.
    """
    def shown(path: Path, folder_mark: bool = False) -> str:
        text = path.relative_to(root).as_posix() if _inside(path, root) else str(path)
        return text + ("/" if folder_mark else "")

    visited: set[Path] = set()
    links: list[Path] = []  # folder links, followed once the real folders are searched
    pending = [folder]
    while pending or links:
        if pending:
            here = pending.pop(0)
        else:
            here = links.pop(0)
            target = here.resolve()
            if _inside(here.parent.resolve(), target):  # points at a folder above it: would search forever
                skipped.append(Skipped(shown(here, True), "link loop"))
                continue
            if target in visited:
                skipped.append(Skipped(shown(here, True), "directory link", "its folder is searched already"))
                continue
        real = here.resolve()
        if exclude is not None and _inside(real, exclude):
            continue
        visited.add(real)
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skipped(shown(here, True), "unreadable folder", exc.strerror or str(exc)))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden, including macOS '._x.tif' resource forks
            path = here / entry.name
            link = entry.is_symlink()
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()  # both follow links
            except OSError:
                is_dir = is_file = False
            if link and not (is_dir or is_file):
                if not os.path.exists(path):
                    skipped.append(Skipped(shown(path), "broken link"))
                elif _is_candidate(entry.name):
                    skipped.append(Skipped(shown(path), "link to something that is not a file"))
            elif is_dir:
                if not recursive:
                    if link:
                        skipped.append(Skipped(shown(path, True), "directory link", "use --recursive"))
                elif link:
                    links.append(path)
                else:
                    subfolders.append(path)
            elif is_file and _is_candidate(entry.name):
                if link and exclude is not None and _inside(path.resolve(), exclude):
                    skipped.append(Skipped(shown(path), "link into the output folder"))
                    continue
                yield path
        pending[:0] = subfolders  # depth first, in name order, like the folder listing


def input_root(inputs: Sequence[Path]) -> Path:
    """The deepest folder holding every INPUT; keys are relative to it."""
    anchors = [str(p if p.is_dir() else p.parent) for p in (Path(os.path.abspath(x)) for x in inputs)]
    return Path(os.path.commonpath(anchors))


def discover_inputs(inputs: Sequence[Path], recursive: bool = False, exclude: Path | None = None) -> list[InputItem]:
    """The inputs of `find_inputs`, without what it skipped."""
    return find_inputs(inputs, recursive, exclude).items


def find_inputs(inputs: Sequence[Path], recursive: bool = False, exclude: Path | None = None) -> "Found":
    """Files named directly are kept whatever their suffix (they fail later with a clear cause);
    folders contribute their image files (`image_io.IMAGE_SUFFIXES`: TIFF, PNG, JPEG, and Gatan DM3/DM4
    and MRC, which fail with a line naming the [em] extra when it is not installed; any case, not hidden),
    subfolders too when `recursive`. `exclude` (the output folder) is never searched. Links: see `_walk`;
    what was left out (broken links, folder links without `recursive`, loops, two links to one file) is
    in `Found.skipped`."""
    if not inputs:
        raise InputError("no INPUT given")
    paths = [Path(os.path.abspath(p)) for p in inputs]
    for p in paths:
        if not p.exists() and not p.is_symlink():
            raise InputError(f"{p}: no such file or folder")
    root = input_root(paths)
    exclude = Path(exclude).resolve() if exclude is not None else None
    seen: dict[Path, Path] = {}  # real file -> the path it was first found at
    found = Found([], [])
    for p in paths:
        for f in _walk(p, recursive, exclude, root, found.skipped) if p.is_dir() else iter([p]):
            real = f.resolve()
            if real in seen:
                if seen[real] != f:  # two links to one file; the same path named twice is just one input
                    found.skipped.append(Skipped(f.relative_to(root).as_posix(), "second path to",
                                                 f"the same file as {seen[real].relative_to(root).as_posix()}"))
                continue
            seen[real] = f
            found.items.append(InputItem(f, f.relative_to(root).as_posix()))
    return found


@dataclass
class Found:
    """What `find_inputs` found: the inputs, and the entries it left out (see `Skipped`)."""

    items: list[InputItem]
    skipped: list[Skipped]


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
