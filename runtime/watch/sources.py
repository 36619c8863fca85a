"""Which files exist in IN_DIR, and when to look again: full scans, watchdog events, polling.

The scan is the authority; events only make the daemon look sooner. So a
missed event (network shares, inotify queue overflow, a dead observer) costs
at most one rescan interval, never a file. Symlinks and junctions are never
followed, and nothing outside IN_DIR is ever reported.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .settle import Signature

log = logging.getLogger("mito-watch")

DEFAULT_INCLUDE = ("*.tif", "*.tiff", "*.png", "*.jpg", "*.jpeg")
DEFAULT_EXCLUDE = (".*", "*.tmp", "*.part")  # writers' temporary names: never take a file before its rename

NETWORK_FS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "smb2", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre", "gpfs",
    "fuse.sshfs", "fuse.gvfsd-fuse", "fuse.rclone", "fuse.s3fs", "davfs", "fuse.davfs2", "vboxsf", "prl_fs", "fuse.glusterfs",
}


def _match(rel: str, patterns: tuple[str, ...]) -> bool:
    """Case-insensitive: Windows instruments write `.TIF`. A pattern without '/' matches the file name."""
    rel_l = rel.lower()
    name_l = rel_l.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel_l if "/" in p else name_l, p.lower()) for p in patterns)


@dataclass(frozen=True)
class Filters:
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    recursive: bool = False

    def accepts(self, rel: str) -> bool:
        if not self.recursive and "/" in rel:
            return False
        parts = rel.split("/")
        if any(_match("/".join(parts[: i + 1]), self.exclude) for i in range(len(parts))):
            return False  # an excluded folder excludes what is in it
        return _match(rel, self.include)


def _is_link(entry: os.DirEntry) -> bool:
    if entry.is_symlink():
        return True
    junction = getattr(entry, "is_junction", None)  # Windows junctions (Python >= 3.12)
    return bool(junction and junction())


def scan(root: Path, filters: Filters, skip: tuple[Path, ...] = ()) -> Iterator[tuple[str, Signature]]:
    """Every accepted plain file under `root` as ('a/b.tif', (size, mtime_ns)); unreadable folders are logged."""
    skip_real = {os.path.normcase(os.path.realpath(p)) for p in skip}
    stack = [(Path(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            log.warning("%s: cannot list folder: %s", folder, exc.strerror or exc)
            continue
        for entry in entries:
            rel = prefix + entry.name
            if _is_link(entry):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat
            if stat.S_ISDIR(st.st_mode):
                if filters.recursive and os.path.normcase(os.path.realpath(entry.path)) not in skip_real and not _match(rel, filters.exclude):
                    stack.append((Path(entry.path), rel + "/"))
            elif stat.S_ISREG(st.st_mode) and filters.accepts(rel):
                yield rel, (st.st_size, st.st_mtime_ns)


def relative_inside(root: Path, path: str | os.PathLike) -> str | None:
    """'a/b.tif' for a path under `root` reached without any symlink; None for anything else."""
    try:
        rel = os.path.relpath(os.fspath(path), os.fspath(root))
    except ValueError:  # another drive on Windows
        return None
    if rel == "." or rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
        return None
    parts = Path(rel).parts
    current = Path(root)
    for part in parts[:-1]:
        current = current / part
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):  # a symlinked folder is not a folder here
                return None
        except OSError:
            return None
    return "/".join(parts)


def network_filesystem(path: Path) -> str | None:
    """The file-system type if `path` is on a network share (where change events are unreliable), else None."""
    real = os.path.realpath(path)
    if sys.platform == "win32":
        if real.startswith("\\\\"):
            return "UNC share"
        try:
            import ctypes

            drive = os.path.splitdrive(real)[0] + "\\"
            if ctypes.windll.kernel32.GetDriveTypeW(drive) == 4:  # DRIVE_REMOTE
                return "network drive"
        except (AttributeError, OSError):
            return None
        return None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None  # not Linux: rely on events plus the safety rescan
    best, best_fs = "", None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, best_fs = mount, right.split()[0]
    return best_fs if best_fs in NETWORK_FS else None


@dataclass
class Changes:
    paths: set[str] = field(default_factory=set)  # absolute paths events named (may be outside filters)
    full_scan: bool = False


class ChangeFeed:
    """Wakes the daemon when something may have changed in IN_DIR.

    Events from `watchdog` where the file system delivers them; a full scan every
    `rescan_s` seconds regardless; pure polling (a scan every `poll_s`) when
    asked, when IN_DIR is on a network file system, or when the observer cannot
    start or dies.
    """

    def __init__(
        self,
        root: Path,
        recursive: bool,
        poll_s: float | None = None,
        rescan_s: float = 60.0,
        observer_factory: Callable[[], object] | None = None,
        clock=time.monotonic,
    ):
        self.root, self.recursive, self.poll_s, self.rescan_s = Path(root), recursive, poll_s, rescan_s
        self._factory, self._clock = observer_factory, clock
        self._observer = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._full = True  # the first wait always asks for a full scan
        self._next_full = clock()
        self.mode, self.reason = "polling", ""

    @property
    def interval(self) -> float:
        return self.rescan_s if self.mode == "events" else (self.poll_s or 2.0)

    def start(self) -> str:
        if self.poll_s is not None:
            self.reason = f"--poll {self.poll_s:g}"
            return self.mode
        fs = network_filesystem(self.root)
        if fs:
            self.poll_s, self.reason = 2.0, f"{self.root} is on a network file system ({fs}); events are unreliable there"
            return self.mode
        try:
            self._observer = self._start_observer()
        except Exception as exc:  # inotify limits, unsupported platform, missing watchdog: degrade, never stop
            self.poll_s, self.reason = 2.0, f"file-system events unavailable ({type(exc).__name__}: {exc})"
            self._observer = None
            return self.mode
        self.mode, self.reason = "events", "watchdog"
        return self.mode

    def _start_observer(self):
        if self._factory is not None:
            observer = self._factory()
        else:
            from watchdog.observers import Observer

            observer = Observer()
        observer.schedule(_Handler(self._event), os.fspath(self.root), recursive=self.recursive)
        observer.start()
        return observer

    def _event(self, src: str, dest: str, is_dir: bool) -> None:
        with self._lock:
            if is_dir:
                self._full = True  # a folder appeared or moved in: its files produced no events of their own
            self._paths.update(p for p in (src, dest) if p)
        self._wake.set()

    def wake(self) -> None:
        """Interrupt a `wait` (used by the signal handler so a stop is immediate)."""
        self._wake.set()

    def wait(self, timeout: float) -> Changes:
        """Block up to `timeout` seconds (or until the next full scan is due, or an event) and say what to look at."""
        if self._observer is not None and not self._observer.is_alive():
            log.warning("file-system event observer stopped; falling back to polling every 2 s")
            self._observer, self.mode, self.poll_s, self.reason = None, "polling", 2.0, "event observer died"
            self._full = True
        until_full = self._next_full - self._clock()
        self._wake.wait(max(0.0, min(timeout, until_full)))
        self._wake.clear()
        with self._lock:
            paths, full, self._paths, self._full = self._paths, self._full, set(), False
        if full or self._clock() >= self._next_full:
            full, self._next_full = True, self._clock() + self.interval
        return Changes(paths, full)

    def stop(self) -> None:
        if self._observer is not None:
            try:
                self._observer.stop()
                self._observer.join(timeout=5)
            except Exception as exc:  # stopping must never turn a clean exit into a crash
                log.warning("stopping the event observer: %s", exc)
            self._observer = None


def _decode(path) -> str:
    return os.fsdecode(path) if path else ""


class _Handler:
    """A watchdog handler that only records which paths changed (the daemon does the work)."""

    def __init__(self, callback: Callable[[str, str, bool], None]):
        self._callback = callback

    def dispatch(self, event) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads, including our own, change nothing
        self._callback(_decode(event.src_path), _decode(getattr(event, "dest_path", "")), bool(event.is_directory))
