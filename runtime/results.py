"""The per-input result: what one file produced, as written to `records/<key>.json`.

A record is the unit of truth of a run: the tables (`objects.csv`,
`images.csv`, `predictions.json`) are rebuilt from the records, so they always
agree with the per-image outputs, whatever crashed when.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

RECORD_VERSION = 1

OK, FAILED = "ok", "failed"


@dataclass
class ImageResult:
    key: str  # input path relative to the input root: the `image` column and the record's name
    path: str  # the input file as given (absolute)
    status: str = OK  # "ok" or "failed"
    error: str = ""  # one line when failed
    planes: int = 0  # 2-D planes segmented (1 unless a TIFF stack)
    image_rows: list[dict] = field(default_factory=list)  # images.csv rows, one per plane
    object_rows: list[dict] = field(default_factory=list)  # objects.csv rows, one per mitochondrion
    annotations: list[dict] = field(default_factory=list)  # COCO annotations (ids set when tables are built)
    outputs: list[str] = field(default_factory=list)  # files written, relative to the output folder
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    warnings: list[str] = field(default_factory=list)
    source: dict = field(default_factory=dict)  # the input as processed: size, mtime_ns (+ caller's extra keys, e.g. sha256)
    name: str = ""  # names labels/<name>.tif ... (see `names`); "" = the key, as records before names had it
    skipped: bool = False  # True when a finished record was reused instead of recomputed (not saved)

    def __post_init__(self) -> None:
        self.name = self.name or self.key

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def n_objects(self) -> int:
        return len(self.object_rows)

    def to_record(self) -> dict:
        d = asdict(self)
        d.pop("skipped")
        return {"record_version": RECORD_VERSION, **d}

    @classmethod
    def from_record(cls, d: dict) -> "ImageResult":
        d = dict(d)
        version = d.pop("record_version", None)
        if version != RECORD_VERSION:
            raise ValueError(f"unsupported record version {version!r} (expected {RECORD_VERSION})")
        names = set(cls.__dataclass_fields__) - {"skipped"}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown record keys: {sorted(unknown)}")
        return cls(**d)


def failed(key: str, path: str, error: str, timings: dict[str, float] | None = None, source: dict | None = None,
           name: str = "") -> ImageResult:
    """A failed input: one images.csv row with status and error, nothing else (its name stays held)."""
    row = {"image": key, "plane": "", "status": FAILED, "error": error, "path": path}
    return ImageResult(key, path, FAILED, error, 0, [row], timings=dict(timings or {}), source=dict(source or {}), name=name)
