"""`mito-eval`: score predicted instance masks against ground truth with the field's metrics."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .importers import FORMATS, Dataset, DatasetError, detect_format, read_dataset
from .importers.label_images import LABEL_ONLY, is_label_only, read_label_only
from .importers.predictions import PredictionError, open_predictions
from .metrics import evaluate, image_stats, label_instances, match_image

EXAMPLES = """
examples:
  mito-eval --gt ../shared/data/lucchi/train --pred runs/lucchi_pred/labels -o metrics.json
  mito-eval --gt my_labels/ --pred out/predictions.json          # mito-run's COCO output (scores give a proper AP)
  mito-eval --gt annotations/instances_val.json --pred results.json --score-threshold 0.5

metrics: pooled over all images (StarDist matching_dataset): precision/recall/F1 at IoU 0.5 and 0.75,
panoptic quality, mSA (mean accuracy TP/(TP+FP+FN) over IoU 0.5:0.05:0.95); COCO mask AP/AP50/AP75
(pycocotools, maxDets >= 1000); foreground pixel IoU; per-image count error (pred - GT); median relative
area error of pairs matched at IoU 0.5; recall of GT objects by size (<500, 500-2000, >=2000 px2; in um2
<0.0125, 0.0125-0.05, >=0.05, the same at 5 nm, when the pixel size is known) and of GT objects touching
the image border vs interior ones. A GT image without a prediction counts as all false negatives.

ground truth as label images only (no raw images beside them, e.g. exported from napari): read as
such by default, or with --gt-format labels-only; each file is matched to a prediction by its stem.
A GT image with no objects is named in the report; when every GT image is empty or has no
prediction, mito-eval stops with an error instead of scoring against nothing.
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mito-eval", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, help="ground truth: a labelled dataset folder in any mito-train format, or a COCO .json")
    p.add_argument("--pred", required=True, help="predictions: a folder of label images (<stem>.tif/.png), a mito-run output folder, or a COCO predictions/results .json")
    p.add_argument("-o", "--out", help="write all metrics and per-image rows to this JSON file")
    p.add_argument("--gt-format", default="auto", choices=["auto", *FORMATS, LABEL_ONLY],
                   help="force the ground-truth format (default: auto-detect); labels-only: a folder of label images "
                        "without raw images, one per image, matched to predictions by stem")
    p.add_argument("--score-threshold", type=float, default=0.0,
                   help="for COCO predictions: drop instances scoring below this before matching (AP always uses all); default 0 keeps every prediction given")
    p.add_argument("--pixel-size", type=float, metavar="NM",
                   help="GT pixel size in nm, for recall by size in um2 (default: the GT files' own calibration when they all carry the same)")
    p.add_argument("--per-image", action="store_true", help="print the per-image table even for many images")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    return p


def _gt_coco_ids(gt: Path) -> dict[int, str] | None:
    """image id -> stem of a COCO ground truth, for prediction files that carry only ids."""
    from .importers.coco import coco_files, load_coco_json

    try:
        files = coco_files(gt)
    except OSError:
        return None
    if len(files) != 1:
        return None
    doc = load_coco_json(files[0])
    return {im["id"]: Path(str(im["file_name"]).replace("\\", "/")).stem for im in doc["images"] if isinstance(im, dict) and "id" in im and "file_name" in im}


def read_ground_truth(gt: Path, gt_format: str = "auto") -> Dataset:
    """The ground truth: any mito-train format, or a folder of label images alone (`labels-only`).

    A label-only folder is also what `auto` and `labels` find when no image/label pairs exist but the
    files look like labels: read as labelled images they would be images with no objects at all.
    """
    gt = Path(gt)
    if gt_format == LABEL_ONLY or (gt_format == "labels" and is_label_only(gt)):
        if not gt.is_dir():
            raise DatasetError(f"{gt}: labels-only ground truth is a folder of label images")
        return read_label_only(gt)
    if gt_format == "auto" and gt.is_dir():
        try:
            detect_format(gt)
        except DatasetError as exc:
            if is_label_only(gt):
                return read_label_only(gt)
            raise DatasetError(f"{exc}\n(a folder of label images without raw images: --gt-format {LABEL_ONLY})") from None
    return read_dataset(gt, gt_format)


