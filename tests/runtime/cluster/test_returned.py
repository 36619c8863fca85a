"""OUT not shared, model not readable: what travels between client and workers, without a cluster."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mitotally.runtime.cluster import ClusterError, require_distributed
from mitotally.runtime.cluster.bundle import model_bundle, remove_unpacked, unpack_bundle
from mitotally.runtime.cluster.returned import remove_marker, write_marker, write_returned
from mitotally.runtime.manifest import weights_sha256
from mitotally.runtime.pipeline import RunConfig
from mitotally.runtime.results import ImageResult, failed
from mitotally.runtime.writers.tables import read_record


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Loading a model in a plugin sets torch's threads for the process (a worker's); put them back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ClusterError, match=r"pip install 'mitotally\[cluster\]'"):
        require_distributed()


def test_returned_outputs_are_written_then_the_record(tmp_path):
    result = ImageResult("a.tif", "/in/a.tif", outputs=["labels/a.tif", "rois/a.zip", "records/a.tif.json"], name="a")
    write_returned(tmp_path, result, {"labels/a.tif": b"L", "rois/a.zip": b"R"})
    assert (tmp_path / "labels/a.tif").read_bytes() == b"L" and (tmp_path / "rois/a.zip").read_bytes() == b"R"
    assert read_record(tmp_path, "a.tif").ok
    with pytest.raises(ValueError, match="outside OUT"):
        write_returned(tmp_path, result, {"../escape": b"x"})


def test_a_returned_failure_removes_what_an_earlier_attempt_left(tmp_path):
    ok = ImageResult("a.tif", "/in/a.tif", outputs=["labels/a.tif", "overlays/a.png", "records/a.tif.json"], name="a")
    write_returned(tmp_path, ok, {"labels/a.tif": b"L", "overlays/a.png": b"O"})
    write_returned(tmp_path, failed("a.tif", "/in/a.tif", "cannot read", name="a"), {})
    assert not (tmp_path / "labels/a.tif").exists() and not (tmp_path / "overlays/a.png").exists()
    assert read_record(tmp_path, "a.tif").error == "cannot read"


def plugin_module():
    """The worker plugin needs Dask (the `[cluster]` extra, part of `[dev]`)."""
    pytest.importorskip("distributed")
    from mitotally.runtime.cluster import plugin

    return plugin


def test_the_marker_tells_a_worker_whether_it_sees_out(tmp_path):
    plugin = plugin_module().ModelPlugin("/nowhere", "0" * 64, RunConfig())
    asyncio.run(plugin.setup(SimpleNamespace(address="tcp://w:1", name="w", ip="10.0.0.9")))
    marker = write_marker(tmp_path)
    assert plugin.out_shared(str(tmp_path), marker)
    assert not plugin.out_shared(str(tmp_path), ".mito-cluster-of-another-folder")
    remove_marker(tmp_path, marker)
    assert not (tmp_path / marker).exists()


def test_a_worker_that_cannot_read_the_model_loads_the_files_sent_to_it(tiny_model_dir, tmp_path):
    p = plugin_module()
    bundle = model_bundle(tiny_model_dir)
    assert set(bundle) == {"model.json", "model.safetensors"}
    plugin = p.ModelPlugin(str(tmp_path / "not-mounted-here"), weights_sha256(tiny_model_dir),
                         RunConfig(backend="torch", device="cpu", threads=1))
    asyncio.run(plugin.setup(SimpleNamespace(address="tcp://w:1", name="w", ip="10.0.0.9")))
    assert plugin.state == p.MISSING
    with pytest.raises(p.ModelMissing):
        plugin.ready_segmenter()
    asyncio.run(plugin.install(bundle))
    said = plugin.describe()
    assert plugin.state == p.READY and said["model_from"] == "sent by the client" and said["backend"]["name"] == "torch"
    plugin.teardown(None)
    assert not Path(plugin.unpacked).exists()


def test_other_weights_at_the_same_path_count_as_missing(tiny_model_dir):
    p = plugin_module()
    plugin = p.ModelPlugin(str(tiny_model_dir), "f" * 64, RunConfig(backend="torch", device="cpu", threads=1))
    asyncio.run(plugin.setup(SimpleNamespace(address="tcp://w:1", name="w", ip="10.0.0.9")))
    assert plugin.state == p.MISSING and "other weights" in plugin.why


def test_bundle_names_stay_inside_the_scratch_folder():
    with pytest.raises(ValueError, match="unexpected file name"):
        unpack_bundle({"../model.json": b"{}"})
    remove_unpacked(None)
