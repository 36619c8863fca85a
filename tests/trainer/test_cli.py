"""mito-train's command line: recipe files, precedence, clear errors."""
import pytest

from mitotally.trainer.cli import config_from_args, get_args_parser, main, parse_duration


def test_recipe_values_apply_and_command_line_wins(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('data = "d"\nout = "o"\nlr = 0.001\nsteps = 50\nbackbone = "resnet34"\n')
    argv = ["--config", str(recipe), "--lr", "0.002"]
    cfg = config_from_args(get_args_parser().parse_args(argv), argv)
    assert (cfg.data, cfg.out, cfg.steps, cfg.backbone) == ("d", "o", 50, "resnet34")
    assert cfg.lr == 0.002


def test_unknown_recipe_key_is_an_error(tmp_path, capsys):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('data = "d"\nout = "o"\nlearning_rate = 0.1\n')
    assert main(["--config", str(recipe)]) == 2
    assert "learning_rate" in capsys.readouterr().err


@pytest.mark.parametrize("text,seconds", [("90", 90), ("45m", 2700), ("2h", 7200), ("30s", 30)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_missing_data_is_a_clear_error(capsys):
    assert main([]) == 2
    assert "--data" in capsys.readouterr().err


def test_repeated_data_and_val_last_become_lists_single_ones_stay_scalars():
    argv = ["--data", "a", "--data", "b", "--data-share", "0.7", "--data-share", "0.3", "--val-last", "25", "--val-last", "1", "-o", "o"]
    cfg = config_from_args(get_args_parser().parse_args(argv), argv)
    assert (cfg.data, cfg.data_share, cfg.val_last) == (["a", "b"], [0.7, 0.3], [25, 1])
    assert cfg.data_folders == ["a", "b"] and cfg.val_last_per_folder() == [25, 1]
    argv = ["--data", "a", "--val-last", "25", "-o", "o"]
    cfg = config_from_args(get_args_parser().parse_args(argv), argv)
    assert (cfg.data, cfg.val_last, cfg.data_share) == ("a", 25, None)
    assert cfg.data_folders == ["a"] and cfg.val_last_per_folder() == [25]


def test_recipe_may_list_several_data_folders(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('data = ["a", "b"]\nval_last = 3\nout = "o"\n')
    argv = ["--config", str(recipe)]
    cfg = config_from_args(get_args_parser().parse_args(argv), argv)
    assert cfg.data_folders == ["a", "b"] and cfg.val_last_per_folder() == [3, 3]  # one number: each folder


def test_val_last_list_must_match_the_folders():
    from mitotally.trainer.config import TrainConfig

    with pytest.raises(ValueError, match="2 values for 3 data folders"):
        TrainConfig(data=["a", "b", "c"], out="o", val_last=[1, 2]).val_last_per_folder()


def test_training_progress_prints_plain_lines_into_a_log_file(capsys):
    """Under nohup (no terminal) rich shows nothing until the end: a line per minute of training instead."""
    from mitotally.trainer.progress import TrainProgress

    row = dict(step=1, loss=1.0, loss_mask=0.5, loss_classifier=0.2, loss_box_reg=0.2, loss_objectness=0.1, lr=1e-4,
               total_steps=None, time_budget=600.0)
    with TrainProgress() as progress:
        for step, elapsed in ((1, 1.0), (2, 30.0), (3, 61.5), (4, 90.0)):
            progress.update({**row, "step": step, "elapsed_s": elapsed})
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("step ")]
    assert [ln.split(",")[0] for ln in lines] == ["step 1", "step 3"]
    assert "of 10 min" in lines[1] and "loss 1.000" in lines[1]
