"""Fine-tune: the mito-train command for the current model, run as a subprocess, polled for progress."""
from __future__ import annotations

import time

import numpy as np
import pytest
from plugin_helpers import ellipse_labels, render_em_like
from mitotally.napari.finetune import FineTune
from mitotally.napari.training_set import add_to_training_set
from mitotally.runtime.manifest import load_manifest
from mitotally.runtime.pixel_size import PixelSize
from mitotally.runtime.segmenter import Segmenter, default_model_dir
from mitotally.trainer.cli import get_args_parser


def _option(cmd, name):
    return cmd[cmd.index(name) + 1]


def test_the_command_carries_the_init_models_architecture_and_scale(tiny_model_dir, tmp_path):
    cmd = FineTune(tmp_path / "train", tmp_path / "new", tiny_model_dir, minutes=5).command()
    m = load_manifest(tiny_model_dir)
    assert cmd[1:3] == ["-m", "mitotally.trainer.cli"]
    assert _option(cmd, "--init") == str(tiny_model_dir) and _option(cmd, "-o") == str(tmp_path / "new")
    assert _option(cmd, "--fpn-channels") == str(m.model.fpn_channels) and _option(cmd, "--backbone") == m.model.backbone
    assert float(_option(cmd, "--pixel-size")) == m.pixel_size_nm and int(_option(cmd, "--tile")) == m.tile
    assert _option(cmd, "--time-budget") == "300"
    args = get_args_parser().parse_args(cmd[3:])  # mito-train accepts every option
    assert args.init == str(tiny_model_dir)
    shipped = FineTune(tmp_path / "train", tmp_path / "new").command()
    assert _option(shipped, "--init") == str(default_model_dir())


def test_settings_mito_train_cannot_carry(tiny_model_dir, tmp_path):
    import json
    import shutil

    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    manifest = json.loads((model / "model.json").read_text())
    manifest["model"]["rpn_post_nms_top_n_test"] = 123  # inference only: allowed, and said
    (model / "model.json").write_text(json.dumps(manifest))
    assert FineTune(tmp_path / "train", tmp_path / "new", model).not_carried() == ["rpn_post_nms_top_n_test"]
    FineTune(tmp_path / "train", tmp_path / "new", model).command()
    manifest["model"]["mask_head_layers"] = 2  # shapes the weights: refused
    (model / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="mask_head_layers"):
        FineTune(tmp_path / "train", tmp_path / "new", model).command()


def labelled_frame(seed: int, shape=(256, 256)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = ellipse_labels(shape, 6, rng, axes=(8, 20))
    return render_em_like(labels, rng), labels


def wait(training, timeout_s: float = 300.0):
    seen = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        progress = training.poll()
        seen.append(progress)
        if progress.finished:
            return progress, seen
        time.sleep(0.5)
    training.cancel()
    raise AssertionError(f"mito-train did not finish in {timeout_s} s: {seen[-1].text}")


@pytest.mark.slow  # about a minute on 2 busy cores: mostly mito-train starting up
def test_a_short_fine_tune_writes_a_model_the_runtime_loads(tiny_model_dir, tmp_path):
    image, labels = labelled_frame(1)
    add_to_training_set(tmp_path / "train", "a", image, labels, PixelSize.square(10.0, "imagej"))
    training = FineTune(tmp_path / "train", tmp_path / "new", tiny_model_dir, steps=2, device="cpu").start()
    progress, seen = wait(training)
    assert progress.ok, progress.text
    assert training.model_dir == tmp_path / "new"
    assert (tmp_path / "new" / "mito-train.log").is_file()
    assert load_manifest(tmp_path / "new").model == load_manifest(tiny_model_dir).model  # the same architecture
    Segmenter(training.model_dir, backend="torch", device="cpu")  # loads


def test_a_failing_run_says_why(tiny_model_dir, tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)  # no labels: mito-train refuses
    training = FineTune(tmp_path / "train", tmp_path / "new", tiny_model_dir, steps=2).start()
    progress, _ = wait(training, 120)
    assert progress.finished and not progress.ok and "mito-train stopped" in progress.text
