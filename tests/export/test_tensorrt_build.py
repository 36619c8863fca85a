"""TensorRT FP16 export on a CPU: the FP16 ONNX keeps GroupNorm statistics in FP32 and agrees with FP32 on
ONNX Runtime; an engine is recorded only after it passes the agreement gate; builds bind the device.

TensorRT is not installed here: the builder and the agreement measurement are test doubles, named as such.
The real build and gate run in tests/runtime/test_backends.py::test_tensorrt_engine_and_backend (gpu marker)."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mitotally.export import tensorrt_build
from mitotally.export.cli import main
from mitotally.export.fp16_onnx import float32_nodes, float_nodes, fp16_onnx, normalisation_nodes
from mitotally.export.onnx_export import onnx_bytes
from mitotally.export.tensorrt_build import AgreementFailed, MIN_FP16_F1, build_verified_engine
from mitotally.export.verify import first_tiles, synthetic_images
from mitotally.runtime.backends.tensorrt_backend import TrtEnvironment
from mitotally.runtime.backends.torch_backend import Trunk
from mitotally.runtime.manifest import load_manifest, load_model, recorded_engines

REPO = Path(__file__).resolve().parents[2]
H100 = TrtEnvironment("10.13.3", "NVIDIA H100 80GB HBM3", "9.0")
H200 = TrtEnvironment("10.13.3", "NVIDIA H200", "9.0")


def _ort(data: bytes, tiles: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"]).run(None, {"tiles": tiles[:, None]})


def test_groupnorm_statistics_stay_fp32_and_the_fp16_trunk_agrees_with_fp32(fast_model_dir):
    """Every ReduceMean/Sub/square/Add-eps/Sqrt/Div of GroupNorm computes in FP32; the convolutions in FP16."""
    model, manifest = load_model(fast_model_dir)
    trunk = Trunk(model)
    data = onnx_bytes(trunk, manifest.tile, 1)
    graph = onnx.load_from_string(data)
    kept = set(normalisation_nodes(graph))
    squares = {n.name for n in graph.graph.node if n.op_type == "Mul" and n.input[0] == n.input[1]}
    n_groupnorm = sum(isinstance(m, torch.nn.GroupNorm) for m in trunk.modules())  # the mask head's are not in the trunk
    assert n_groupnorm and len(squares) == n_groupnorm and squares <= kept
    kept &= float_nodes(data)  # not the integer shape arithmetic
    half = fp16_onnx(data)
    fp32 = float32_nodes(half)
    assert kept <= fp32, sorted(kept - fp32)[:5]
    assert not fp16_between(onnx.load_from_string(half), kept)  # no FP16 rounding from one statistic to the next
    convs = [n.name for n in onnx.load_from_string(half).graph.node if n.op_type == "Conv"]
    assert convs and not set(convs) & fp32  # the convolutions really are FP16
    tiles = first_tiles(synthetic_images(manifest, n=1)[0], manifest, manifest.tile, 1)
    for a, b in zip(_ort(data, tiles), _ort(half, tiles)):
        assert np.abs(a - b).max() <= 0.02 * max(1.0, np.abs(a).max())


def fp16_between(model, kept: set[str]) -> list[str]:
    """Tensors that a statistics node writes and another statistics node reads through a Cast to FP16."""
    producer = {o: n for n in model.graph.node for o in n.output}
    bad = []
    for n in model.graph.node:
        if n.name not in kept:
            continue
        for i in n.input:
            chain = producer.get(i)
            while chain is not None and chain.op_type == "Cast":
                if any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in chain.attribute):
                    source = producer.get(chain.input[0])
                    while source is not None and source.op_type == "Cast":
                        source = producer.get(source.input[0])
                    if source is not None and source.name in kept:
                        bad.append(f"{source.name} -> {n.name}")
                chain = producer.get(chain.input[0])
    return bad


def test_the_shipped_trunk_in_fp16_survives_inputs_that_overflow_an_fp16_variance():
    """On the shipped model, inputs 300x the normal range: FP32 statistics keep the FP16 trunk finite and close."""
    model, manifest = load_model(REPO / "models" / "em-mito-r18")
    data = onnx_bytes(Trunk(model), manifest.tile, 1)
    tiles = first_tiles(synthetic_images(manifest, n=1)[0], manifest, manifest.tile, 1) * 300
    ref, got = _ort(data, tiles), _ort(fp16_onnx(data), tiles)
    assert max(np.abs(r).max() for r in ref) > 0  # a real signal
    for a, b in zip(ref, got):
        assert np.isfinite(b).all()
        assert np.abs(a - b).max() <= 0.05 * max(1.0, np.abs(a).max())


def _fake_build(log: list):
    """Test double for `build_engine` (TensorRT is not installed here): returns recognisable bytes."""
    def build(onnx_fp32, device, workspace_gib, timing_cache):
        log.append((device, timing_cache))
        return b"engine for " + device.encode(), b"cache"
    return build


def test_an_engine_below_the_agreement_floor_is_neither_written_nor_recorded(fast_model_dir):
    log = []
    with pytest.raises(AgreementFailed, match=r"F1@0.5 0.9700 \(95 vs 100 instances\), 0.0200 short of 0.99"):
        build_verified_engine(fast_model_dir, b"onnx", 512, 8, ["feat_0"], "w", lambda engine: (0.97, 100, 95),
                              env=H100, build=_fake_build(log))
    assert log and not list(fast_model_dir.glob("*.engine")) and not recorded_engines(load_manifest(fast_model_dir))
    with pytest.raises(AgreementFailed, match="finds no mitochondria"):
        build_verified_engine(fast_model_dir, b"onnx", 512, 8, ["feat_0"], "w", lambda engine: (0.0, 0, 0),
                              env=H100, build=_fake_build(log))


def test_a_passing_engine_is_recorded_per_gpu_and_several_gpus_share_the_folder(fast_model_dir):
    log = []
    checked = []

    def agreement(engine):
        checked.append(engine)
        return 0.995, 100, 100

    a = build_verified_engine(fast_model_dir, b"onnx", 512, 8, ["feat_0"], "w", agreement, device="cuda:1", env=H100, build=_fake_build(log))
    b = build_verified_engine(fast_model_dir, b"onnx", 512, 8, ["feat_0"], "w", agreement, env=H200, build=_fake_build(log))
    assert checked == [b"engine for cuda:1", b"engine for cuda"]  # the gate saw the engine that was written
    assert log[0][0] == "cuda:1"
    engines = recorded_engines(load_manifest(fast_model_dir))
    assert {e["file"] for e in engines} == {a["file"], b["file"]} and a["file"] != b["file"]
    for e in engines:
        assert hashlib.sha256((fast_model_dir / e["file"]).read_bytes()).hexdigest() == e["sha256"]
        assert e["fp16_vs_fp32"]["f1@0.5"] == 0.995 and e["fp16_vs_fp32"]["min_f1"] == MIN_FP16_F1 and e["strongly_typed"]
    # a rebuild on the same GPU reuses its timing cache and replaces only its own record
    build_verified_engine(fast_model_dir, b"onnx", 512, 8, ["feat_0"], "w", agreement, env=H100, build=_fake_build(log))
    assert log[-1][1] == b"cache" and len(recorded_engines(load_manifest(fast_model_dir))) == 2


def test_the_builder_runs_on_the_device_asked_for(monkeypatch):
    """Logic only: a stand-in `tensorrt` module records the device that is current when the builder is created."""
    from types import SimpleNamespace

    seen = []
    current = {"device": None}

    def on_device(device):
        import contextlib

        @contextlib.contextmanager
        def bound():
            current["device"] = torch.device(device)
            yield
            current["device"] = None
        return bound()

    class Builder:
        def __init__(self, logger):
            seen.append(current["device"])

        def create_network(self, flags):
            seen.append(("strongly typed", flags))
            raise RuntimeError("stop here: the rest needs TensorRT")

    fake = SimpleNamespace(Logger=type("Logger", (), {"WARNING": 0, "__init__": lambda self, level: None}), Builder=Builder,
                           NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(tensorrt_build, "tensorrt_environment", lambda device: H100)
    monkeypatch.setattr(tensorrt_build, "on_device", on_device)
    monkeypatch.setattr(tensorrt_build, "fp16_onnx", lambda data: data)
    with pytest.raises(RuntimeError, match="stop here"):
        tensorrt_build.build_engine(b"onnx", "cuda:1")
    assert seen == [torch.device("cuda:1"), ("strongly typed", 1 << 1)]


def test_fp16_keeps_the_cpu_trunk_at_batch_1(fast_model_dir, capsys):
    """`--fp16` builds its own batch-8 GPU trunk; trunk.onnx (what CPU runs load) stays batch 1."""
    try:
        import tensorrt  # noqa: F401

        if torch.cuda.is_available():
            pytest.skip("TensorRT and a GPU are present: the engine is built (see the gpu tests)")
    except ImportError:
        pass
    assert main([str(fast_model_dir), "--fp16", "--threads", "1"]) == 3
    assert "--fp16 refused" in capsys.readouterr().err
    assert load_manifest(fast_model_dir).exports["onnx"]["batch"] == 1
