"""INT8 trunk: calibration tiles, the quantized graph, the CLI's agreement gate, and how backends pick it up."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import tifffile

from mitotally.export.cli import main
from mitotally.export.int8 import EXPORT_KEY, INT8_FILE, _batches, calibration_tiles
from mitotally.export.onnx_export import ONNX_FILE
from mitotally.export.verify import VerifyImage, synthetic_images
from mitotally.runtime.backends.select import BackendOptions, BackendUnavailable, select_backend
from mitotally.runtime.manifest import Manifest, load_manifest


def _image_folder(manifest: Manifest, folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for im in synthetic_images(manifest, n=n, seed=3):
        tifffile.imwrite(folder / f"{im.name}.tif", im.array)
    return folder


def test_calibration_tiles_take_every_image_in_turn_and_stop_at_the_cap(rng):
    manifest = Manifest(tile=64, overlap=16, pixel_size_nm=10.0, default_input_pixel_size_nm=10.0)
    small = VerifyImage("small", rng.integers(0, 255, (60, 60), dtype=np.uint8), 10.0)  # one tile
    large = VerifyImage("large", rng.integers(0, 255, (200, 200), dtype=np.uint8), 10.0)  # several tiles
    tiles = calibration_tiles([large, small], manifest, 64, max_tiles=3)
    assert tiles.shape == (3, 64, 64) and tiles.dtype == np.float32
    only_small = calibration_tiles([small], manifest, 64)
    # round robin: large's first tile, small's only tile, then large's second
    assert np.array_equal(tiles[1], only_small[0]) and not np.array_equal(tiles[0], tiles[2])
    with pytest.raises(ValueError, match="no calibration tiles"):
        calibration_tiles([], manifest, 64)


def test_calibration_batches_are_static_and_padded_with_real_tiles():
    tiles = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 4, 4), np.float32)
    blocks = list(_batches(tiles, 2))
    assert [b.shape for b in blocks] == [(2, 1, 4, 4)] * 3
    assert blocks[-1][0, 0, 0, 0] == 4 and blocks[-1][1, 0, 0, 0] == 0  # last block completed with tile 0


def test_int8_export_is_quantized_recorded_and_served(fast_model_dir, tmp_path, capsys, monkeypatch):
    import mitotally.export.cli as cli

    # random weights at score 0.05 keep arbitrary boxes, so INT8 and FP32 agree poorly (measured F1 0.64): the gate
    # is lowered for this plumbing test; the trained model passes the real one (test below)
    monkeypatch.setattr(cli, "MIN_AGREEMENT_F1", 0.0)
    images = _image_folder(load_manifest(fast_model_dir), tmp_path / "frames")
    assert main([str(fast_model_dir), "--int8", "--images", str(images), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "INT8 trunk vs FP32 PyTorch: F1@0.5" in printed
    exports = load_manifest(fast_model_dir).exports
    entry = exports[EXPORT_KEY]
    data = (fast_model_dir / INT8_FILE).read_bytes()
    assert entry["file"] == INT8_FILE and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["source_sha256"] == exports["onnx"]["sha256"] and entry["weights_sha256"] == exports["onnx"]["weights_sha256"]
    assert entry["agreement"]["instances_fp32"] > 0 and entry["agreement"]["instances_int8"] > 0
    assert entry["calibration"]["tiles"] > 0 and entry["calibration"]["images"] == ["synthetic_0.tif", "synthetic_1.tif"]
    # convolutions really are INT8: every Conv of the FP32 trunk became a QLinearConv with int8 weights
    graph = onnx.load_from_string(data).graph
    fp32_convs = [n for n in onnx.load_from_string((fast_model_dir / ONNX_FILE).read_bytes()).graph.node if n.op_type == "Conv"]
    int8_inits = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
    qconvs = [n for n in graph.node if n.op_type == "QLinearConv"]
    assert not [n for n in graph.node if n.op_type == "Conv"] and len(qconvs) == len(fp32_convs) > 0
    assert all(n.input[3] in int8_inits for n in qconvs)  # QLinearConv inputs: x, x_scale, x_zero_point, w, ...
    assert len(data) < 0.5 * (fast_model_dir / ONNX_FILE).stat().st_size  # int8 weights (+ FP32 biases and scales)

    sel = select_backend(fast_model_dir, "auto", BackendOptions(device="cpu", threads=1, precision="int8"))
    assert (sel.backend.name, sel.backend.precision) == ("onnxruntime", "int8")
    tiles = np.stack([np.full((128, 128), 0.5, np.float32), np.linspace(0, 1, 128 * 128, dtype=np.float32).reshape(128, 128)])
    assert len(sel.backend.infer(tiles)) == 2
    fp32 = select_backend(fast_model_dir, "auto", BackendOptions(device="cpu", threads=1))
    assert (fp32.backend.name, fp32.backend.precision) == ("onnxruntime", "fp32")  # never INT8 unless asked
    with pytest.raises(BackendUnavailable, match="only on the onnxruntime backend"):
        select_backend(fast_model_dir, "torch", BackendOptions(device="cpu", precision="int8"))

    # a tampered file, or one quantized from another trunk.onnx, is refused with the command that fixes it
    (fast_model_dir / INT8_FILE).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(BackendUnavailable, match="differs from the sha256"):
        select_backend(fast_model_dir, "onnxruntime", BackendOptions(device="cpu", precision="int8"))
    manifest = json.loads((fast_model_dir / "model.json").read_text())
    manifest["exports"][EXPORT_KEY]["source_sha256"] = "0" * 64
    (fast_model_dir / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(BackendUnavailable, match="another trunk.onnx.*--int8"):
        select_backend(fast_model_dir, "onnxruntime", BackendOptions(device="cpu", precision="int8"))


def test_int8_without_images_is_refused_before_any_work(fast_model_dir, capsys):
    assert main([str(fast_model_dir), "--int8"]) == 2
    assert "--int8 needs --images" in capsys.readouterr().err
    assert not (fast_model_dir / ONNX_FILE).exists()


def test_int8_below_the_agreement_floor_is_not_written(fast_model_dir, tmp_path, capsys, monkeypatch):
    import mitotally.export.cli as cli

    monkeypatch.setattr(cli, "MIN_AGREEMENT_F1", 1.01)  # no export can pass: exercises the refusal path
    images = _image_folder(load_manifest(fast_model_dir), tmp_path / "frames", n=1)
    assert main([str(fast_model_dir), "--int8", "--images", str(images), "--threads", "1"]) == 1
    assert "not written" in capsys.readouterr().err
    exports = load_manifest(fast_model_dir).exports
    assert not (fast_model_dir / INT8_FILE).exists() and EXPORT_KEY not in exports
    assert exports["onnx"]["verification"]["passed"]  # the FP32 trunk is still written and recorded


def test_precision_int8_without_an_int8_export_says_how_to_make_one(fast_model_dir):
    assert main([str(fast_model_dir), "--threads", "1"]) == 0
    with pytest.raises(BackendUnavailable, match=r"no INT8 trunk recorded; run `mito-export .* --int8 --images"):
        select_backend(fast_model_dir, "onnxruntime", BackendOptions(device="cpu", precision="int8"))
    with pytest.raises(BackendUnavailable, match="fp16 needs a CUDA GPU"):
        select_backend(fast_model_dir, "onnxruntime", BackendOptions(device="cpu", precision="fp16"))


REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "em-mito-r18"


def test_shipped_model_quantizes_and_passes_the_real_agreement_gate(tmp_path, capsys):
    """The trained model, calibrated on the two Lucchi sample slices: INT8 instances agree with FP32 at F1@0.5 >= 0.95."""
    import shutil

    model = tmp_path / "model"
    model.mkdir()
    for name in ("model.json", "model.safetensors"):
        shutil.copyfile(SHIPPED / name, model / name)
    samples = [str(REPO / "samples" / f"lucchi_slice_{n}.tif") for n in (150, 160)]
    assert main([str(model), "--int8", "--images", *samples, "--threads", "2"]) == 0, capsys.readouterr().err
    entry = load_manifest(model).exports[EXPORT_KEY]
    assert entry["agreement"]["min_f1"] == 0.95 and entry["agreement"]["f1@0.5"] >= 0.95, entry["agreement"]
    assert entry["agreement"]["instances_fp32"] >= 10  # the slices hold ~9-10 mitochondria each

