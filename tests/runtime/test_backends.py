"""Backends: the trunk/heads split reproduces torchvision; ONNX Runtime gives the same instances as torch; selection."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ellipse_labels, render_em_like  # noqa: E402

from mitotally.export.onnx_export import export_trunk  # noqa: E402
from mitotally.runtime.manifest import record_export  # noqa: E402
from mitotally.export.verify import VerifyImage, backend_agreement, segment_image  # noqa: E402
from mitotally.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeUnavailable, providers_for  # noqa: E402
from mitotally.runtime.backends.select import (  # noqa: E402
    BackendOptions,
    BackendUnavailable,
    auto_order,
    export_file,
    make_backend,
    select_backend,
)
from mitotally.runtime.backends.tensorrt_backend import TrtEnvironment, engine_file_name, stale_reasons  # noqa: E402
from mitotally.runtime.backends.torch_backend import TorchBackend  # noqa: E402
from mitotally.runtime.manifest import load_model  # noqa: E402


@pytest.fixture
def model_dir(tiny_model_dir, tmp_path) -> Path:
    """The tiny random model with at most 20 detections per tile (fast pasting and stitching)."""
    dst = tmp_path / "model"
    dst.mkdir()
    shutil.copyfile(tiny_model_dir / "model.safetensors", dst / "model.safetensors")
    manifest = json.loads((tiny_model_dir / "model.json").read_text())
    manifest["model"]["detections_per_img"] = 20
    (dst / "model.json").write_text(json.dumps(manifest))
    return dst


def _tiles(rng, n: int, tile: int = 128) -> np.ndarray:
    imgs = [render_em_like(ellipse_labels((tile, tile), 6, rng, axes=(6, 16)), rng) for _ in range(n)]
    return ((np.stack(imgs).astype(np.float32) - 40) / 150).astype(np.float32)


def test_trunk_and_heads_reproduce_torchvision_forward(model_dir, rng):
    """Split path == torchvision's own `model(images)` (no resize): same boxes, scores and pasted masks."""
    model, manifest = load_model(model_dir)
    tiles = _tiles(rng, 2)
    backend = TorchBackend(model, manifest.tile, batch=2, score_threshold=0.05)
    dets = backend.infer(tiles)
    with torch.inference_mode():
        ref = model([torch.from_numpy(t)[None] for t in tiles])
    assert sum(len(d) for d in dets) > 0
    for det, r in zip(dets, ref):
        np.testing.assert_allclose(det.boxes, r["boxes"].numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(det.scores, r["scores"].numpy(), rtol=0, atol=1e-6)
        pasted = paste_masks_in_image(torch.from_numpy(det.mask_probs)[:, None], torch.from_numpy(det.boxes), (128, 128))
        np.testing.assert_allclose(pasted.numpy(), r["masks"].numpy(), atol=1e-5)


def test_infer_takes_any_number_of_tiles(model_dir, rng):
    """Tiles are cut into static batches and the padding is dropped: 3 tiles at batch 2 == one at a time."""
    model, manifest = load_model(model_dir)
    tiles = _tiles(rng, 3)
    batched = TorchBackend(model, manifest.tile, batch=2, score_threshold=0.05).infer(tiles)
    single = TorchBackend(model, manifest.tile, batch=1, score_threshold=0.05).infer(tiles)
    nhwc = TorchBackend(model, manifest.tile, batch=3, score_threshold=0.05, channels_last=True).infer(tiles)
    assert len(batched) == len(single) == len(nhwc) == 3
    for a, b in zip(batched + nhwc, single + single):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def _left_half(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 0] + boxes[:, 2]) / 2 < 64


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_box_filters_drop_boxes_before_the_mask_head_and_keep_the_rest_exact(model_dir, rng, kind):
    """A filter removes boxes (3 tiles at batch 2: the padded tile gets none) and the boxes it keeps have the
    same scores and mask probabilities as without it: the mask head is per box."""
    model, manifest = load_model(model_dir)
    if kind == "torch":
        backend = TorchBackend(model, manifest.tile, batch=2, score_threshold=0.05)
    else:
        entry = export_trunk(model, model_dir, manifest.tile, batch=2)
        backend = OnnxRuntimeBackend(model_dir / entry.file, model, entry.tile, entry.batch, entry.outputs, "cpu", 0.05, threads=1)
    tiles = _tiles(rng, 3)
    everything = backend.infer(tiles)
    filtered = backend.infer(tiles, [_left_half, None, _left_half])
    assert sum(len(d) for d in filtered) < sum(len(d) for d in everything)
    for i, (all_dets, kept) in enumerate(zip(everything, filtered)):
        expect = _left_half(all_dets.boxes) if i != 1 else np.ones(len(all_dets), bool)
        assert 0 < expect.sum() == len(kept)
        np.testing.assert_allclose(kept.boxes, all_dets.boxes[expect], atol=1e-5)
        np.testing.assert_allclose(kept.scores, all_dets.scores[expect], atol=1e-6)
        np.testing.assert_allclose(kept.mask_probs, all_dets.mask_probs[expect], atol=1e-6)
    with pytest.raises(ValueError, match="2 box filters for 3 tiles"):
        backend.infer(tiles, [None, None])


