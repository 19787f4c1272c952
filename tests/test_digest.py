"""A model's weights digest: the same weights agree wherever they live; other weights differ."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from siglip2_sdk.core.digest import weights_digest
from siglip2_sdk.core.errors import Siglip2Error

from fixtures import tiny_checkpoint


def checkpoint(folder, seed: int = 0):
    folder.mkdir(parents=True)
    return tiny_checkpoint(folder, seed=seed)


def test_same_weights_same_digest_other_weights_other_digest(tmp_path):
    first = checkpoint(tmp_path / "a", seed=0)
    copy = shutil.copytree(first, tmp_path / "elsewhere" / "copy")
    assert weights_digest(first) == weights_digest(copy) == weights_digest(f"{first}/")
    assert weights_digest(checkpoint(tmp_path / "b", seed=1)) != weights_digest(first)


def test_digest_ignores_tensor_order_and_file_metadata_but_not_one_changed_value(tmp_path):
    first = checkpoint(tmp_path / "a", seed=0)
    tensors = load_file(first / "model.safetensors")
    reordered = tmp_path / "reordered"
    reordered.mkdir()
    save_file(dict(reversed(list(tensors.items()))), reordered / "model.safetensors", metadata={"x": "y"})
    assert weights_digest(reordered) == weights_digest(first)
    tensors["logit_bias"] = tensors["logit_bias"] + torch.finfo(torch.float32).eps * 16
    changed = tmp_path / "changed"
    changed.mkdir()
    save_file(tensors, changed / "model.safetensors")
    assert weights_digest(changed) != weights_digest(first)


def test_a_folder_without_weights_or_with_a_truncated_file_is_refused(tmp_path):
    with pytest.raises(Siglip2Error, match="no .safetensors"):
        weights_digest(tmp_path)
    first = checkpoint(tmp_path / "a", seed=0)
    data = (first / "model.safetensors").read_bytes()
    (first / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(Siglip2Error, match="truncated"):
        weights_digest(first)
