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
    input_pixel_size_nm: float | None = None  # override for the data (else file metadata, else default)
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
    data_share: list[float] | None = None  # fraction of training crops from each data folder (default: by image area)
    val_last: int | list[int] | None = None  # hold out the last N images (by name) of each folder: a block of slices
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

    def val_last_per_folder(self) -> list[int | None]:
        """`val_last` for each data folder: one number applies to every folder, a list gives one each."""
        n = len(self.data_folders)
        if self.val_last is None or isinstance(self.val_last, int):
            return [self.val_last] * n
        if len(self.val_last) != n:
            raise ValueError(f"val_last has {len(self.val_last)} values for {n} data folders")
        return list(self.val_last)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**d)