def test_seam_rule_hint_does_not_change_the_stitched_instances(model_dir, rng):
    """`infer_tiles` hands the backend the seam rule as box filters; a backend that ignores the hint gives
    the same instances, pixel for pixel (seams included: 200x230 px at tile 128 is 4 tiles)."""
    from mitotally.runtime.segment import infer_tiles, segment_scaled

    class IgnoresHints:
        def __init__(self, inner):
            self.inner, self.name, self.tile, self.batch = inner, inner.name, inner.tile, inner.batch

        def infer(self, tiles, box_filters=None):
            self.hinted = box_filters is not None
            return self.inner.infer(tiles)

    model, manifest = load_model(model_dir)
    image = render_em_like(ellipse_labels((200, 230), 25, rng, axes=(6, 18)), rng)
    scaled = ((image.astype(np.float32) - 40) / 150).astype(np.float32)
    backend = TorchBackend(model, manifest.tile, batch=2, score_threshold=0.05)
    ignoring = IgnoresHints(backend)
    a = segment_scaled(backend, scaled, scaled.shape, 1.0, manifest.overlap, 0.05, 0.5)
    b = segment_scaled(ignoring, scaled, scaled.shape, 1.0, manifest.overlap, 0.05, 0.5)
    assert ignoring.hinted and len(a) > 0 and len(a) == len(b)
    hinted, unhinted = infer_tiles(backend, scaled, manifest.overlap), infer_tiles(ignoring, scaled, manifest.overlap)
    assert sum(len(d) for _, d in hinted.detections) < sum(len(d) for _, d in unhinted.detections)  # masks skipped
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.scores, b.scores)
    for ma, mb in zip(a.masks, b.masks):
        np.testing.assert_array_equal(ma, mb)


def test_onnxruntime_and_torch_give_the_same_instances(model_dir, rng):
    """Backend equivalence on CPU on a synthetic image spanning several tiles (seams included)."""
    model, manifest = load_model(model_dir)
    entry = export_trunk(model, model_dir, manifest.tile, batch=2)
    image = render_em_like(ellipse_labels((200, 230), 25, rng, axes=(6, 18)), rng)
    im = VerifyImage("synthetic", image, manifest.pixel_size_nm)
    torch_b = TorchBackend(model, manifest.tile, 2, "cpu", manifest.score_threshold)
    onnx_b = OnnxRuntimeBackend(model_dir / entry.file, model, entry.tile, entry.batch, entry.outputs, "cpu", manifest.score_threshold, threads=1)
    a, b = segment_image(torch_b, manifest, im), segment_image(onnx_b, manifest, im)
    assert len(a) > 0 and len(a) == len(b)
    f1, n_torch, n_onnx = backend_agreement(torch_b, onnx_b, manifest, [im])
    assert f1 == 1.0 and n_torch == n_onnx == len(a)
    np.testing.assert_allclose(np.sort(a.scores), np.sort(b.scores), atol=1e-4)


