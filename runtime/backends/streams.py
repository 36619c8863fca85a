"""Keep several batches in flight on CUDA streams: the scheduling, separate from the devices.

Why: the heads (NMS, RoIAlign, data-dependent shapes) make the host wait for
the GPU. With one stream the GPU idles while the host prepares the next batch
and runs the heads' Python. With `k` lanes (a CUDA stream each, with its own
pinned host buffer, device buffers and, for TensorRT, its own execution
context), batch i+1 is copied and its trunk queued *before* the host waits on
batch i's heads, so host-to-device copies, trunk compute, heads and the
device-to-host copy of consecutive batches overlap.

`Pipeline` is pure bookkeeping (which lane is free, results in order) and is
unit-tested on the CPU with stand-in lanes; `CudaLane` is the only CUDA part.
Torch owns every stream, event and pinned buffer (no pycuda context beside it).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from ..normalize import PAD_VALUE
from . import BoxFilter

L = TypeVar("L")  # lane
J = TypeVar("J")  # job
H = TypeVar("H")  # handle of a submitted job
R = TypeVar("R")  # result


class Pipeline(Generic[L, J, H, R]):
    """Up to `len(lanes)` jobs in flight; a lane is reused only after its previous job was finished.

    `submit(lane, job)` must only enqueue (asynchronous work); `finish(lane,
    handle)` may block. Results come back in job order. Jobs are pulled lazily,
    so preparing job i+1 on the host overlaps the device work of job i.
    """

    def __init__(self, lanes: Sequence[L], submit: Callable[[L, J], H], finish: Callable[[L, H], R]):
        if not lanes:
            raise ValueError("a pipeline needs at least one lane")
        self.lanes, self.submit, self.finish = list(lanes), submit, finish

    def map(self, jobs: Iterable[J]) -> Iterator[R]:
        free: deque[L] = deque(self.lanes)
        in_flight: deque[tuple[L, H]] = deque()
        for job in jobs:
            if not free:  # all lanes busy: finish the oldest before reusing its lane
                lane, handle = in_flight.popleft()
                yield self.finish(lane, handle)
                free.append(lane)
            lane = free.popleft()
            in_flight.append((lane, self.submit(lane, job)))
        while in_flight:
            lane, handle = in_flight.popleft()
            yield self.finish(lane, handle)


def padded_batches(tiles: np.ndarray, batch: int, fill: float = PAD_VALUE) -> Iterator[tuple[np.ndarray, int]]:
    """Cut (N, T, T) tiles into static (batch, T, T) float32 blocks, the last padded with `fill`; yields (block, n_valid)."""
    tiles = np.asarray(tiles, dtype=np.float32)
    if tiles.ndim != 3 or tiles.shape[1] != tiles.shape[2]:
        raise ValueError(f"expected tiles of shape (N, T, T), got {tiles.shape}")
    for start in range(0, len(tiles), batch):
        block = tiles[start : start + batch]
        n = len(block)
        if n < batch:
            block = np.concatenate([block, np.full((batch - n,) + block.shape[1:], fill, np.float32)])
        yield np.ascontiguousarray(block), n


def batch_filters(box_filters: Sequence[BoxFilter] | None, n_tiles: int, batch: int) -> Iterator[list[BoxFilter | None] | None]:
    """`box_filters` cut like `padded_batches` cuts the tiles (padding tiles get None); all None without filters."""
    if box_filters is not None and len(box_filters) != n_tiles:
        raise ValueError(f"{len(box_filters)} box filters for {n_tiles} tiles")
    for start in range(0, n_tiles, batch):
        if box_filters is None:
            yield None
        else:
            chunk = list(box_filters[start : start + batch])
            yield chunk + [None] * (batch - len(chunk))


@dataclass
class CudaLane:
    """One CUDA stream with its pinned host input, device input and a 'host buffer free' event."""

    stream: "torch.cuda.Stream"
    host_in: torch.Tensor  # pinned (B, 1, T, T) float32
    device_in: torch.Tensor  # (B, 1, T, T) float32 on the GPU
    copied: "torch.cuda.Event"  # recorded after the host-to-device copy

    @classmethod
    def create(cls, batch: int, tile: int, device: torch.device) -> "CudaLane":
        stream = torch.cuda.Stream(device=device)
        host = torch.empty((batch, 1, tile, tile), dtype=torch.float32).pin_memory()
        dev = torch.empty((batch, 1, tile, tile), dtype=torch.float32, device=device)
        event = torch.cuda.Event()
        event.record(stream)
        return cls(stream, host, dev, event)

    def upload(self, block: np.ndarray) -> torch.Tensor:
        """Stage `block` in pinned memory and queue its copy on this lane's stream; returns the device input."""
        self.copied.synchronize()  # the previous copy out of host_in has completed
        self.host_in[:, 0].copy_(torch.from_numpy(block))
        with torch.cuda.stream(self.stream):
            self.device_in.copy_(self.host_in, non_blocking=True)
            self.copied.record(self.stream)
        return self.device_in
