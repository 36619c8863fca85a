"""The stream scheduler: bookkeeping on the CPU with stand-in streams, the real CUDA lanes when a GPU exists."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from mitotally.runtime.backends.streams import CudaLane, Pipeline, padded_batches
from mitotally.runtime.normalize import PAD_VALUE


class LogLanes:
    """Lanes that only log what the pipeline asks of them."""

    def __init__(self, n: int):
        self.lanes = list(range(n))
        self.log: list[tuple[str, int, int]] = []  # (event, lane, job)
        self.busy: set[int] = set()
        self.max_in_flight = 0

    def submit(self, lane: int, job: int) -> int:
        assert lane not in self.busy, f"lane {lane} reused before its job was finished"
        self.busy.add(lane)
        self.max_in_flight = max(self.max_in_flight, len(self.busy))
        self.log.append(("submit", lane, job))
        return job

    def finish(self, lane: int, job: int) -> int:
        self.busy.remove(lane)
        self.log.append(("finish", lane, job))
        return job * 10


@pytest.mark.parametrize("n_lanes", [1, 2, 3])
def test_results_in_order_and_lanes_never_overbooked(n_lanes):
    lanes = LogLanes(n_lanes)
    out = list(Pipeline(lanes.lanes, lanes.submit, lanes.finish).map(range(7)))
    assert out == [j * 10 for j in range(7)]
    assert lanes.max_in_flight == n_lanes
    assert [j for e, _, j in lanes.log if e == "finish"] == list(range(7))
    assert not lanes.busy


def test_next_batch_is_queued_before_the_host_waits_on_the_previous():
    """With two lanes, job k+1 is submitted before job k is finished: that is the overlap."""
    lanes = LogLanes(2)
    list(Pipeline(lanes.lanes, lanes.submit, lanes.finish).map(range(4)))
    pos = {(e, j): i for i, (e, _, j) in enumerate(lanes.log)}
    for k in range(3):
        assert pos[("submit", k + 1)] < pos[("finish", k)]
    # lanes alternate, so consecutive batches sit on different streams
    assert [lane for e, lane, _ in lanes.log if e == "submit"] == [0, 1, 0, 1]


def test_jobs_are_pulled_lazily():
    """The host prepares job k+1 (decode, crop) only when a lane can take it, after job k was queued."""
    lanes = LogLanes(2)
    pulled: list[int] = []

    def jobs():
        for j in range(5):
            pulled.append(j)
            lanes.log.append(("pull", -1, j))
            yield j

    results = Pipeline(lanes.lanes, lanes.submit, lanes.finish).map(jobs())
    assert next(results) == 0
    assert pulled == [0, 1, 2]  # job 2 is prepared on the host while jobs 0 and 1 are on the device
    assert list(results) == [10, 20, 30, 40]


def test_thread_streams_overlap_and_match_sequential():
    """A CPU stand-in for CUDA streams (one worker thread per lane, like an in-order stream) gives
    the sequential answer while two lanes run at once."""
    running, peak, lock = set(), [0], threading.Lock()
    release = threading.Barrier(2, timeout=10)

    def trunk(job: int) -> int:
        with lock:
            running.add(job)
            peak[0] = max(peak[0], len(running))
        if job < 2:
            release.wait()  # jobs 0 and 1 can only pass together: proves they were in flight at once
        with lock:
            running.discard(job)
        return job * job

    streams = [ThreadPoolExecutor(max_workers=1) for _ in range(2)]
    try:
        pipe = Pipeline(streams, lambda s, j: s.submit(trunk, j), lambda s, fut: fut.result() + 1)
        assert list(pipe.map(range(6))) == [j * j + 1 for j in range(6)]
    finally:
        for s in streams:
            s.shutdown()
    assert peak[0] == 2


def test_padded_batches():
    tiles = np.arange(5 * 4 * 4, dtype=np.float64).reshape(5, 4, 4)
    blocks = list(padded_batches(tiles, 2))
    assert [n for _, n in blocks] == [2, 2, 1]
    assert all(b.shape == (2, 4, 4) and b.dtype == np.float32 and b.flags.c_contiguous for b, _ in blocks)
    np.testing.assert_array_equal(blocks[2][0][0], tiles[4])
    assert np.all(blocks[2][0][1] == PAD_VALUE)
    assert list(padded_batches(np.zeros((0, 4, 4)), 2)) == []
    with pytest.raises(ValueError, match="expected tiles"):
        list(padded_batches(np.zeros((2, 4, 5)), 2))


def test_pipeline_needs_a_lane():
    with pytest.raises(ValueError, match="at least one lane"):
        Pipeline([], lambda lane, job: job, lambda lane, h: h)


@pytest.mark.gpu
def test_cuda_lanes_round_trip_through_a_real_pipeline():
    """Real streams, pinned buffers and events: each lane uploads, computes and returns its own batch."""
    device = torch.device("cuda")
    lanes = [CudaLane.create(2, 8, device) for _ in range(2)]
    assert all(lane.host_in.is_pinned() for lane in lanes)

    def submit(lane: CudaLane, block: np.ndarray):
        x = lane.upload(block)
        with torch.cuda.stream(lane.stream):
            return (x * 2).sum(dim=(1, 2, 3))

    def finish(lane: CudaLane, y: torch.Tensor) -> np.ndarray:
        with torch.cuda.stream(lane.stream):
            return y.cpu().numpy()

    rng = np.random.default_rng(0)
    blocks = [rng.random((2, 8, 8), dtype=np.float32) for _ in range(9)]
    out = list(Pipeline(lanes, submit, finish).map(blocks))
    for block, y in zip(blocks, out):
        np.testing.assert_allclose(y, 2 * block.sum(axis=(1, 2)), rtol=1e-5)