def test_auto_picks_onnxruntime_on_cpu_once_exported(model_dir):
    model, manifest = load_model(model_dir)
    opts = BackendOptions(device="cpu", threads=1)
    before = select_backend(model_dir, "auto", opts, model, manifest)
    assert before.backend.name == "torch" and "no ONNX export" in before.skipped["onnxruntime"]
    entry = export_trunk(model, model_dir, manifest.tile, batch=1)
    record_export(model_dir, "onnx", entry.to_dict())
    model, manifest = load_model(model_dir)
    after = select_backend(model_dir, "auto", opts, model, manifest)
    assert after.backend.name == "onnxruntime" and "onnxruntime" in after.reason and not after.skipped
    # an explicit batch that the static export cannot serve is reported, never silently changed
    mismatch = select_backend(model_dir, "auto", BackendOptions(device="cpu", batch=4), model, manifest)
    assert mismatch.backend.name == "torch" and "--batch 4" in mismatch.skipped["onnxruntime"]
    with pytest.raises(BackendUnavailable, match="batch 4"):
        select_backend(model_dir, "onnxruntime", BackendOptions(device="cpu", batch=4), model, manifest)


def test_tensorrt_unavailable_is_a_clear_refusal(model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the refusal path is for machines without one")
    model, manifest = load_model(model_dir)
    with pytest.raises(BackendUnavailable, match="TensorRT|CUDA"):
        make_backend("tensorrt", model_dir, model, manifest, BackendOptions())
    with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
        make_backend("torch", model_dir, model, manifest, BackendOptions(device="cuda"))
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        select_backend(model_dir, "tpu", BackendOptions(), model, manifest)


def test_precisions_that_cannot_run_are_refused_with_the_reason(model_dir):
    model, manifest = load_model(model_dir)
    cpu = dict(device="cpu")
    for name, precision, reason in [("torch", "int8", "only on the onnxruntime backend"),
                                    ("torch", "fp16", "fp16 needs a CUDA GPU"),
                                    ("onnxruntime", "bf16", "unknown precision"),
                                    ("tensorrt", "fp32", "TensorRT engines here are FP16")]:
        with pytest.raises(BackendUnavailable, match=reason):
            make_backend(name, model_dir, model, manifest, BackendOptions(precision=precision, **cpu))
    backend = make_backend("torch", model_dir, model, manifest, BackendOptions(precision="fp32", **cpu))
    assert backend.precision == "fp32"


def test_export_files_never_leave_the_model_folder(tmp_path):
    (tmp_path / "trunk.onnx").write_bytes(b"x")
    assert export_file(tmp_path, "trunk.onnx") == tmp_path / "trunk.onnx"
    for bad in ("../trunk.onnx", "/etc/passwd", "sub/trunk.onnx", "", ".."):
        with pytest.raises(BackendUnavailable, match="plain file name"):
            export_file(tmp_path, bad)
    with pytest.raises(BackendUnavailable, match="missing"):
        export_file(tmp_path, "other.onnx")


H100 = TrtEnvironment("10.9.0", "NVIDIA H100 80GB HBM3", "9.0")


def _engine_entry(env: TrtEnvironment, weights: str = "w", batch: int = 8) -> dict:
    return {"file": engine_file_name(env, 512, batch), "tensorrt_version": env.tensorrt_version, "gpu_name": env.gpu_name,
            "compute_capability": env.compute_capability, "weights_sha256": weights, "tile": 512, "batch": batch}


def test_stale_engine_reasons():
    entry = _engine_entry(H100)
    assert stale_reasons(entry, H100, "w") == [] and stale_reasons(entry, H100, "w", batch=8) == []
    other_gpu = TrtEnvironment("10.9.0", "NVIDIA A100-SXM4-40GB", "8.0")
    reasons = stale_reasons(entry, other_gpu, "w")
    assert len(reasons) == 2 and any("gpu_name" in r for r in reasons) and any("compute_capability" in r for r in reasons)
    assert any("tensorrt_version" in r for r in stale_reasons(entry, TrtEnvironment("11.0.0", H100.gpu_name, "9.0"), "w"))
    assert any("weights_sha256" in r for r in stale_reasons(entry, H100, "retrained"))
    assert any("batch" in r for r in stale_reasons(entry, H100, "w", batch=4))


def test_engine_files_are_named_by_gpu_capability_tensorrt_tile_and_batch():
    name = engine_file_name(H100, 512, 8)
    assert name == "trunk.fp16.nvidia-h100-80gb-hbm3.sm90.trt10.9.0.t512.b8.engine"
    others = {engine_file_name(TrtEnvironment("10.9.0", "NVIDIA A100-SXM4-40GB", "8.0"), 512, 8),
              engine_file_name(TrtEnvironment("11.0.0", H100.gpu_name, "9.0"), 512, 8), engine_file_name(H100, 512, 4),
              engine_file_name(H100, 1024, 8)}
    assert name not in others and len(others) == 4
    assert all(Path(n).name == n for n in others | {name})  # plain file names, never a path


def test_the_runtime_loads_the_engine_of_its_gpu_and_refuses_with_the_export_command(tmp_path):
    """Several GPUs share a folder: each finds its own engine; a GPU without one is told how to build it."""
    import hashlib

    from mitotally.runtime.backends.select import usable_engine

    a100 = TrtEnvironment("10.9.0", "NVIDIA A100-SXM4-40GB", "8.0")
    engines = []
    for env in (a100, H100):
        entry = _engine_entry(env)
        (tmp_path / entry["file"]).write_bytes(env.gpu_name.encode())
        engines.append({**entry, "sha256": hashlib.sha256(env.gpu_name.encode()).hexdigest()})
    assert usable_engine(tmp_path, engines, H100, "w", None)["gpu_name"] == H100.gpu_name
    assert usable_engine(tmp_path, engines, a100, "w", 8)["gpu_name"] == a100.gpu_name
    l40 = TrtEnvironment("10.9.0", "NVIDIA L40S", "8.9")
    with pytest.raises(BackendUnavailable, match=r"no recorded TensorRT engine fits NVIDIA L40S.*mito-export .* --fp16"):
        usable_engine(tmp_path, engines, l40, "w", None)
    (tmp_path / engines[1]["file"]).write_bytes(b"corrupted")
    with pytest.raises(BackendUnavailable, match="differs from the recorded sha256"):
        usable_engine(tmp_path, engines, H100, "w", None)
    with pytest.raises(BackendUnavailable, match="no TensorRT engine recorded"):
        usable_engine(tmp_path, [], H100, "w", None)


def test_tensorrt_must_be_built_for_the_cuda_major_of_torch():
    from mitotally.runtime.backends.tensorrt_backend import cuda_major_mismatch

    assert cuda_major_mismatch("13.0", 13) == "" and cuda_major_mismatch(None, 12) == "" and cuda_major_mismatch("13.0", None) == ""
    why = cuda_major_mismatch("13.0", 12)
    assert "CUDA 12" in why and "CUDA 13.0" in why and "tensorrt-cu13" in why


def test_strict_fp32_turns_tf32_off_and_restores_it():
    from mitotally.runtime.backends.torch_backend import strict_fp32

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with strict_fp32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class RecordingDevice:
    """Test double for `on_device`: records which device is current while TensorRT objects are created."""

    def __init__(self):
        self.current, self.entered = None, []

    def __call__(self, device):
        import contextlib

        @contextlib.contextmanager
        def bound():
            before, self.current = self.current, torch.device(device)
            self.entered.append(self.current)
            try:
                yield
            finally:
                self.current = before

        return bound()


def fake_tensorrt(device_log: RecordingDevice, created: list):
    """A stand-in `tensorrt` module (TensorRT is not installed here) whose objects note the current device."""
    from enum import Enum
    from types import SimpleNamespace

    DataType = Enum("DataType", "FLOAT HALF")

    class Engine:
        def __init__(self, shapes):
            self.shapes = shapes

        def get_tensor_shape(self, name):
            return self.shapes[name]

        def get_tensor_dtype(self, name):
            return DataType.FLOAT

        def create_execution_context(self):
            created.append(("context", device_log.current))
            return SimpleNamespace(set_tensor_address=lambda name, ptr: None)

    class Runtime:
        def __init__(self, logger):
            created.append(("runtime", device_log.current))

        def deserialize_cuda_engine(self, data):
            created.append(("engine", device_log.current))
            return Engine(json.loads(data))

    Logger = type("Logger", (), {"WARNING": 0, "__init__": lambda self, level: None})
    return SimpleNamespace(Runtime=Runtime, Logger=Logger, DataType=DataType)


def test_tensorrt_backend_creates_engine_contexts_and_buffers_on_the_device_asked_for(model_dir, monkeypatch):
    """Logic only, with test doubles for TensorRT and the CUDA lane (no GPU here): every TensorRT object is
    created while the requested device is current."""
    from types import SimpleNamespace

    from mitotally.runtime.backends import tensorrt_backend as trt_backend

    device_log, created = RecordingDevice(), []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(device_log, created))
    monkeypatch.setattr(trt_backend, "on_device", device_log)
    monkeypatch.setattr(trt_backend.CudaLane, "create", staticmethod(
        lambda batch, tile, device: created.append(("buffers", device_log.current)) or SimpleNamespace(device_in=torch.zeros(1))))
    model, manifest = load_model(model_dir)
    outputs = ["feat_0"]
    shapes = {"tiles": [2, 1, manifest.tile, manifest.tile], "feat_0": [2, 4, 8, 8]}
    trt_backend.TensorRTBackend(json.dumps(shapes).encode(), model, manifest.tile, 2, outputs, "cpu", streams=2)
    assert [k for k, _ in created] == ["runtime", "engine", "buffers", "context", "buffers", "context"]
    assert all(dev == torch.device("cpu") for _, dev in created)  # the device passed in, current for every creation


