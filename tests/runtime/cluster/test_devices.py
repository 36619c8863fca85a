"""Local worker planning (`--workers N`): one per GPU, pinned by CUDA_VISIBLE_DEVICES; cores split on a CPU."""
from __future__ import annotations

import pytest

from mitotally.runtime.cluster.devices import (THREAD_VARIABLES, local_worker_specs, processes_per_host, split_cores,
                                               visible_gpus)


def test_one_worker_per_gpu_each_sees_only_its_own():
    gpus = visible_gpus("auto", 4, None)
    specs = local_worker_specs(4, "auto", gpus, cores=32)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["0", "1", "2", "3"]
    assert {s.device for s in specs} == {"cuda"}  # inside the worker: its one visible GPU
    assert {s.threads for s in specs} == {8}
    assert all(s.env[v] == "8" for s in specs for v in THREAD_VARIABLES)


def test_gpu_ids_follow_this_process_cuda_visible_devices_round_robin():
    gpus = visible_gpus("cuda", 2, "5,7")
    assert gpus == ["5", "7"]
    specs = local_worker_specs(3, "cuda", gpus, cores=12)
    assert [s.gpu for s in specs] == ["5", "7", "5"]
    assert visible_gpus("cuda:1", 2, "5,7") == ["7"]
    with pytest.raises(ValueError, match="only 2 GPU"):
        visible_gpus("cuda:2", 2, "5,7")


def test_cpu_workers_split_the_cores_and_see_no_gpu():
    specs = local_worker_specs(3, "cpu", visible_gpus("cpu", 2, None), cores=16)
    assert [s.threads for s in specs] == [5, 5, 5]
    assert all("CUDA_VISIBLE_DEVICES" not in s.env and s.device == "cpu" for s in specs)
    assert [s.threads for s in local_worker_specs(4, "cpu", [], cores=2)] == [1] * 4  # never 0
    assert [s.threads for s in local_worker_specs(2, "cpu", [], cores=16, threads=3)] == [3, 3]  # --threads wins


def test_asking_for_cuda_without_a_gpu_is_an_error():
    with pytest.raises(ValueError, match="no GPU"):
        local_worker_specs(2, "cuda", [], cores=8)
    with pytest.raises(ValueError, match="at least 1"):
        local_worker_specs(0, "cpu", [], cores=8)


def test_an_existing_clusters_workers_split_their_hosts_cores():
    counts = processes_per_host(["10.0.0.1", "10.0.0.1", "10.0.0.2"])
    assert counts == {"10.0.0.1": 2, "10.0.0.2": 1}
    assert split_cores(16, counts["10.0.0.1"]) == 8 and split_cores(1, 4) == 1
