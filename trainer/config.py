"""The resolved configuration of one `mito-train` run (saved with checkpoints and the model)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class TrainConfig:
    data: str | list[str]  # one labelled folder, or several mixed (see data_share, val_last)
    out: str
    format: str = "auto"
    backbone: str = "resnet18"
    norm: str = "group"
    fpn_channels: int = 128
    box_head_dim: int = 256
    mask_head_channels: int = 128
    box_batch_size_per_image: int = 128
    pixel_size_nm: float = 10.0  # the model's pixel size
    input_pixel_size_nm: float | list[float] | None = None  # override for the data (else file metadata, else default); a list gives one per folder
    default_input_pixel_size_nm: float = 5.0
    tile: int = 512
    overlap: int = 128
    crop: int = 384
    batch: int = 2
    steps: int | None = None
    epochs: float | None = None
    time_budget: float | None = None  # seconds
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup: int = 200
    grad_clip: float = 5.0
    data_share: list[float] | None = None  # fraction of training crops from each data folder (default: by image area); 0 = validation only
    val_last: int | list[int] | None = None  # hold out the last N images (by name) of each folder: a block of slices
    val_gap: int | list[int] = 0  # images between the training and validation blocks left out of both (z-stacks: >= 20)
    test_last: int | list[int] = 0  # the last N images of each folder are never loaded: a test block that chooses nothing
    scale_jitter: float = 0.15  # crops are zoomed by exp(+- scale_jitter) around the model's pixel size
    invert: float = 0.0  # probability of inverting a crop's intensities
    val_fraction: float = 0.15
    val_every: int | None = None  # steps; default one epoch
    checkpoint_every: int = 100
    resume: bool = False
    device: str = "auto"
    seed: int = 0
    init: str | None = None
    threads: int | None = None
    min_instance_area: int = 6
    amp: bool = True

    @property
    def data_folders(self) -> list[str]:
        return [self.data] if isinstance(self.data, str) else list(self.data)

    def per_folder(self, key: str) -> list:
        """A per-folder option for each data folder: one value applies to every folder, a list gives one each."""
        value = getattr(self, key)
        n = len(self.data_folders)
        if not isinstance(value, list):
            return [value] * n
        if len(value) != n:
            raise ValueError(f"{key} has {len(value)} values for {n} data folders")
        return list(value)

    def val_last_per_folder(self) -> list[int | None]:
        return self.per_folder("val_last")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**d)