def test_onnxruntime_providers():
    assert providers_for(torch.device("cpu"), ["CPUExecutionProvider"], True, None) == ["CPUExecutionProvider"]
    gpu = providers_for(torch.device("cuda:1"), ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], True, Path("/c"))
    assert [p[0] for p in gpu] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    assert gpu[0][1]["trt_fp16_enable"] and gpu[0][1]["trt_engine_cache_path"] == "/c" and gpu[0][1]["device_id"] == 1
    with pytest.raises(OnnxRuntimeUnavailable, match="onnxruntime-gpu"):
        providers_for(torch.device("cuda"), ["CPUExecutionProvider"], True, None)


def test_auto_order():
    assert auto_order("cuda")[0] == "tensorrt" and auto_order("cpu")[0] == "onnxruntime"
    assert auto_order("cpu")[-1] == auto_order("cuda")[-1] == "torch"


@pytest.mark.gpu
def test_cuda_stream_pipeline_matches_one_stream(model_dir, rng):
    """Three lanes in flight give exactly what one lane gives (same FP32 kernels, different scheduling)."""
    model, manifest = load_model(model_dir)
    tiles = _tiles(rng, 7)
    one = TorchBackend(model, manifest.tile, 2, "cuda", 0.05, streams=1).infer(tiles)
    three = TorchBackend(load_model(model_dir)[0], manifest.tile, 2, "cuda", 0.05, streams=3).infer(tiles)
    assert len(one) == len(three) == 7 and sum(map(len, one)) > 0
    for a, b in zip(one, three):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_allclose(a.mask_probs, b.mask_probs, atol=1e-4)


