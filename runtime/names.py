"""Output names: `labels/<name>.tif`, `rois/<name>.zip`, `overlays/<name>.png` of each input.

An input's *key* is its path relative to the input root (`sub/frame 01.tif`,
see `reader`): the `image` column and the name of its record
(`records/<key>.json`). Its *name* is the key without the image's extension
(`sub/frame 01`), so the label image of `frame_0.tif` is `labels/frame_0.tif`,
not `labels/frame_0.tif.tif`. The extension stays (`labels/a.tif.tif`,
`labels/a.png.tif`) only where two inputs would otherwise share a name:
- two inputs of one run with the same stem, compared without case (`a.tif`
  and `A.png`), because macOS and Windows folders do not tell them apart;
- a name an earlier run or watcher already gave another input in this output
  folder (the records say which), so outputs are never overwritten by another
  input's and the tables never point two images at one file;
- a stem ending like a stack plane's overlay (`x.z0001`).
An input keeps the name its record has, so reruns, `--overwrite` and a
watcher's redo replace their own outputs. Records written before names existed
have none; their outputs were named by the key, and so they stay.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from itertools import chain, count
from pathlib import Path, PurePosixPath

from .image_io import IMAGE_SUFFIXES

_PLANE_SUFFIX = re.compile(r"\.z\d{4}$", re.IGNORECASE)  # overlays of stack planes: overlays/<name>.z0001.png


def stem_name(key: str) -> str:
    """`sub/a.tif` -> `sub/a`: the key without its image extension (other keys stay as they are)."""
    path = PurePosixPath(key)
    if path.suffix.lower() in IMAGE_SUFFIXES and path.stem:
        return str(path.with_suffix(""))
    return key


class OutputNames:
    """Which input holds which output name in one output folder; hands out names no other input holds."""

    def __init__(self, recorded: dict[str, str] | None = None):
        self._by_key: dict[str, str] = dict(recorded or {})  # key -> name
        self._holder: dict[str, str] = {name.casefold(): key for key, name in self._by_key.items()}

    @classmethod
    def of_folder(cls, out_dir: Path) -> "OutputNames":
        """The names the records in `out_dir` hold (one pass over `records/`)."""
        from .writers.tables import iter_records

        return cls({rec.key: rec.name for rec in iter_records(out_dir)})

    def assign(self, keys: Iterable[str]) -> dict[str, str]:
        """The name of each key: its recorded name, else its stem if no other input shares it, else the key."""
        keys = list(keys)
        new = [k for k in keys if k not in self._by_key]
        stems = Counter(stem_name(k).casefold() for k in new)
        for k in new:
            stem = stem_name(k)
            shared = stems[stem.casefold()] > 1 or _PLANE_SUFFIX.search(stem) is not None
            candidates = ([] if shared else [stem]) + [k]
            tries = chain(candidates, (f"{k}~{i}" for i in count(2)))
            name = next(c for c in tries if c.casefold() not in self._holder)
            self._by_key[k] = name
            self._holder[name.casefold()] = k
        return {k: self._by_key[k] for k in keys}
