"""mito-export: ONNX trunk parity, the CLI contract, FP16 conversion, refusal without TensorRT, real model."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mitotally.export.cli import main
from mitotally.export.onnx_export import ONNX_FILE, export_trunk, onnx_bytes
from mitotally.export.fp16_onnx import fp16_onnx
from mitotally.export.verify import compare_outputs, first_tiles, load_images, synthetic_images, verify_export
from mitotally.runtime.backends.torch_backend import Trunk
from mitotally.runtime.manifest import load_manifest, load_model

REPO = Path(__file__).resolve().parents[2]


def _onnx_outputs(data: bytes, tiles: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    return session.run(None, {"tiles": tiles[:, None]})


def test_trunk_onnx_is_static_named_and_matches_pytorch(fast_model_dir, tmp_path):
    model, manifest = load_model(fast_model_dir)
    entry = export_trunk(model, tmp_path, manifest.tile, batch=2, opset=17)
    graph = onnx.load(tmp_path / entry.file)
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version >= 17
    assert [i.name for i in graph.graph.input] == ["tiles"]
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 1, manifest.tile, manifest.tile]  # static: no symbolic batch or size
    assert [o.name for o in graph.graph.output] == list(entry.outputs) == Trunk(model).output_names
    assert not {n.op_type for n in graph.graph.node} & {"If", "Loop", "NonMaxSuppression", "RoiAlign"}
    assert entry.sha256 == hashlib.sha256((tmp_path / entry.file).read_bytes()).hexdigest()

    tiles = first_tiles(synthetic_images(manifest, n=1)[0], manifest, manifest.tile, 2)
    with torch.inference_mode():  # float64 reference: see export/verify.py for why not FP32
        expected = [o.numpy() for o in Trunk(model).double()(torch.from_numpy(tiles)[:, None].double())]
    checks = compare_outputs(entry.outputs, expected, _onnx_outputs((tmp_path / entry.file).read_bytes(), tiles))
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_fp16_exact_weights_are_stored_as_fp16_losslessly(fast_model_dir):
    """Weights saved as FP16 are exact in FP16: the trunk file halves and its outputs do not change at all."""
    model, manifest = load_model(fast_model_dir)
    full = onnx_bytes(Trunk(model), manifest.tile, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    half = onnx_bytes(Trunk(model), manifest.tile, 1)
    assert len(half) < 0.6 * len(full)
    graph = onnx.load_from_string(half)
    onnx.checker.check_model(graph)
    assert sum(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer) > 10
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in graph.graph.output)
    tiles = first_tiles(synthetic_images(manifest, n=1)[0], manifest, manifest.tile, 1)
    with torch.inference_mode():
        expected = [o.numpy() for o in Trunk(model)(torch.from_numpy(tiles)[:, None])]
    got = _onnx_outputs(half, tiles)
    assert all(np.abs(a - b).max() < 1e-4 for a, b in zip(expected, got))
    # weights that FP16 cannot hold exactly are left in FP32 (the file is the plain export)
    assert len(full) > 0.9 * len(onnx_bytes(Trunk(load_model(fast_model_dir)[0]), manifest.tile, 1))


def test_compare_outputs_catches_a_wrong_value():
    e = [np.ones((2, 3), np.float32), np.zeros(4, np.float32)]
    a = [e[0] * (1 + 5e-4), e[1] + 5e-6]
    assert all(c.ok for c in compare_outputs(["a", "b"], e, a))
    a[0] = a[0].copy()
    a[0][1, 2] = 1.01
    checks = compare_outputs(["a", "b"], e, a)
    assert not checks[0].ok and checks[0].violations == 1 and checks[0].max_abs_error == pytest.approx(0.01, rel=1e-3)


def test_verification_rejects_an_onnx_from_other_weights(fast_model_dir):
    """A trunk that does not match the weights fails parity and the end-to-end check says why."""
    model, manifest = load_model(fast_model_dir)
    other = load_model(fast_model_dir)[0]
    with torch.no_grad():
        for p in other.backbone.fpn.parameters():
            p.add_(0.05 * torch.randn_like(p))
    trunk = Trunk(other)
    data = onnx_bytes(trunk, manifest.tile, 1)
    check = verify_export(model, manifest, data, manifest.tile, 1, trunk.output_names, synthetic_images(manifest, n=1), "synthetic", threads=1)
    assert not check.passed
    assert "trunk outputs outside" in check.failure() and "feat_0" in check.failure()


def test_cli_writes_verifies_and_records(fast_model_dir, tmp_path, capsys):
    out = tmp_path / "exported"
    source_manifest = (fast_model_dir / "model.json").read_bytes()
    assert main([str(fast_model_dir), "-o", str(out), "--batch", "2", "--threads", "1"]) == 0
    assert (fast_model_dir / "model.json").read_bytes() == source_manifest  # -o leaves the source untouched
    assert not (fast_model_dir / ONNX_FILE).exists()
    entry = load_manifest(out).exports["onnx"]
    assert entry["file"] == ONNX_FILE and entry["batch"] == 2 and entry["tile"] == 128 and entry["opset"] == 17
    assert entry["sha256"] == hashlib.sha256((out / ONNX_FILE).read_bytes()).hexdigest()
    v = entry["verification"]
    assert v["passed"] and v["end_to_end"]["f1@0.5"] >= 0.99 and v["end_to_end"]["source"] == "synthetic"
    assert v["end_to_end"]["instances_torch"] > 0 and all(t["violations"] == 0 for t in v["trunk"])
    # the copy is a complete model folder: it loads, and a second export into it is accepted
    load_model(out)
    assert main([str(out), "--batch", "1", "--threads", "1"]) == 0
    assert load_manifest(out).exports["onnx"]["batch"] == 1
    printed = capsys.readouterr().out
    assert "F1@0.5" in printed and "trunk parity" in printed
    # the recorded export serves the onnxruntime backend, until the weights change under it
    from mitotally.runtime.backends.select import BackendOptions, BackendUnavailable, select_backend

    assert select_backend(out, "auto", BackendOptions(device="cpu", threads=1)).backend.name == "onnxruntime"
    model, manifest = load_model(out)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    from mitotally.runtime.manifest import save_model

    save_model(out, manifest, model.state_dict())  # same manifest (exports kept), other weights
    with pytest.raises(BackendUnavailable, match="other weights"):
        select_backend(out, "onnxruntime", BackendOptions(device="cpu"))


def test_cli_fp16_without_tensorrt_refuses_after_writing_the_onnx(fast_model_dir, capsys):
    try:
        import tensorrt  # noqa: F401

        if torch.cuda.is_available():
            pytest.skip("TensorRT and a GPU are present: the engine is built (see the gpu tests)")
    except ImportError:
        pass
    assert main([str(fast_model_dir), "--fp16", "--batch", "2", "--threads", "1"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mito-export: --fp16 refused:") and "trunk.onnx was written and verified" in err[0]
    exports = load_manifest(fast_model_dir).exports
    assert exports["onnx"]["verification"]["passed"] and "tensorrt" not in exports


def test_cli_refuses_bad_inputs(fast_model_dir, tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "cannot load the model" in capsys.readouterr().err
    assert main([str(fast_model_dir), "--tile", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert main([str(fast_model_dir), "--opset", "13"]) == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"not the same weights")
    assert main([str(fast_model_dir), "-o", str(other), "--threads", "1"]) == 2
    assert "holds other weights" in capsys.readouterr().err


def test_fp16_onnx_for_strongly_typed_tensorrt(fast_model_dir):
    """TensorRT 11 path: FP16 weights, FP32 inputs/outputs, normalisation kept FP32; close to FP32 on ONNX Runtime CPU."""
    model, manifest = load_model(fast_model_dir)
    data = onnx_bytes(Trunk(model), manifest.tile, 1)
    half = fp16_onnx(data)
    graph = onnx.load_from_string(half)
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert all(v.type.tensor_type.elem_type == f32 for v in list(graph.graph.input) + list(graph.graph.output))
    conv_weights = {n.input[1] for n in graph.graph.node if n.op_type == "Conv"}
    inits = {i.name: i.data_type for i in graph.graph.initializer}
    assert conv_weights and all(inits.get(w, f16) == f16 for w in conv_weights)
    tiles = first_tiles(synthetic_images(manifest, n=1)[0], manifest, manifest.tile, 1)
    for a, b in zip(_onnx_outputs(data, tiles), _onnx_outputs(half, tiles)):
        assert np.abs(a - b).max() <= 0.02 * max(1.0, np.abs(a).max())


def test_load_images_reads_files_and_folders(tmp_path, rng):
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", rng.integers(0, 255, (40, 50), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_images([tmp_path])
    assert [i.name for i in images] == ["a.tif"] and images[0].array.shape == (40, 50)


def _trained_model_dir() -> Path | None:
    candidates = sorted(REPO.glob("models/*/model.json")) + sorted(REPO.glob("runs/lucchi-r18/**/model.json"))
    return candidates[0].parent if candidates else None


@pytest.mark.slow
def test_real_model_parity_on_a_real_tile(shared_data, tmp_path):
    """The trained model's trunk on a real Lucchi tile: parity within tolerance and the same instances."""
    model_dir = _trained_model_dir()
    if model_dir is None:
        pytest.skip("no trained model yet (expected models/*/model.json or runs/lucchi-r18/**/model.json)")
    model, manifest = load_model(model_dir)
    image = sorted((shared_data / "lucchi" / "train" / "images").glob("*.png"))[0]
    images = load_images([image])
    trunk = Trunk(model)
    data = onnx_bytes(trunk, manifest.tile, 1)
    check = verify_export(model, manifest, data, manifest.tile, 1, trunk.output_names, images, "files", threads=1)
    assert check.passed, check.failure()
    assert check.instances_torch > 0
    assert json.dumps(check.to_dict())  # serialisable into the manifest