@pytest.mark.gpu
def test_fp16_channels_last_trunk_is_close_to_fp32(model_dir, rng):
    """The CUDA trunk under FP16 autocast + channels_last stays within 2% of FP32 (heads then run in FP32)."""
    model, manifest = load_model(model_dir)
    fp32 = TorchBackend(model, manifest.tile, 2, "cuda", 0.05)
    fp16 = TorchBackend(load_model(model_dir)[0], manifest.tile, 2, "cuda", 0.05, precision="fp16", channels_last=True)
    x = torch.from_numpy(_tiles(rng, 2))[:, None].cuda()
    with torch.inference_mode():
        ref = fp32.trunk(x)
        with torch.autocast("cuda", torch.float16):
            got = fp16.trunk(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(ref, got):
        assert (a - b.float()).abs().max().item() <= 0.02 * max(1.0, a.abs().max().item())
    dets = fp16.infer(_tiles(rng, 3))
    assert len(dets) == 3 and all(d.mask_probs.dtype == np.float32 for d in dets)


@pytest.mark.gpu
def test_tensorrt_engine_and_backend(model_dir, rng):
    """Build, gate, record, load: the FP16 engine's trunk is close to PyTorch; CUDA-graph replay gives the same detections."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    from mitotally.export.tensorrt_build import build_verified_engine
    from mitotally.runtime.backends.tensorrt_backend import TensorRTBackend
    from mitotally.runtime.backends.torch_backend import Trunk
    from mitotally.export.onnx_export import onnx_bytes
    from mitotally.runtime.manifest import weights_sha256

    model, manifest = load_model(model_dir)
    trunk = Trunk(model)
    data = onnx_bytes(trunk, manifest.tile, 2)
    images = [VerifyImage("a", render_em_like(ellipse_labels((256, 256), 8, rng, axes=(8, 20)), rng), None)]

    def agreement(engine):
        fp16 = TensorRTBackend(engine, load_model(model_dir)[0], manifest.tile, 2, trunk.output_names, "cuda", 0.05)
        return backend_agreement(TorchBackend(load_model(model_dir)[0], manifest.tile, 2, "cuda", 0.05), fp16, manifest, images)

    try:
        entry = build_verified_engine(model_dir, data, manifest.tile, 2, trunk.output_names, weights_sha256(model_dir), agreement)
    except Exception as e:  # the gate itself is under test: a random tiny model may fail it, say by how much
        pytest.fail(f"engine not recorded: {e}")
    engine = (model_dir / entry["file"]).read_bytes()
    backends = [TensorRTBackend(engine, load_model(model_dir)[0], manifest.tile, 2, trunk.output_names, "cuda", 0.05, streams=2, cuda_graph=g)
                for g in (False, True)]
    tiles = _tiles(rng, 2)
    lane = backends[0]._pipeline.lanes[0]
    lane.cuda.upload(tiles)
    lane.enqueue()
    torch.cuda.synchronize()
    with torch.inference_mode():
        ref = TorchBackend(model, manifest.tile, 2, "cuda", 0.05).trunk(torch.from_numpy(tiles)[:, None].cuda())
    for a, b in zip(ref, lane.outputs):
        assert (a - b.float()).abs().max().item() <= 0.02 * max(1.0, a.abs().max().item())
    plain, graphed = (b.infer(_tiles(np.random.default_rng(5), 5)) for b in backends)
    assert len(plain) == len(graphed) == 5
    for a, b in zip(plain, graphed):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    onnx = export_trunk(model, model_dir, manifest.tile, batch=1)
    record_export(model_dir, "onnx", onnx.to_dict())
    sel = select_backend(model_dir, "auto", BackendOptions(device="cuda"))
    assert sel.backend.name == "tensorrt" and sel.backend.batch == 2  # its own batch, not the CPU trunk's


def test_auto_falls_back_when_a_backend_fails_to_start_in_any_way(model_dir, monkeypatch):
    """A start-up fault that is not `BackendUnavailable` (permission, import, a bad dtype map) is a reason, not a crash."""
    from mitotally.runtime.backends import select

    real = select.make_backend

    def first_fails(name, *a, **kw):  # a stand-in fault injected into the onnxruntime start-up only
        if name == "onnxruntime":
            raise PermissionError("model.json is read-only")
        return real(name, *a, **kw)

    monkeypatch.setattr(select, "make_backend", first_fails)
    model, manifest = load_model(model_dir)
    chosen = select.select_backend(model_dir, "auto", BackendOptions(device="cpu", threads=1), model, manifest)
    assert chosen.backend.name == "torch"
    assert chosen.skipped["onnxruntime"] == "failed to start (PermissionError: model.json is read-only)"


def test_the_runtime_imports_nothing_from_export_or_trainer():
    import ast

    runtime = Path(__file__).resolve().parents[2] / "runtime"
    offenders = []
    for path in runtime.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                parts = n.lstrip(".").split(".")
                if "export" in parts[:2] or "trainer" in parts[:2]:
                    offenders.append(f"{path.relative_to(runtime)}: {n}")
    assert not offenders, offenders


def test_engine_dtype_map_covers_every_output_type_and_names_an_unknown_one():
    """A stand-in for the `tensorrt` module (not the real one: TensorRT is not installed here) with its DataType names."""
    from enum import Enum
    from types import SimpleNamespace

    from mitotally.runtime.backends.tensorrt_backend import TensorRTUnavailable, engine_dtypes, torch_dtype

    DataType = Enum("DataType", "FLOAT HALF INT8 INT32 BOOL UINT8 FP8")  # a TensorRT without BF16/INT64
    dtypes = engine_dtypes(SimpleNamespace(DataType=DataType))
    assert torch_dtype(dtypes, DataType.HALF, "feat_0") == torch.float16
    assert torch_dtype(dtypes, DataType.INT32, "count") == torch.int32
    assert len(dtypes) == 6
    with pytest.raises(TensorRTUnavailable, match="'feat_1' has TensorRT type DataType.FP8"):
        torch_dtype(dtypes, DataType.FP8, "feat_1")
