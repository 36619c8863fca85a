"""The command line: help, argument errors, one daemon per output folder, `status` on missing and live folders."""
from __future__ import annotations

import json

import pytest

from mitotally.runtime.watch import cli
from mitotally.runtime.watch.journal import Journal, journal_path
from mitotally.runtime.watch.lock import FolderLock


def test_help_lists_options_and_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--backend", "--recursive", "--include", "--exclude", "--poll", "--settle", "--once", "status OUT_DIR"):
        assert option in text


def test_missing_input_folder_is_one_clear_line(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nope"), "-o", str(tmp_path / "out")]) == 1
    assert "nope: not a folder" in capsys.readouterr().err


def test_bad_numbers_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path), "-o", str(tmp_path / "o"), "--settle", "-1"])
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path), "-o", str(tmp_path / "o"), "--poll", "soon"])


def test_second_daemon_on_the_same_output_is_refused(tmp_path, tiny_model_dir, caplog):
    (tmp_path / "in").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    with FolderLock(out):
        code = cli.main([str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_dir), "--once"])
    assert code == 1
    assert "another mito-watch is already using this output folder" in caplog.text


def test_unloadable_model_is_one_line_and_exit_1(tmp_path, caplog):
    (tmp_path / "in").mkdir()
    (tmp_path / "model").mkdir()
    code = cli.main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "model"), "--once"])
    assert code == 1
    assert "cannot load the model" in caplog.text and "model.json" in caplog.text


def test_status_without_journal(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path)]) == 1
    assert "no mito-watch journal" in capsys.readouterr().err


def test_status_json_reports_running_while_the_lock_is_held(tmp_path, capsys):
    j = Journal(journal_path(tmp_path))
    j.note("a.tif", "a.tif", 1, 1)
    j.set_meta(in_dir="/scope/in", mode="events", heartbeat=0)
    with FolderLock(tmp_path):
        assert cli.main(["status", str(tmp_path), "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
    j.close()
    assert (st["running"], st["queued"], st["done"], st["in_dir"]) == (True, 1, 0, "/scope/in")
    assert cli.main(["status", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "NOT running" in text and "1 waiting" in text


def test_scale_estimate_modes_are_mito_runs(tmp_path):
    from mitotally.runtime.scale_probe import SCALE_ESTIMATE_MODES

    parser = cli.watch_parser()
    for mode in SCALE_ESTIMATE_MODES:
        assert parser.parse_args([str(tmp_path), "-o", str(tmp_path / "o"), "--scale-estimate", mode]).scale_estimate == mode
    assert parser.parse_args([str(tmp_path), "-o", str(tmp_path / "o"), "--no-scale-estimate"]).scale_estimate == "off"
    assert parser.parse_args([str(tmp_path), "-o", str(tmp_path / "o")]).scale_estimate == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args([str(tmp_path), "-o", str(tmp_path / "o"), "--scale-estimate", "sometimes"])


def test_keep_data_bars_reaches_the_pipeline_config(tmp_path):
    parser = cli.watch_parser()
    assert parser.parse_args([str(tmp_path), "-o", str(tmp_path / "o")]).keep_data_bars is False
    assert parser.parse_args([str(tmp_path), "-o", str(tmp_path / "o"), "--keep-data-bars"]).keep_data_bars is True


def test_run_options_reach_each_frames_pipeline(tmp_path):
    args = cli.watch_parser().parse_args([str(tmp_path), "-o", str(tmp_path / "out"), "--tta", "--keep-data-bars",
                                          "--pixel-size", "4.2nm", "--no-overlays"])
    run = cli.run_config_from_args(args)
    assert run.tta is True and run.skip_data_bars is False and run.pixel_size_nm == 4.2 and run.overlays is False
    assert cli.run_config_from_args(cli.watch_parser().parse_args([str(tmp_path), "-o", str(tmp_path / "o")])).tta is False
