"""The same scale estimate for the same frames as a local run: the first input of each key makes it.

Why: a local run makes one estimate per key (`scale_memory`: frame size, pixel type, calibration,
folder, instrument) on the first frame of that key in input order, and every later frame reuses
it. Each worker keeps its own memory, so left alone each would estimate on the first frame *it*
gets: another frame, maybe another scale, other instances. So, unless `--scale-estimate off`:
1. the client asks for every input's key (`key_of`: decode the first plane, no model);
2. the first input of each key (its leader) goes out first; the others wait until the leader's
   estimate comes back (`EstimatePlan`), then carry it (`Seed`) to their worker, which remembers it
   (`plant`) before segmenting. Inputs without a key (unreadable, non-square pixels) go at once.
If a leader's task is lost, the next input of its key leads. Estimate numbers (images.csv
`scale_estimate`) count per worker; run.json lists each worker's estimates with its name, a planted
one's `frames` counting one more than it served.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..pipeline import RunConfig, resolve_pixel_size
from ..reader import InputItem
from ..scale_memory import EstimateKey, ScaleMemory
from ..scale_probe import ScaleEstimate
from ..segmenter import choose_view


@dataclass(frozen=True)
class Seed:
    key: EstimateKey
    estimate: ScaleEstimate | None = None  # None: this input is its key's leader and makes the estimate
    origin: str = ""  # the file the estimate was made on


class _KeyFound(Exception):
    pass


class _KeyOnly(ScaleMemory):
    """Stops `choose_view` where it looks its key up, before any probing: the key by the local rule itself."""

    def recall(self, key: EstimateKey):
        raise _KeyFound(key)


def estimate_key(image, segmenter, config: RunConfig) -> EstimateKey | None:
    """The key under which `segmenter` would recall or make the estimate for `image`; None: no estimate."""
    px, _ = resolve_pixel_size(image, config.pixel_size_nm)
    try:
        choose_view(image, px, None, segmenter.manifest, segmenter.scale_estimate, segmenter.skip_data_bars, _KeyOnly())
    except _KeyFound as found:
        return found.args[0]
    return None


def plant(segmenter, seed: Seed | None, planted: set) -> None:
    """Before segmenting on a worker: remember the leader's estimate (once per worker process)."""
    if seed is None:
        return
    if seed.estimate is not None and seed.key not in planted:
        segmenter.scale_estimates.remember(seed.key, seed.estimate, seed.origin)
    planted.add(seed.key)


def made(segmenter, seed: Seed | None) -> Seed | None:
    """After a leader was segmented on a worker: the estimate it made, for its key's other inputs."""
    if seed is None or seed.estimate is not None:
        return None
    entries = [r for r in segmenter.scale_estimates.made() if r.key == seed.key]
    return Seed(seed.key, entries[-1].estimate, entries[-1].origin) if entries else None


class EstimatePlan:
    """Which input may go out now: free ones and leaders at once, the rest after their leader."""

    def __init__(self, items: list[InputItem], keys: dict[str, EstimateKey | None]):
        self._ready: deque[tuple[InputItem, Seed | None]] = deque()
        self._waiting: dict[EstimateKey, deque[InputItem]] = {}
        self._leading: dict[str, EstimateKey] = {}  # input key -> estimate key it leads
        for item in items:
            k = keys.get(item.key)
            if k is None:
                self._ready.append((item, None))
            elif k in self._waiting:
                self._waiting[k].append(item)
            else:
                self._waiting[k] = deque()
                self._lead(item, k)

    def _lead(self, item: InputItem, k: EstimateKey) -> None:
        self._leading[item.key] = k
        self._ready.append((item, Seed(k)))

    def take(self) -> tuple[InputItem, Seed | None] | None:
        return self._ready.popleft() if self._ready else None

    def finished(self, item: InputItem, made_seed: Seed | None) -> None:
        """`item`'s task is over; a leader releases its key's inputs with `made_seed` (None: the next one leads)."""
        k = self._leading.pop(item.key, None)
        if k is None:
            return
        waiting = self._waiting.get(k, deque())
        if made_seed is None:
            if waiting:
                self._lead(waiting.popleft(), k)
            return
        while waiting:
            self._ready.append((waiting.popleft(), made_seed))

    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())
