"""Model shapes as data: one dataclass per tower, named presets, and the Hugging Face config.json
mapping. Torch-free, so bundles and `siglip2-sdk info` can read shapes without torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import CheckpointError

# Activations that SigLIP checkpoints use, mapped to torch's gelu `approximate` argument.
GELU_APPROXIMATION = {"gelu_pytorch_tanh": "tanh", "gelu": "none"}


@dataclass(frozen=True)
class VisionConfig:
    """The image tower: ViT with learned position embeddings and a MAP pooling head."""

    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_dim: int
    layer_norm_eps: float = 1e-6
    act: str = "gelu_pytorch_tanh"

    @property
    def num_patches(self) -> int:
        # Floor, as the strided patch convolution drops the remainder: So400m/14 at 384 px sees 27 x 27.
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class TextConfig:
    """The text tower: bidirectional transformer, last position pooled, then a linear head."""

    vocab_size: int
    width: int
    depth: int
    heads: int
    mlp_dim: int
    embed_dim: int
    context_length: int = 64
    layer_norm_eps: float = 1e-6
    act: str = "gelu_pytorch_tanh"
    pad_id: int = 0
    eos_id: int = 1


@dataclass(frozen=True)
class ModelConfig:
    vision: VisionConfig
    text: TextConfig

    def __post_init__(self) -> None:
        problems = []
        if self.text.embed_dim != self.vision.width:
            problems.append(
                f"text embed_dim {self.text.embed_dim} != image embedding width {self.vision.width}"
            )
        if self.vision.image_size < self.vision.patch_size:
            problems.append(f"image_size {self.vision.image_size} < patch_size {self.vision.patch_size}")
        for name, tower in (("vision", self.vision), ("text", self.text)):
            if tower.width % tower.heads:
                problems.append(f"{name} width {tower.width} is not divisible by {tower.heads} heads")
            if tower.act not in GELU_APPROXIMATION:
                problems.append(f"{name} activation '{tower.act}' is not one SigLIP uses")
        if problems:
            raise CheckpointError("invalid SigLIP 2 model shape: " + "; ".join(problems))

    @property
    def embed_dim(self) -> int:
        return self.vision.width

    def replace(self, *, vision: dict | None = None, text: dict | None = None) -> ModelConfig:
        """A copy with some tower fields changed, e.g. `replace(text={"vocab_size": 32000})`."""
        return ModelConfig(
            vision=dataclasses.replace(self.vision, **(vision or {})),
            text=dataclasses.replace(self.text, **(text or {})),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(vision=VisionConfig(**d["vision"]), text=TextConfig(**d["text"]))


def _tower_pair(
    image_size: int,
    patch_size: int,
    width: int,
    depth: int,
    heads: int,
    mlp_dim: int,
    text: dict | None = None,
) -> ModelConfig:
    """A model whose text tower has the image tower's shape unless `text` overrides it."""
    text_shape = dict(width=width, depth=depth, heads=heads, mlp_dim=mlp_dim, embed_dim=width)
    text_shape.update(text or {})
    return ModelConfig(
        vision=VisionConfig(image_size, patch_size, width, depth, heads, mlp_dim),
        text=TextConfig(vocab_size=text_shape.pop("vocab_size", 256_000), **text_shape),
    )


# The released SigLIP 2 fixed-resolution shapes (HF config.json of each checkpoint), plus small ones.
# g-opt pairs a 1536-wide, 40-layer image tower with the So400m text tower projected to 1536.
PRESETS: dict[str, ModelConfig] = {
    "b32": _tower_pair(256, 32, 768, 12, 12, 3072),
    "b16": _tower_pair(256, 16, 768, 12, 12, 3072),
    "so400m14": _tower_pair(384, 14, 1152, 27, 16, 4304),
    "so400m16": _tower_pair(256, 16, 1152, 27, 16, 4304),
    "g16": _tower_pair(256, 16, 1536, 40, 16, 6144, dict(width=1152, depth=27, heads=16, mlp_dim=4304)),
    # Demo shapes, trained from scratch on the offline corpus in minutes on 2 CPU cores. 64 px cut
    # into 16 patches of 16 costs what 32 px in patches of 8 did and keeps more of each image; in a
    # few minutes a 96-wide teacher with more steps learns more than a 128-wide one with fewer
    # (benchmarks/results/demo_recipe.md). The full 256k vocabulary stays, so the demo exercises the
    # real tokenizer end to end; a 16-token context covers the corpus' captions but its longest.
    # The demo student is the teacher with a block less per tower (made from its blocks 0 and 2).
    "demo-teacher": _tower_pair(64, 16, 96, 3, 3, 384, dict(context_length=16)),
    "demo-student": _tower_pair(64, 16, 96, 2, 3, 384, dict(context_length=16)),
    # For unit tests: every code path, a few milliseconds per forward pass.
    "tiny": _tower_pair(32, 8, 32, 2, 2, 64, dict(vocab_size=1000, context_length=16)),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise CheckpointError(f"unknown model preset '{name}'; choose one of: {', '.join(PRESETS)}") from None


# --- Hugging Face `SiglipConfig` (config.json) ---------------------------------------------------

_HF_SHARED = {  # our field -> HF field, for both towers
    "width": "hidden_size",
    "depth": "num_hidden_layers",
    "heads": "num_attention_heads",
    "mlp_dim": "intermediate_size",
    "layer_norm_eps": "layer_norm_eps",
    "act": "hidden_act",
}
_HF_VISION = {**_HF_SHARED, "image_size": "image_size", "patch_size": "patch_size"}
_HF_TEXT = {
    **_HF_SHARED,
    "vocab_size": "vocab_size",
    "context_length": "max_position_embeddings",
    "embed_dim": "projection_size",
    "pad_id": "pad_token_id",
    "eos_id": "eos_token_id",
}
# transformers' SiglipConfig defaults, used where a config.json leaves a field out.
_HF_VISION_DEFAULTS = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu_pytorch_tanh",
    "image_size": 224,
    "patch_size": 16,
}
_HF_TEXT_DEFAULTS = {
    **{k: v for k, v in _HF_VISION_DEFAULTS.items() if k not in ("image_size", "patch_size")},
    "vocab_size": 32000,
    "max_position_embeddings": 64,
    "pad_token_id": 1,
    "eos_token_id": 49407,
}