def run_eval(gt: Path, pred: Path, gt_format: str = "auto", score_threshold: float = 0.0, pixel_size_nm: float | None = None) -> dict:
    """Everything `mito-eval` reports, as one JSON-ready dict. Raises DatasetError / PredictionError when an input is
    unusable, including ground truth with nothing to score against (every image empty or without a prediction)."""
    ds = read_ground_truth(gt, gt_format)
    if not ds.items:
        skipped = "".join(f"\n  {p}" for p in ds.skipped[:10])
        raise DatasetError(f"{gt}: no usable ground-truth images" + skipped)
    source = open_predictions(pred, _gt_coco_ids(Path(gt)) if ds.format == "coco" else None)
    gts, labels, instances, matches, rows = [], [], [], [], []
    for it in ds.items:
        shape = it.labels.shape
        status, notes = "ok", []
        if it.name not in source.names:
            status = "missing"
            p_lab, p_inst = np.zeros(shape, np.int32), None
        else:
            try:
                p = source.load(it.name, shape, score_threshold)
                p_lab, p_inst, notes = p.labels, p.instances, p.notes
            except PredictionError as exc:
                status = f"error: {exc}"
                p_lab, p_inst = np.zeros(shape, np.int32), None
        gts.append(it.labels)
        labels.append(p_lab)
        instances.append(p_inst if p_inst is not None else label_instances(p_lab))
        matches.append(match_image(it.labels, p_lab))
        s = image_stats(matches[-1], 0.5)
        gt_n = s.tp + s.fn
        if gt_n == 0:
            notes = ["ground truth has no objects (any prediction here is a false positive)", *notes]
        rows.append({"image": it.name, "status": status, "gt": gt_n, "pred": s.tp + s.fp, "count_error": s.fp - s.fn,
                     "tp@0.5": s.tp, "fp@0.5": s.fp, "fn@0.5": s.fn, "f1@0.5": s.f1, "gt_empty": gt_n == 0, "notes": notes})
    _refuse_nothing_to_score(gt, rows)
    if pixel_size_nm is None:
        sizes = {it.pixel_size_nm for it in ds.items}
        pixel_size_nm = sizes.pop() if len(sizes) == 1 else None
    metrics = evaluate(gts, labels, instances, matches=matches, pixel_size_nm=pixel_size_nm)
    metrics.pop("count_error")  # the per-image rows carry it, next to the image name
    gt_names = {it.name for it in ds.items}
    return {
        "gt": str(gt), "pred": str(pred), "gt_format": ds.format, "pred_kind": source.kind, "score_threshold": score_threshold,
        "pixel_size_nm": pixel_size_nm, "metrics": metrics,
        "missing_predictions": [r["image"] for r in rows if r["status"] == "missing"],
        "empty_ground_truth": [r["image"] for r in rows if r["gt_empty"]],
        "failed_predictions": {r["image"]: r["status"][7:] for r in rows if r["status"].startswith("error")},
        "unmatched_predictions": sorted(source.names - gt_names),
        "pred_notes": list(source.notes),
        "gt_skipped": [str(p) for p in ds.skipped],
        "gt_warnings": len(ds.problems) - len(ds.skipped),
        "per_image": rows,
    }


def _refuse_nothing_to_score(gt: Path, rows: list[dict]) -> None:
    """Scores against empty ground truth mean nothing (a perfect prediction would get precision 0): stop instead."""
    if any(not r["gt_empty"] and r["status"] == "ok" for r in rows):
        return
    empty = [r["image"] for r in rows if r["gt_empty"]]
    unmatched = [r["image"] for r in rows if not r["gt_empty"]]
    parts = [f"{len(empty)} have no objects ({', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''})"] if empty else []
    if unmatched:
        parts.append(f"{len(unmatched)} have no usable prediction ({', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}; "
                     "predictions are matched by file stem)")
    raise DatasetError(f"{gt}: nothing to score against: of {len(rows)} ground-truth image(s), " + " and ".join(parts)
                       + f". Is --gt the ground truth? A folder of label images alone is read with --gt-format {LABEL_ONLY}.")


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


