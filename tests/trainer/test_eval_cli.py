"""`mito-eval` end to end: label-image predictions, COCO predictions (mito-run style and results lists), missing and bad files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from pycocotools import mask as mask_utils

from mitotally.trainer.eval_cli import main, run_eval


def labels_of(*boxes, shape=(40, 40)):
    lab = np.zeros(shape, np.int32)
    for k, (r0, c0, r1, c1) in enumerate(boxes, 1):
        lab[r0:r1, c0:c1] = k
    return lab


GT = {
    "a": labels_of((0, 0, 10, 10), (20, 20, 30, 30)),
    "b": labels_of((5, 5, 15, 15)),
    "c": labels_of((0, 0, 8, 8), (30, 30, 38, 38), (0, 30, 8, 38)),
}


@pytest.fixture
def gt_dir(tmp_path) -> Path:
    root = tmp_path / "gt"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name, lab in GT.items():
        Image.fromarray(np.full((40, 40), 128, np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(lab.astype(np.uint8)).save(root / "labels" / f"{name}.png")
    return root


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}


def predictions_json(entries: dict[str, list[tuple[np.ndarray, float]]]) -> dict:
    """mito-run style: images with file_name, annotations with RLE and score."""
    images, anns = [], []
    for i, (name, dets) in enumerate(entries.items(), 1):
        images.append({"id": i, "file_name": f"run/{name}.tif", "width": 40, "height": 40})
        for mask, score in dets:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": rle(mask), "score": score})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "mitochondrion"}]}


def test_label_image_predictions_with_a_missing_and_an_extra_file(gt_dir, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    tifffile.imwrite(pred / "a.tif", GT["a"].astype(np.uint16))  # perfect
    tifffile.imwrite(pred / "b_labels.tif", labels_of((5, 7, 15, 17)).astype(np.uint16))  # IoU 80/120
    tifffile.imwrite(pred / "zzz.tif", np.zeros((40, 40), np.uint16))  # no such GT image
    r = run_eval(gt_dir, pred)  # c has no prediction: its 3 instances are false negatives
    m = r["metrics"]
    assert r["pred_kind"] == "label images" and r["gt_format"] == "labels"
    assert r["missing_predictions"] == ["c"] and r["unmatched_predictions"] == ["zzz"]
    assert (m["gt_instances"], m["pred_instances"]) == (6, 3)
    assert (m["tp@0.5"], m["fp@0.5"], m["fn@0.5"]) == (3, 0, 3)
    assert m["recall@0.5"] == 0.5 and m["precision@0.5"] == 1.0
    assert m["recall@0.75"] == pytest.approx(2 / 6) and m["precision@0.75"] == pytest.approx(2 / 3)
    assert m["panoptic_quality@0.5"] == pytest.approx((2 + 2 / 3) / (3 + 0 + 1.5))
    rows = {row["image"]: row for row in r["per_image"]}
    assert rows["c"]["status"] == "missing" and rows["c"]["count_error"] == -3
    assert rows["a"]["f1@0.5"] == 1.0


def test_coco_predictions_give_scored_ap(gt_dir, tmp_path):
    dets = {name: [(lab == k, 0.5) for k in range(1, lab.max() + 1)] for name, lab in GT.items()}
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(predictions_json(dets)))
    m = run_eval(gt_dir, path)["metrics"]
    assert m["f1@0.5"] == 1.0 and m["mask_AP"] == 1.0
    # one false positive scored above every true detection: precision 1/2 ... 6/7 along the curve,
    # interpolated to 6/7 at every recall level
    dets["b"].append((labels_of((30, 0, 38, 8)) > 0, 0.99))
    path.write_text(json.dumps(predictions_json(dets)))
    m = run_eval(gt_dir, path)["metrics"]
    assert m["mask_AP"] == pytest.approx(6 / 7) and m["fp@0.5"] == 1
    # --score-threshold drops it from matching but AP still sees every detection
    m = run_eval(gt_dir, path, score_threshold=0.6)["metrics"]
    assert (m["tp@0.5"], m["fp@0.5"], m["fn@0.5"]) == (0, 1, 6) and m["mask_AP"] == pytest.approx(6 / 7)
    m = run_eval(gt_dir, path, score_threshold=0.4)["metrics"]
    assert (m["tp@0.5"], m["fp@0.5"], m["fn@0.5"]) == (6, 1, 0)


def test_mito_run_output_folder_prefers_predictions_json(gt_dir, tmp_path):
    out = tmp_path / "run_out"
    (out / "labels").mkdir(parents=True)
    for name, lab in GT.items():
        tifffile.imwrite(out / "labels" / f"{name}.tif", np.zeros((40, 40), np.uint16))  # would score 0
    dets = {name: [(lab == k, 0.8) for k in range(1, lab.max() + 1)] for name, lab in GT.items()}
    (out / "predictions.json").write_text(json.dumps(predictions_json(dets)))
    r = run_eval(gt_dir, out)
    assert r["pred_kind"] == "COCO JSON" and r["metrics"]["f1@0.5"] == 1.0
    (out / "predictions.json").unlink()
    r = run_eval(gt_dir, out)
    assert r["pred_kind"] == "label images" and r["metrics"]["f1@0.5"] == 0.0


def test_mito_run_keys_with_extensions_subfolders_and_stack_planes(gt_dir, tmp_path):
    # mito-run names outputs by the input's stem (labels/a.tif for a.png), keeping the extension where two
    # inputs share a stem, as folders from before names did (labels/sub/b.png.tif)
    out = tmp_path / "run_out"
    (out / "labels" / "sub").mkdir(parents=True)
    tifffile.imwrite(out / "labels" / "a.tif", GT["a"].astype(np.uint16))
    tifffile.imwrite(out / "labels" / "sub" / "b.png.tif", GT["b"].astype(np.uint16))
    r = run_eval(gt_dir, out)
    assert r["missing_predictions"] == ["c"] and r["metrics"]["tp@0.5"] == 3
    # predictions.json: file_name is the key; a stack's later planes are not scored against the first-plane GT
    doc = predictions_json({"a": [(GT["a"] == 1, 0.9), (GT["a"] == 2, 0.9)]})
    doc["images"][0].update(file_name="sub/a.png", plane=1)
    doc["images"].append({"id": 2, "file_name": "sub/a.png", "width": 40, "height": 40, "plane": 2})
    doc["annotations"].append({"id": 9, "image_id": 2, "category_id": 1, "segmentation": rle(labels_of((30, 0, 38, 8)) > 0), "score": 0.99})
    (out / "predictions.json").write_text(json.dumps(doc))
    r = run_eval(gt_dir, out)
    rows = {row["image"]: row for row in r["per_image"]}
    assert (rows["a"]["tp@0.5"], rows["a"]["fp@0.5"]) == (2, 0)
    assert any("stack planes" in n for n in r["pred_notes"])


def test_results_list_against_coco_ground_truth(tmp_path):
    root = tmp_path / "coco"
    root.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "a.png")
    gt_anns = [{"id": k, "image_id": 11, "category_id": 1, "segmentation": rle(GT["a"] == k), "iscrowd": 0} for k in (1, 2)]
    (root / "gt.json").write_text(json.dumps({"images": [{"id": 11, "file_name": "a.png", "width": 40, "height": 40}], "annotations": gt_anns,
                                              "categories": [{"id": 1, "name": "mito"}]}))
    results = [{"image_id": 11, "category_id": 1, "segmentation": rle(GT["a"] == 1), "score": 0.9}]
    (tmp_path / "results.json").write_text(json.dumps(results))
    m = run_eval(root, tmp_path / "results.json")["metrics"]
    assert (m["tp@0.5"], m["fn@0.5"]) == (1, 1) and m["mask_AP"] == pytest.approx(51 / 101)  # recall 0.5 at precision 1


def test_cli_writes_json_and_reports_bad_predictions(gt_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # rich sizes the table to the terminal; the test reads whole words
    pred = tmp_path / "pred"
    pred.mkdir()
    for name, lab in GT.items():
        tifffile.imwrite(pred / f"{name}.tif", lab.astype(np.uint16))
    tifffile.imwrite(pred / "b.tif", np.zeros((41, 40), np.uint16))  # wrong size: counted as all false negatives
    out = tmp_path / "m" / "metrics.json"
    assert main(["--gt", str(gt_dir), "--pred", str(pred), "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["failed_predictions"]) == {"b"} and "prediction 40x41 vs ground truth 40x40" in report["failed_predictions"]["b"]
    assert report["metrics"]["fn@0.5"] == 1 and report["metrics"]["tp@0.5"] == 5
    text = capsys.readouterr().out
    assert "f1@0.5" in text and "unusable" in text and "b.tif" in text


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["--gt", str(tmp_path / "none"), "--pred", str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_cli_nothing_found_gives_zero_and_null_ap_free_json(gt_dir, tmp_path):
    pred = tmp_path / "empty_pred"
    pred.mkdir()
    tifffile.imwrite(pred / "a.tif", np.zeros((40, 40), np.uint16))  # matched, but finds nothing
    tifffile.imwrite(pred / "other.tif", np.zeros((40, 40), np.uint16))
    out = tmp_path / "m.json"
    assert main(["--gt", str(gt_dir), "--pred", str(pred), "-o", str(out), "-q"]) == 0
    report = json.loads(out.read_text())  # strict JSON: NaN written as null
    assert report["metrics"]["recall@0.5"] == 0.0 and report["metrics"]["median_area_error"] is None
    assert sorted(report["missing_predictions"]) == ["b", "c"]


def test_cli_stops_when_no_prediction_matches_any_gt_image(gt_dir, tmp_path, capsys):
    pred = tmp_path / "unmatched"
    pred.mkdir()
    tifffile.imwrite(pred / "other.tif", np.zeros((40, 40), np.uint16))
    assert main(["--gt", str(gt_dir), "--pred", str(pred), "-q"]) == 2
    err = capsys.readouterr().err
    assert "nothing to score against" in err and "3 have no usable prediction (a, b, c" in err


@pytest.fixture
def label_only_gt(tmp_path) -> Path:
    """Ground truth as napari or a collaborator exports it: label images only, no raw images."""
    root = tmp_path / "gt_labels"
    root.mkdir()
    tifffile.imwrite(root / "a.tif", GT["a"].astype(np.uint16))
    tifffile.imwrite(root / "b_labels.tif", GT["b"].astype(np.uint16))  # the label suffix is dropped: matches b
    Image.fromarray(GT["c"].astype(np.uint8)).save(root / "c.png")
    return root


def mito_run_folder(root: Path, labels: dict[str, np.ndarray]) -> Path:
    """Predictions laid out as mito-run writes them: OUT/labels/<stem>.tif."""
    (root / "labels").mkdir(parents=True)
    for name, lab in labels.items():
        tifffile.imwrite(root / "labels" / f"{name}.tif", lab.astype(np.uint16))
    return root


@pytest.mark.parametrize("fmt", ["auto", "labels", "labels-only"])
def test_label_only_ground_truth_identical_predictions_score_1(label_only_gt, tmp_path, fmt):
    r = run_eval(label_only_gt, mito_run_folder(tmp_path / "run", GT), gt_format=fmt)
    m = r["metrics"]
    assert r["gt_format"] == "labels-only" and r["missing_predictions"] == [] and r["unmatched_predictions"] == []
    assert (m["gt_instances"], m["tp@0.5"], m["f1@0.5"], m["f1@0.75"]) == (6, 6, 1.0, 1.0)
    assert [row["status"] for row in r["per_image"]] == ["ok"] * 3


def test_label_only_ground_truth_crafted_difference(label_only_gt, tmp_path):
    pred = {
        "a": labels_of((0, 0, 10, 10)),  # misses a's second object: 1 TP, 1 FN
        "b": labels_of((5, 7, 15, 17)),  # shifted: IoU 80/120, a TP at 0.5 only
        "c": labels_of((0, 0, 8, 8), (30, 30, 38, 38), (0, 30, 8, 38), (15, 15, 22, 22)),  # one extra: 3 TP, 1 FP
    }
    m = run_eval(label_only_gt, mito_run_folder(tmp_path / "run", pred))["metrics"]
    assert (m["tp@0.5"], m["fp@0.5"], m["fn@0.5"]) == (5, 1, 1)
    assert m["precision@0.5"] == m["recall@0.5"] == m["f1@0.5"] == pytest.approx(5 / 6)
    assert m["f1@0.75"] == pytest.approx(2 * 4 / (2 * 4 + 2 + 2))  # b's pair no longer matches


def test_empty_ground_truth_is_named_and_all_empty_stops(label_only_gt, tmp_path, capsys):
    tifffile.imwrite(label_only_gt / "d.tif", np.zeros((40, 40), np.uint16))
    run = mito_run_folder(tmp_path / "run", {**GT, "d": np.zeros((40, 40), np.int32)})
    r = run_eval(label_only_gt, run)
    rows = {row["image"]: row for row in r["per_image"]}
    assert r["empty_ground_truth"] == ["d"] and rows["d"]["gt_empty"] and "no objects" in rows["d"]["notes"][0]
    assert r["metrics"]["f1@0.5"] == 1.0
    assert main(["--gt", str(label_only_gt), "--pred", str(run), "--per-image"]) == 0
    assert "1 GT image(s) have no objects" in capsys.readouterr().out
    empty = tmp_path / "all_empty"
    empty.mkdir()
    for name in "ab":
        tifffile.imwrite(empty / f"{name}.tif", np.zeros((40, 40), np.uint16))
    assert main(["--gt", str(empty), "--pred", str(run), "-q"]) == 2
    err = capsys.readouterr().err
    assert "nothing to score against" in err and "2 have no objects (a, b)" in err


def test_raw_images_are_not_taken_for_label_only_ground_truth(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for name in "ab":
        tifffile.imwrite(raw / f"{name}.tif", rng.integers(0, 255, (40, 40), dtype=np.uint8))
    run = mito_run_folder(tmp_path / "run", GT)
    assert main(["--gt", str(raw), "--pred", str(run)]) == 2
    assert "--gt-format labels-only" in capsys.readouterr().err  # auto: no layout, and the hint
    assert main(["--gt", str(raw), "--pred", str(run), "--gt-format", "labels-only"]) == 2
    err = capsys.readouterr().err
    assert "no usable ground-truth images" in err and "does not look like a label image" in err
