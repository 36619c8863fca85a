"""OUT on the client only: the marker that tells workers whether they see OUT, and writing what they return.

Why a marker and not a path check: two machines can both have /scratch/out and still not share it.
The client writes `.mito-cluster-<token>` (content: its own name) into OUT; a worker that reads it
back there writes into OUT itself, any other writes into a scratch folder and returns the files. The
client then writes them in the local path's order: each output atomically, the record last (so a
crash in between leaves no record and a rerun redoes the input), and for a failed input it removes
what an earlier attempt left, as `pipeline` does.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path, PurePosixPath

from ..pipeline import output_paths
from ..results import ImageResult
from ..writers import atomic_write_bytes
from ..writers.tables import read_record, write_record

MARKER_PREFIX = ".mito-cluster-"


def write_marker(out_dir: Path) -> str:
    """Create the marker in `out_dir`; returns its file name (unique per run)."""
    name = f"{MARKER_PREFIX}{secrets.token_hex(8)}"
    atomic_write_bytes(Path(out_dir) / name, name.encode("utf-8"))
    return name


def remove_marker(out_dir: Path, name: str) -> None:
    try:
        (Path(out_dir) / name).unlink(missing_ok=True)
    except OSError:
        pass


def _safe(rel: str) -> str:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"a worker returned an output outside OUT: {rel!r}")
    return rel


def write_returned(out_dir: Path, result: ImageResult, files: dict[str, bytes]) -> None:
    """Write a worker's returned outputs, then the record; raises OSError when OUT cannot take them."""
    out_dir = Path(out_dir)
    if result.ok:
        for rel, data in files.items():
            atomic_write_bytes(out_dir / _safe(rel), data)
    else:
        _remove_earlier(out_dir, result)
    write_record(out_dir, result)


def _remove_earlier(out_dir: Path, result: ImageResult) -> None:
    """Best effort, as `pipeline`: a failed input leaves no outputs of an earlier attempt behind."""
    earlier = read_record(out_dir, result.key)
    names = {n for k, v in output_paths(result.name, result.key).items() if k != "record" for n in v}
    if earlier is not None:
        record = output_paths(earlier.name, earlier.key)["record"][0]
        names |= {n for n in earlier.outputs if n != record}
    for rel in names:
        try:
            os.unlink(out_dir / _safe(rel))
        except (OSError, ValueError):
            pass