MAIN_ROWS = (("images", "{:d}"), ("gt_instances", "{:d}"), ("pred_instances", "{:d}"), ("precision@0.5", "{:.4f}"), ("recall@0.5", "{:.4f}"),
             ("f1@0.5", "{:.4f}"), ("precision@0.75", "{:.4f}"), ("recall@0.75", "{:.4f}"), ("f1@0.75", "{:.4f}"),
             ("panoptic_quality@0.5", "{:.4f}"), ("mSA", "{:.4f}"), ("mask_AP", "{:.4f}"), ("mask_AP50", "{:.4f}"), ("mask_AP75", "{:.4f}"),
             ("foreground_iou", "{:.4f}"), ("mean_abs_count_error", "{:.2f}"), ("median_area_error", "{:.4f}"),
             ("median_area_bias", "{:+.4f}"))


def print_report(report: dict, console: Console, per_image: bool) -> None:
    m = report["metrics"]
    table = Table(title=f"mito-eval: {report['pred']} vs {report['gt']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, fmt in MAIN_ROWS:
        v = m.get(key)
        table.add_row(key, "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v))
    console.print(table)
    recall = Table(title="recall at IoU 0.5 by ground-truth object")
    for col in ("objects", "GT", "recall"):
        recall.add_column(col, justify="left" if col == "objects" else "right")
    cells = [*m.get("recall_by_size_px", {}).items(), *m.get("recall_by_size_um2", {}).items(),
             ("touching the border", m.get("recall_border")), ("interior", m.get("recall_interior"))]
    for name, c in cells:
        if c:
            r = c["recall"]
            recall.add_row(name, str(c["gt"]), "n/a" if r is None or not math.isfinite(r) else f"{r:.3f}")
    console.print(recall)
    rows = report["per_image"]
    if per_image or len(rows) <= 20:
        t = Table(title="per image (IoU 0.5)")
        for col in ("image", "gt", "pred", "count error", "TP", "FP", "FN", "F1", "status"):
            t.add_column(col, justify="left" if col in ("image", "status") else "right")
        for r in rows:
            t.add_row(r["image"], str(r["gt"]), str(r["pred"]), f"{r['count_error']:+d}", str(r["tp@0.5"]), str(r["fp@0.5"]), str(r["fn@0.5"]),
                      f"{r['f1@0.5']:.3f}", (r["status"] if r["status"] == "ok" else f"[red]{r['status']}[/]")
                      + (" [yellow](no GT objects)[/]" if r["gt_empty"] else ""))
        console.print(t)
    if report["empty_ground_truth"]:
        console.print(f"[yellow]warning[/]: {len(report['empty_ground_truth'])} GT image(s) have no objects (their predictions are all "
                      "false positives): " + ", ".join(report["empty_ground_truth"][:20])
                      + (" ..." if len(report["empty_ground_truth"]) > 20 else ""), highlight=False)
    if report["missing_predictions"]:
        console.print(f"[yellow]warning[/]: {len(report['missing_predictions'])} GT image(s) have no prediction and count as all false negatives: "
                      + ", ".join(report["missing_predictions"][:20]) + (" ..." if len(report["missing_predictions"]) > 20 else ""), highlight=False)
    for name, err in report["failed_predictions"].items():
        console.print(f"[red]error[/]: prediction for {name} unusable (counted as all false negatives): {err}", highlight=False)
    if report["unmatched_predictions"]:
        console.print(f"[yellow]warning[/]: {len(report['unmatched_predictions'])} prediction(s) match no GT image by stem (ignored): "
                      + ", ".join(report["unmatched_predictions"][:20]), highlight=False)
    for note in report["pred_notes"]:
        console.print(f"[yellow]warning[/]: {note}", highlight=False)
    for p in report["gt_skipped"]:
        console.print(f"[yellow]warning[/]: ground truth not used: {p}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    console = Console(quiet=args.quiet)
    try:
        report = run_eval(Path(args.gt), Path(args.pred), args.gt_format, args.score_threshold, args.pixel_size)
    except (DatasetError, PredictionError) as exc:
        print(f"mito-eval: error: {exc}", file=sys.stderr)
        return 2
    print_report(report, console, args.per_image)
    if args.out:
        from ..runtime.writers.atomic import atomic_write_bytes

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, json.dumps(_json_safe(report), indent=2).encode())
        console.print(f"metrics written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
