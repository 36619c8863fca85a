"""The training loop: a tiny model learns a synthetic image; resume equals an uninterrupted run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import write_yolo_dataset  # noqa: E402

from mitotally.runtime.backends.torch_backend import TorchBackend
from mitotally.runtime.manifest import load_model
from mitotally.runtime.normalize import normalize
from mitotally.runtime.segment import segment_scaled
from mitotally.trainer.config import TrainConfig
from mitotally.trainer.engine import lr_at, train
from mitotally.trainer.importers import load_dataset
from mitotally.trainer.metrics import evaluate

TINY = dict(fpn_channels=32, box_head_dim=64, mask_head_channels=32, box_batch_size_per_image=64)


def _config(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), pixel_size_nm=10.0, default_input_pixel_size_nm=10.0, tile=128, overlap=32,
                crop=128, batch=2, warmup=20, val_every=10**6, checkpoint_every=2, device="cpu", **TINY)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_tiny_model_overfits_one_synthetic_image(tmp_path, rng):
    data = write_yolo_dataset(tmp_path / "data", n_images=1, size=128, rng=rng, n_objects=5)
    out = train(_config(data, tmp_path / "model", steps=220, lr=2e-3, checkpoint_every=1000), on_message=lambda m: None)
    model, manifest = load_model(out)
    item = load_dataset(data)[0]
    backend = TorchBackend(model, tile=128, batch=1, score_threshold=0.05)
    inst = segment_scaled(backend, normalize(item.image, manifest.normalization), item.labels.shape, 1.0, overlap=32, score_threshold=0.5)
    metrics = evaluate([item.labels], [inst.to_label_image(item.labels.shape)])
    assert metrics["f1@0.5"] > 0.9, metrics


def test_resume_gives_the_same_state_as_an_uninterrupted_run(tmp_path, rng):
    data = write_yolo_dataset(tmp_path / "data", n_images=2, size=96, rng=rng, n_objects=3)
    full = train(_config(data, tmp_path / "full", steps=4, crop=96, val_last=0), on_message=lambda m: None)

    class Interrupt(Exception):
        pass

    def crash_at_step_3(row):
        if row["step"] == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(_config(data, tmp_path / "resumed", steps=4, crop=96, val_last=0), on_step=crash_at_step_3, on_message=lambda m: None)
    resumed = train(_config(data, tmp_path / "resumed", steps=4, crop=96, val_last=0, resume=True), on_message=lambda m: None)
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)


def test_lr_warms_up_then_decays_with_progress():
    cfg = TrainConfig(data="x", out="y", lr=1e-3, warmup=10)
    assert lr_at(0, 0.0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, 0.0, cfg) == pytest.approx(1e-3)
    assert lr_at(100, 0.5, cfg) == pytest.approx(1e-3 * (0.02 + 0.98 * 0.5))
    assert lr_at(100, 1.0, cfg) == pytest.approx(2e-5)


def test_train_requires_a_duration(tmp_path, rng):
    data = write_yolo_dataset(tmp_path / "data", n_images=1, size=64, rng=rng, n_objects=1)
    with pytest.raises(ValueError, match="--steps"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "o"), **TINY), on_message=lambda m: None)


def test_each_data_folder_is_split_on_its_own(tmp_path, rng):
    from mitotally.trainer.engine import load_and_split

    a = write_yolo_dataset(tmp_path / "a", n_images=5, size=64, rng=rng, n_objects=2)
    b = write_yolo_dataset(tmp_path / "b", n_images=3, size=64, rng=rng, n_objects=2)
    cfg = TrainConfig(data=[str(a), str(b)], out=str(tmp_path / "o"), val_last=[2, 1], data_share=[0.5, 0.5])
    train_items, val_items, groups = load_and_split(cfg, on_message=lambda m: None)
    assert groups == [0, 0, 0, 1, 1]
    names = sorted(it.name for it in load_dataset(a))
    assert [it.name for it in train_items[:3]] == names[:3] and [it.name for it in val_items[:2]] == names[3:]
    assert len(val_items) == 3  # the last 2 of a, the last 1 of b
    with pytest.raises(ValueError, match="data_share has 1 values for 2 data folders"):
        load_and_split(TrainConfig(data=[str(a), str(b)], out="o", data_share=[1.0]), on_message=lambda m: None)


def test_init_from_our_checkpoint_or_model_keeps_every_tensor_and_a_foreign_state_dict_reinitialises_class_heads(tmp_path, rng):
    from mitotally.runtime.model import build_model
    from mitotally.trainer.engine import load_init, model_config_from

    data = write_yolo_dataset(tmp_path / "data", n_images=1, size=64, rng=rng, n_objects=2)
    cfg = _config(data, tmp_path / "run", steps=2, crop=64, val_last=0)
    out = train(cfg, on_message=lambda m: None)
    trained = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    for source in (out / "checkpoints" / "last.pt", out):  # a checkpoint, a model folder
        fresh = build_model(model_config_from(cfg), cfg.tile)
        assert load_init(fresh, str(source)) == []
        got = fresh.state_dict()
        for key, value in trained.items():
            torch.testing.assert_close(got[key], value, msg=f"{source}: {key}")
    plain = tmp_path / "foreign.pth"  # a bare state dict, e.g. torchvision's: its class heads do not fit ours
    torch.save(trained, plain)
    skipped = load_init(build_model(model_config_from(cfg), cfg.tile), str(plain))
    assert skipped and all("class-specific head" in s for s in skipped)


@pytest.mark.slow
def test_per_folder_gap_test_block_pixel_size_and_a_validation_only_folder(tmp_path, rng):
    from mitotally.trainer.engine import load_and_split

    a = write_yolo_dataset(tmp_path / "a", n_images=8, size=64, rng=rng, n_objects=2)
    b = write_yolo_dataset(tmp_path / "b", n_images=4, size=64, rng=rng, n_objects=2)
    cfg = TrainConfig(data=[str(a), str(b)], out=str(tmp_path / "o"), val_last=[2, 0], val_gap=[1, 0], test_last=[2, 1],
                      data_share=[1.0, 0.0], input_pixel_size_nm=[5.0, 5.9])
    train_items, val_items, groups = load_and_split(cfg, on_message=lambda m: None)
    names_a = sorted(it.name for it in load_dataset(a))
    names_b = sorted(it.name for it in load_dataset(b))
    assert [it.name for it in train_items] == names_a[:3] and groups == [0, 0, 0]  # 3 train | 1 gap | 2 val | 2 test
    assert [it.name for it in val_items] == names_a[4:6] + names_b[:3]  # b only validates, its last image is test
    assert {it.pixel_size_nm for it in train_items} == {5.0}
    assert [it.pixel_size_nm for it in val_items] == [5.0, 5.0, 5.9, 5.9, 5.9]
