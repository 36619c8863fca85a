"""A model folder round-trips: manifest + safetensors, FP16 storage, unknown keys rejected."""
import json

import pytest
import torch

from mitotally.runtime.manifest import Manifest, load_manifest, load_model, save_model
from mitotally.runtime.model import ModelConfig, adapt_state_dict, build_model


def test_manifest_round_trip(tmp_path):
    m = Manifest(model=ModelConfig(fpn_channels=32), pixel_size_nm=7.5, tile=256, metrics={"mask_AP": 0.5})
    model = build_model(m.model, m.tile)
    save_model(tmp_path, m, model.state_dict())
    assert load_manifest(tmp_path) == m
    loaded, m2 = load_model(tmp_path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)


def test_fp16_storage_loads_back_as_float32(tmp_path):
    m = Manifest(model=ModelConfig(fpn_channels=32))
    model = build_model(m.model, m.tile)
    save_model(tmp_path, m, model.state_dict(), fp16=True)
    loaded, _ = load_model(tmp_path)
    w = loaded.state_dict()["backbone.fpn.inner_blocks.0.0.weight"]
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, model.state_dict()["backbone.fpn.inner_blocks.0.0.weight"], rtol=1e-3, atol=1e-3)


def test_unknown_manifest_keys_are_errors(tmp_path):
    save_model(tmp_path, Manifest(model=ModelConfig(fpn_channels=32)), build_model(ModelConfig(fpn_channels=32)).state_dict())
    d = json.loads((tmp_path / "model.json").read_text())
    d["colour"] = "blue"
    (tmp_path / "model.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="colour"):
        load_manifest(tmp_path)


def test_adapt_state_dict_reinitialises_class_heads_and_sums_rgb_stem():
    model = build_model(ModelConfig(fpn_channels=32))
    foreign = {k: v.clone() for k, v in model.state_dict().items()}
    foreign["backbone.body.conv1.weight"] = torch.ones(64, 3, 7, 7)
    foreign["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(91, 256)
    kept, skipped = adapt_state_dict(model, foreign)
    assert torch.equal(kept["backbone.body.conv1.weight"], torch.full((64, 1, 7, 7), 3.0))
    assert "roi_heads.box_predictor.cls_score.weight" not in kept
    assert any("class-specific" in s for s in skipped)


def _record_many(model_dir: str, worker: int, n: int) -> None:
    from mitotally.runtime.manifest import record_engine

    for i in range(n):
        record_engine(model_dir, {"file": f"w{worker}-{i}.engine"})


def test_engine_records_from_concurrent_exports_are_all_kept(tmp_path):
    """Two processes (two GPUs exporting into one shared folder) record engines at once: none is lost."""
    import multiprocessing

    from mitotally.runtime.manifest import recorded_engines

    save_model(tmp_path, Manifest(model=ModelConfig(fpn_channels=32)), build_model(ModelConfig(fpn_channels=32), 512).state_dict())
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_record_many, args=(str(tmp_path), w, 15)) for w in range(2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0
    files = {e["file"] for e in recorded_engines(load_manifest(tmp_path))}
    assert files == {f"w{w}-{i}.engine" for w in range(2) for i in range(15)}


def test_a_single_engine_recorded_by_an_older_export_is_still_found():
    from mitotally.runtime.manifest import recorded_engines

    old = Manifest(exports={"tensorrt": {"file": "trunk.fp16.engine", "gpu_name": "NVIDIA H100"}})
    assert [e["file"] for e in recorded_engines(old)] == ["trunk.fp16.engine"]
    assert recorded_engines(Manifest()) == []


def test_the_gpu_extra_matches_torchs_cuda_and_installs_one_onnxruntime():
    """`pip install .[gpu]` must not add onnxruntime-gpu beside onnxruntime (both own the module), and its
    TensorRT wheels must be built for the CUDA major of the pinned torch."""
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    gpu = project["optional-dependencies"]["gpu"]
    assert not any(d.startswith("onnxruntime") for d in gpu)
    majors = {int(m.group(1)) for d in gpu if (m := re.match(r"tensorrt-cu(\d+)", d))}
    assert len(majors) == 1 and len(gpu) == 1
    if torch.version.cuda:  # the pinned torch wheel installed here
        assert majors == {int(torch.version.cuda.split(".")[0])}
