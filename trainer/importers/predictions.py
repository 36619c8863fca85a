"""Predictions to score against ground truth: label images, or COCO predictions/results JSON with scores.

Accepted `PRED` paths:
- a folder of label images `<stem>.tif/.tiff/.png` (also `<stem>_labels.tif`, `<stem>_masks.png` ...);
- a `mito-run` output folder: its `predictions.json` when present (it has scores), else its `labels/`;
- a COCO JSON: a dict with `images` (`file_name`) and `annotations` (`segmentation` RLE or polygons, `score`),
  or a bare results list (`image_id`, `segmentation`, `score`), whose ids are taken from the ground-truth COCO file.
Predictions are matched to ground-truth images by file stem. `mito-run` names
label images by the input's stem (`labels/sub/x.tif` for `sub/x.png`), with the
extension kept where two inputs share a stem (`labels/sub/x.png.tif`), and its
COCO `file_name` is the input's path (`sub/x.png`): sub-folders are searched and
an inner image extension is dropped, so all three match `x`. Of a TIFF stack, only plane 1 is
scored (the ground truth is read from a file's first plane). Masks are decoded
one image at a time, so a folder of full frames is never held at once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ...runtime.image_io import IMAGE_SUFFIXES
from ...runtime.instances import Instances
from .coco import SizeError, decode_segmentation
from .label_images import LOSSLESS, LabelReadError, label_files, label_stem, read_label_image, to_instance_labels
from .rasterize import region_from_mask


class PredictionError(Exception):
    """One image's prediction cannot be used; the message names the file and the cause."""


@dataclass
class Prediction:
    labels: np.ndarray  # HxW instance ids for matching, painted by mito-run's rule (`instances.paint_instances`)
    instances: Instances  # every scored instance, for COCO AP
    notes: list[str]


class LabelImagePredictions:
    """Label images in a folder, keyed by stem (label suffixes such as `_labels` stripped)."""

    kind = "label images"

    def __init__(self, folder: Path):
        self.folder = folder
        files = label_files(folder)
        stems = {_stem(p.name) for p in files}
        self.files: dict[str, Path] = {}
        self.notes: list[str] = []
        for p in files:  # one key per file: `x_labels.tif` answers to `x` unless an `x.*` exists too
            stem = _stem(p.name)
            base = label_stem(Path(stem + p.suffix))
            key = base if base and base not in stems else stem
            if key in self.files:
                self.notes.append(f"{p}: same name {key!r} as {self.files[key]} (ignored)")
                continue
            self.files[key] = p

    @property
    def names(self) -> set[str]:
        return set(self.files)

    def load(self, name: str, shape: tuple[int, int], score_threshold: float) -> Prediction:
        path = self.files[name]
        try:
            raw, notes = read_label_image(path)
            if raw.shape[:2] != tuple(shape):
                raise PredictionError(f"{path}: prediction {raw.shape[1]}x{raw.shape[0]} vs ground truth {shape[1]}x{shape[0]}")
            labels, found = to_instance_labels(raw)
        except LabelReadError as exc:
            raise PredictionError(f"{path}: {exc}") from None
        from ..metrics import label_instances

        return Prediction(labels, label_instances(labels), notes + [f"{kind}: {detail}" for kind, detail in found])


class CocoPredictions:
    """COCO predictions JSON (as `mito-run` writes) or a bare COCO results list."""

    kind = "COCO JSON"

    def __init__(self, path: Path, gt_ids: dict[int, str] | None = None):
        self.path = path
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise PredictionError(f"{path}: cannot read JSON: {type(exc).__name__}: {exc}".splitlines()[0]) from None
        self.notes: list[str] = []
        if isinstance(doc, dict) and isinstance(doc.get("images"), list) and isinstance(doc.get("annotations"), list):
            images = [im for im in doc["images"] if isinstance(im, dict) and "id" in im and "file_name" in im]
            later = [im for im in images if isinstance(im.get("plane"), int) and im["plane"] > 1]
            if later:
                self.notes.append(f"{path}: {len(later)} image entries for stack planes after the first (not scored)")
            ids = {im["id"]: _stem(im["file_name"]) for im in images if im not in later}
            anns = doc["annotations"]
        elif isinstance(doc, list):
            if gt_ids is None:
                raise PredictionError(f"{path}: a COCO results list has only image ids; the ground truth must be a COCO file to map them to images")
            ids, anns = gt_ids, doc
        else:
            raise PredictionError(f"{path}: neither a COCO predictions file (images + annotations) nor a results list")
        self.by_name: dict[str, list[dict]] = {name: [] for name in ids.values()}
        if len(self.by_name) < len(ids):
            self.notes.append(f"{path}: several images share a file stem; their predictions are pooled per stem")
        for a in anns:
            if isinstance(a, dict) and a.get("image_id") in ids:
                self.by_name[ids[a["image_id"]]].append(a)

    @property
    def names(self) -> set[str]:
        return set(self.by_name)

    def load(self, name: str, shape: tuple[int, int], score_threshold: float) -> Prediction:
        h, w = shape
        offsets, masks, scores, notes = [], [], [], []
        unscored = 0
        for a in self.by_name[name]:
            try:
                mask = decode_segmentation(a.get("segmentation"), h, w)
            except SizeError as exc:
                raise PredictionError(f"{self.path}: image {name}: {exc}") from None
            except (ValueError, TypeError, KeyError) as exc:
                notes.append(f"annotation {a.get('id')}: {exc} (skipped)")
                continue
            region = region_from_mask(mask)
            if region is None:
                continue
            if "score" not in a:
                unscored += 1
            offsets.append(region.offset)
            masks.append(region.mask)
            scores.append(float(a.get("score", 1.0)))
        if unscored:
            notes.append(f"{unscored} annotation(s) without a score (read as 1.0)")
        inst = Instances(np.array(offsets, np.int64).reshape(-1, 2), masks, np.array(scores, np.float32))
        kept = inst[inst.scores >= score_threshold] if len(inst) else inst
        return Prediction(kept.to_label_image(shape, dtype=np.int32), inst, notes)


def _stem(file_name: str) -> str:
    """`sub/x.png` -> `x`; `x.png.tif` (mito-run's label image of `x.png` when `x.tif` is an input too) -> `x` too."""
    name = PurePosixPath(str(file_name).replace("\\", "/")).name
    for _ in range(2):
        suffix = PurePosixPath(name).suffix
        if suffix.lower() not in IMAGE_SUFFIXES + (".json",):
            break
        name = name[: -len(suffix)]
    return name


def open_predictions(path: Path, gt_ids: dict[int, str] | None = None) -> LabelImagePredictions | CocoPredictions:
    """The prediction source at `path` (see the module docstring for what is accepted)."""
    path = Path(path)
    if not path.exists():
        raise PredictionError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise PredictionError(f"{path}: predictions are a folder of label images or a COCO .json file")
        return CocoPredictions(path, gt_ids)
    if (path / "predictions.json").is_file():
        return CocoPredictions(path / "predictions.json", gt_ids)
    if (path / "labels").is_dir() and not any(p.is_file() and p.suffix.lower() in LOSSLESS for p in path.iterdir()):
        path = path / "labels"
    src = LabelImagePredictions(path)
    if not src.files:
        raise PredictionError(f"{path}: no label images (.tif/.tiff/.png) and no predictions.json")
    return src