def from_hf_config(hf: dict, source: str = "config.json") -> ModelConfig:
    """Read a transformers `SiglipModel` config.json (model_type "siglip")."""
    model_type = hf.get("model_type")
    if model_type == "siglip2":
        raise CheckpointError(
            f"{source}: this is a NaFlex (Siglip2Model) checkpoint; siglip2-sdk supports the "
            "fixed-resolution SigLIP 2 checkpoints (model_type 'siglip'), "
            "e.g. google/siglip2-base-patch32-256"
        )
    if model_type != "siglip" or "vision_config" not in hf or "text_config" not in hf:
        raise CheckpointError(
            f"{source}: not a SigLIP two-tower config (model_type={model_type!r}); "
            "expected a transformers SiglipModel config.json"
        )
    if hf["vision_config"].get("num_channels", 3) != 3:
        raise CheckpointError(f"{source}: only 3-channel image towers are supported")
    if hf["vision_config"].get("vision_use_head", True) is False:
        raise CheckpointError(f"{source}: image towers without the MAP head are not supported")
    vision = {**_HF_VISION_DEFAULTS, **hf["vision_config"]}
    text = {**_HF_TEXT_DEFAULTS, **hf["text_config"]}
    text.setdefault("projection_size", text["hidden_size"])
    if text["projection_size"] is None:
        text["projection_size"] = text["hidden_size"]
    return ModelConfig(
        vision=VisionConfig(**{ours: vision[theirs] for ours, theirs in _HF_VISION.items()}),
        text=TextConfig(**{ours: text[theirs] for ours, theirs in _HF_TEXT.items()}),
    )


def to_hf_config(config: ModelConfig) -> dict:
    """The config.json that transformers' `SiglipModel.from_pretrained` reads."""
    vision = {theirs: getattr(config.vision, ours) for ours, theirs in _HF_VISION.items()}
    text = {theirs: getattr(config.text, ours) for ours, theirs in _HF_TEXT.items()}
    return {
        "architectures": ["SiglipModel"],
        "model_type": "siglip",
        "initializer_factor": 1.0,
        "vision_config": {**vision, "num_channels": 3, "model_type": "siglip_vision_model"},
        "text_config": {**text, "bos_token_id": 2, "model_type": "siglip_text_model"},
    }


def _block_parameters(width: int, mlp_dim: int) -> int:
    layer_norms = 2 * 2 * width
    attention = 4 * (width * width + width)
    mlp = width * mlp_dim + mlp_dim + mlp_dim * width + width
    return layer_norms + attention + mlp


def parameter_count(config: ModelConfig) -> dict[str, int]:
    """Parameters per tower, from the shape alone (no torch, no weights)."""
    v, t = config.vision, config.text
    vision = (
        3 * v.patch_size**2 * v.width + v.width  # patch embedding
        + v.num_patches * v.width  # position embedding
        + v.depth * _block_parameters(v.width, v.mlp_dim)
        + 2 * v.width  # post layernorm
        + v.width + _block_parameters(v.width, v.mlp_dim) - 2 * v.width  # MAP head: probe, attn, LN, MLP
    )  # fmt: skip
    text = (
        t.vocab_size * t.width
        + t.context_length * t.width
        + t.depth * _block_parameters(t.width, t.mlp_dim)
        + 2 * t.width  # final layernorm
        + t.width * t.embed_dim + t.embed_dim  # head
    )  # fmt: skip
    return {"image": vision, "text": text, "total": vision + text + 2}


# --- FLOPs from the shape (what `siglip2-sdk bench` holds the measured speed against) -------------


def _block_macs(tokens: int, width: int, mlp_dim: int) -> int:
    projections = 4 * tokens * width * width  # q, k, v, out
    attention = 2 * tokens * tokens * width  # scores and the weighted sum, all heads together
    return projections + attention + 2 * tokens * width * mlp_dim


def tower_flops(config: ModelConfig) -> dict[str, int]:
    """FLOPs (2 x multiply-accumulates) of one image and one text through its tower: every matmul
    (patch embedding, attention projections and products, MLPs, the MAP head, the text head). Norms,
    GELU, softmax and adds are left out: under 1% at the released shapes."""
    v, t = config.vision, config.text
    patches = v.num_patches
    map_head = (
        2 * v.width * v.width  # the probe's query and the output projection (one token)
        + 2 * patches * v.width * v.width  # keys and values of every patch
        + 2 * patches * v.width  # one query's scores and weighted sum
        + 2 * v.width * v.mlp_dim
    )  # fmt: skip
    image = 3 * v.patch_size**2 * v.width * patches + v.depth * _block_macs(patches, v.width, v.mlp_dim)
    text = t.depth * _block_macs(t.context_length, t.width, t.mlp_dim) + t.width * t.embed_dim
    return {"image": 2 * (image + map_head), "text": 2 * text}
