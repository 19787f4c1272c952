"""Finding checkpoints (folder, HF cache, hub) and refusing the ones we must not load."""

from __future__ import annotations

import json
import shutil

import huggingface_hub.constants
import pytest
import torch

from siglip2_sdk.core.checkpoint import load_checkpoint, save_checkpoint
from siglip2_sdk.core.config import parameter_count, preset
from siglip2_sdk.core.errors import CheckpointError
from siglip2_sdk.core.hub import ALIASES, resolve_checkpoint
from siglip2_sdk.core.model import build_model


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    return save_checkpoint(build_model(preset("tiny"), seed=3), folder / "ckpt")


def fake_hf_cache(cache, repo_id: str, checkpoint) -> None:
    """Lay a checkpoint out the way huggingface_hub caches a downloaded snapshot."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    shutil.copytree(checkpoint, repo_dir / "snapshots" / commit)


def test_parameter_count_from_shape_matches_the_model():
    for name in ("tiny", "demo-student"):
        model = build_model(preset(name))
        counts = parameter_count(preset(name))
        assert counts["image"] == sum(p.numel() for p in model.vision_model.parameters())
        assert counts["text"] == sum(p.numel() for p in model.text_model.parameters())
        assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_b32_has_the_published_size():
    # ViT-B/32 at 256 px is ~87.4M, the MAP head adds ~7.1M; the text tower is dominated by the
    # 256k x 768 embedding table.
    counts = parameter_count(preset("b32"))
    assert 94e6 < counts["image"] < 95e6
    assert 256_000 * 768 < counts["text"] < 256_000 * 768 + 90e6


def test_load_from_the_hf_cache_by_repo_id(tiny_checkpoint, tmp_path, monkeypatch):
    fake_hf_cache(tmp_path, "someone/tiny-siglip", tiny_checkpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    model = load_checkpoint("someone/tiny-siglip")
    assert model.config == preset("tiny")


def test_alias_resolves_to_the_real_repo_in_the_cache(tiny_checkpoint, tmp_path):
    fake_hf_cache(tmp_path, ALIASES["g16"], tiny_checkpoint)
    folder = resolve_checkpoint("g16", cache_dir=tmp_path, download=False)
    assert (folder / "config.json").is_file()


def test_offline_and_absent_names_what_was_looked_for(tmp_path):
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint("so400m14", cache_dir=tmp_path, download=False)
    message = str(err.value)
    assert "google/siglip2-so400m-patch14-384" in message
    assert "Hugging Face cache" in message and "\n" not in message


def test_missing_local_path_is_not_mistaken_for_a_repo(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "nope"))


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path)


def test_pickled_weights_are_never_loaded(tiny_checkpoint, tmp_path):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled weights are never loaded"):
        load_checkpoint(folder)


def test_naflex_checkpoint_is_refused_with_a_pointer(tiny_checkpoint, tmp_path):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "siglip2"}))
    with pytest.raises(CheckpointError, match="NaFlex"):
        load_checkpoint(folder)


def test_weights_that_do_not_fit_the_config_are_refused(tiny_checkpoint, tmp_path):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match its config.json"):
        load_checkpoint(folder)


def test_corrupt_safetensors_is_a_clear_error(tiny_checkpoint, tmp_path):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    (folder / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_checkpoint(folder)


def test_tokenizer_file_travels_with_the_checkpoint(tmp_path):
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text('{"stand-in": true}')
    saved = save_checkpoint(build_model(preset("tiny")), tmp_path / "a", tokenizer_file=tokenizer)
    config = json.loads((saved / "tokenizer_config.json").read_text())
    assert config["padding_side"] == "right" and config["model_max_length"] == 16
    # Saving a loaded model again carries the tokenizer along from where it was loaded.
    resaved = save_checkpoint(load_checkpoint(saved), tmp_path / "b")
    assert (resaved / "tokenizer.json").read_text() == tokenizer.read_text()


def test_loaded_model_is_in_eval_mode_on_cpu_float32(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
