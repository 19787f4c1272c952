"""Our model against the reference implementation, transformers' SiglipModel, on random weights."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import SiglipConfig as HFSiglipConfig
from transformers import SiglipModel as HFSiglipModel

from siglip2_sdk.core.checkpoint import load_checkpoint, save_checkpoint
from siglip2_sdk.core.config import from_hf_config, preset, to_hf_config
from siglip2_sdk.core.model import ImageEncoder, TextEncoder

# Shapes unlike the real presets on purpose: odd head counts, text width != embed dim, non-square
# patch grids of odd size, short and full-length contexts.
CONFIGS = {
    "square-small": dict(
        vision=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                    image_size=32, patch_size=8),
        text=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                  vocab_size=300, max_position_embeddings=16),
    ),
    "odd-heads": dict(
        vision=dict(hidden_size=48, intermediate_size=80, num_attention_heads=3, num_hidden_layers=3,
                    image_size=50, patch_size=10),
        text=dict(hidden_size=40, intermediate_size=72, num_attention_heads=5, num_hidden_layers=2,
                  vocab_size=500, max_position_embeddings=64, projection_size=48),
    ),
    "wide-text": dict(
        vision=dict(hidden_size=24, intermediate_size=40, num_attention_heads=4, num_hidden_layers=1,
                    image_size=28, patch_size=14),
        text=dict(hidden_size=64, intermediate_size=96, num_attention_heads=8, num_hidden_layers=3,
                  vocab_size=257, max_position_embeddings=20, projection_size=24),
    ),
}  # fmt: skip


def make_reference(shape: dict, seed: int = 0) -> HFSiglipModel:
    """A transformers SiglipModel with every parameter random, LayerNorms and biases included, so a
    swapped or mis-mapped weight cannot hide behind an identity init."""
    torch.manual_seed(seed)
    text = dict(shape["text"], pad_token_id=0, bos_token_id=2, eos_token_id=1)
    model = HFSiglipModel(HFSiglipConfig(text_config=text, vision_config=shape["vision"])).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


def inputs_for(shape: dict, batch: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    size = shape["vision"]["image_size"]
    pixels = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1
    text = shape["text"]
    ids = torch.randint(0, text["vocab_size"], (batch, text["max_position_embeddings"]), generator=generator)
    return pixels, ids


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(params=sorted(CONFIGS))
def reference_checkpoint(request, tmp_path):
    shape = CONFIGS[request.param]
    reference = make_reference(shape)
    reference.save_pretrained(tmp_path / "hf")
    return shape, reference, tmp_path


@torch.no_grad()
def test_embeddings_match_transformers(reference_checkpoint):
    shape, reference, tmp_path = reference_checkpoint
    ours = load_checkpoint(tmp_path / "hf")
    pixels, ids = inputs_for(shape)
    expected = reference(input_ids=ids, pixel_values=pixels)

    assert max_diff(ours.encode_image(pixels), expected.image_embeds) < 1e-4
    assert max_diff(ours.encode_text(ids), expected.text_embeds) < 1e-4
    assert max_diff(ours(pixels, ids), expected.logits_per_image) < 1e-3  # logits are scaled by t
    unnormalized = reference.vision_model(pixel_values=pixels).pooler_output
    assert max_diff(ours.encode_image(pixels, normalize=False), unnormalized) < 1e-4


@torch.no_grad()
def test_tower_wrappers_emit_unit_vectors(reference_checkpoint):
    shape, _, tmp_path = reference_checkpoint
    ours = load_checkpoint(tmp_path / "hf")
    pixels, ids = inputs_for(shape)
    for embedding in (ImageEncoder(ours)(pixels), TextEncoder(ours)(ids)):
        assert torch.allclose(embedding.norm(dim=-1), torch.ones(len(embedding)), atol=1e-5)


@torch.no_grad()
def test_exported_text_tower_computes_the_last_block_for_the_pooled_position_only(reference_checkpoint):
    """What bundles run (`TextEncoder`, the last block trimmed to the pooled position) gives
    transformers' text embedding, on every shape (one block to three)."""
    shape, reference, tmp_path = reference_checkpoint
    ours = load_checkpoint(tmp_path / "hf")
    _, ids = inputs_for(shape)
    expected = reference.get_text_features(input_ids=ids)
    expected = getattr(expected, "pooler_output", expected)
    assert max_diff(TextEncoder(ours)(ids), torch.nn.functional.normalize(expected, dim=-1)) < 1e-5


@torch.no_grad()
def test_round_trip_loads_in_transformers_with_identical_outputs(reference_checkpoint):
    shape, reference, tmp_path = reference_checkpoint
    save_checkpoint(load_checkpoint(tmp_path / "hf"), tmp_path / "ours")
    reloaded = HFSiglipModel.from_pretrained(tmp_path / "ours").eval()
    pixels, ids = inputs_for(shape)
    before = reference(input_ids=ids, pixel_values=pixels)
    after = reloaded(input_ids=ids, pixel_values=pixels)
    assert torch.equal(before.image_embeds, after.image_embeds)
    assert torch.equal(before.text_embeds, after.text_embeds)
    assert torch.equal(before.logits_per_image, after.logits_per_image)


@torch.no_grad()
def test_sharded_checkpoint_loads(tmp_path):
    shape = CONFIGS["odd-heads"]
    reference = make_reference(shape)
    reference.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    pixels, ids = inputs_for(shape)
    ours = load_checkpoint(tmp_path)
    assert (
        max_diff(ours.encode_image(pixels), reference(input_ids=ids, pixel_values=pixels).image_embeds) < 1e-4
    )


def test_presets_round_trip_through_hf_config():
    for name in ("b32", "so400m14", "g16", "tiny"):
        config = preset(name)
        assert from_hf_config(to_hf_config(config)) == config


def test_g16_preset_has_the_released_shape():
    config = preset("g16")
    assert (config.vision.width, config.vision.depth, config.embed_dim) == (1536, 40, 1536)
    assert (config.text.width, config.text.depth, config.text.vocab_size) == (1152, 27, 256_000)


def test_saved_preprocessor_config_is_siglip2_recipe(tmp_path):
    shape = CONFIGS["square-small"]
    make_reference(shape).save_pretrained(tmp_path / "hf")
    save_checkpoint(load_checkpoint(tmp_path / "hf"), tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "preprocessor_config.json").read_text())
    assert saved["size"] == {"height": 32, "width": 32}
    assert saved["resample"] == 2  # PIL bilinear
    assert saved["image_mean"] == saved["image_std"] == [0.5, 0.5, 0.5]


def test_save_replaces_an_existing_checkpoint_whole(tmp_path):
    make_reference(CONFIGS["square-small"]).save_pretrained(tmp_path / "hf")
    model = load_checkpoint(tmp_path / "hf")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("from an older save")
    save_checkpoint(model, out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "out"]  # no staging folder left over