def test_cli_without_the_onnx_package_says_what_to_install(fast_model_dir, capsys, monkeypatch):
    import sys as _sys

    monkeypatch.setitem(_sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    assert main([str(fast_model_dir)]) == 2
    assert "pip install 'mitotally[onnx]'" in capsys.readouterr().err
    assert not (fast_model_dir / ONNX_FILE).exists()


@pytest.mark.slow
def test_verification_and_calibration_frames_are_what_the_runtime_segments():
    """A full-size uncalibrated frame with a data bar is verified and calibrated on as mito-run segments it:
    without the bar and at the estimated scale (1.25 nm for the sample frame shown 4x larger); a calibrated
    frame keeps its pixel size."""
    import sys

    from PIL import Image

    from mitotally.export.verify import VerifyImage, as_the_runtime_sees

    sys.path.insert(0, str(REPO / "tests" / "runtime"))
    from mito_run_helpers import with_data_bar

    sample = Image.open(REPO / "samples" / "cardiac_tem_3.jpg").convert("L")
    big = np.asarray(sample.resize((sample.width * 4, sample.height * 4), Image.BILINEAR))
    model, manifest = load_model(REPO / "models" / "em-mito-r18")
    frame = VerifyImage("frame.png", with_data_bar(big, 440), None)
    calibrated = VerifyImage("cal.tif", big[:600, :800], 1.25)
    seen = as_the_runtime_sees([frame, calibrated], model, manifest)
    assert seen[0].array.shape[0] < big.shape[0] + 10 and seen[0].array.shape[1] == big.shape[1]
    assert seen[0].pixel_size_nm == pytest.approx(1.25)
    assert seen[1].pixel_size_nm == 1.25 and seen[1].array.shape == (600, 800)


def test_export_imports_nothing_from_the_trainer():
    """mito-export depends on the runtime only (matching lives in runtime/matching.py)."""
    import ast

    offenders = []
    for path in (REPO / "export").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [("." * node.level) + (node.module or "")] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.name}: {n}" for n in names if "trainer" in n.lstrip(".").split(".")[:2]]
    assert not offenders, offenders
