"""Training settings have one home: `--config FILE` reads a run's settings as data, flags typed after
it win, and Python callers get the CLI's defaults and checks from `distill.config`."""

from __future__ import annotations

import json

import pytest

from siglip2_sdk.cli import main
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.distill.config import TrainConfig, training_settings


def config_file(tmp_path, settings: dict):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(settings))
    return str(path)


def test_config_file_settings_are_read(tmp_path, capsys):
    config = config_file(tmp_path, {"steps": 0})
    assert main(["distill", "--teacher", "demo", "--out", str(tmp_path), "--config", config]) == 2
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err


def test_flags_typed_on_the_command_line_win_over_the_file(tmp_path, capsys):
    config = config_file(tmp_path, {"steps": 0, "batch_size": 8})
    argv = ["pretrain", "--config", config, "--out", str(tmp_path), "--steps", "2", "--accumulate", "9"]
    assert main(argv) == 2
    assert "--accumulate 9 is larger than --batch-size 8" in capsys.readouterr().err


def test_an_unknown_setting_is_one_clear_line(tmp_path, capsys):
    config = config_file(tmp_path, {"step": 3})
    assert main(["pretrain", "--out", str(tmp_path), "--config", config]) == 2
    assert capsys.readouterr().err.strip().endswith("no such setting step")


def test_starting_from_a_checkpoint_fine_tunes_unless_told_otherwise():
    assert training_settings(init="ckpt") == {"init": "ckpt", "lr": 1e-5, "weight_decay": 0.0}
    assert training_settings(init="ckpt", lr=3e-4) == {"init": "ckpt", "lr": 3e-4, "weight_decay": 0.0}
    assert training_settings(lr=None, steps=5) == {"steps": 5, "lr": 1e-3, "weight_decay": 1e-4}


def test_a_train_config_made_in_python_follows_the_same_rule():
    made = dict(data="shards/*.tar", out="run", tokenizer="tokenizer.json")
    assert (TrainConfig(**made).lr, TrainConfig(**made).weight_decay) == (1e-3, 1e-4)
    tuned = TrainConfig(**made, init="ckpt", weight_decay=0.05)
    assert (tuned.lr, tuned.weight_decay) == (1e-5, 0.05)


def test_python_callers_get_the_same_checks():
    with pytest.raises(Siglip2Error, match="--filter-ratio must be in"):
        training_settings(filter_ratio=1.0)
    with pytest.raises(Siglip2Error, match="--accumulate 9 is larger than --batch-size 8"):
        TrainConfig(data="shards/*.tar", out="run", tokenizer="tokenizer.json", batch_size=8, accumulate=9)
    with pytest.raises(Siglip2Error, match="--select must be one of acid, topk, none, got 'jest'"):
        TrainConfig(data="shards/*.tar", out="run", tokenizer="tokenizer.json", select="jest")
    with pytest.raises(Siglip2Error, match="unknown training settings: step"):
        training_settings(step=3)


def test_a_runs_own_config_json_is_accepted(tmp_path, capsys):
    from dataclasses import asdict

    written = asdict(TrainConfig(data="shards/*.tar", out=str(tmp_path), tokenizer="tokenizer.json"))
    config = config_file(tmp_path, {**written, "steps": 0})  # what a run writes as OUT/config.json
    for command in (["distill", "--teacher", "demo"], ["pretrain"]):
        assert main([*command, "--config", config]) == 2
        assert "--steps must be at least 1, got 0" in capsys.readouterr().err
