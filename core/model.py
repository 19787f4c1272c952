"""SigLIP 2 fixed-resolution two-tower model in plain PyTorch, written for export.

Every attention (the MAP head's too) is explicit q/k/v linears + `scaled_dot_product_attention`:
`nn.MultiheadAttention` lowers to a slow non-delegated op in ExecuTorch. There is no data-dependent
control flow, and each tower is callable on its own (`pixel_values -> embedding`,
`input_ids -> embedding`), which is what the exporters trace.

Module and parameter names follow transformers' `SiglipModel`, so checkpoint I/O is a near-identity
mapping (see `checkpoint.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import GELU_APPROXIMATION, ModelConfig, TextConfig, VisionConfig


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self._split_heads(self.q_proj(query))
        k = self._split_heads(self.k_proj(context))
        v = self._split_heads(self.v_proj(context))
        out = F.scaled_dot_product_attention(q, k, v)
        batch, _, length, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1))


class MLP(nn.Module):
    def __init__(self, width: int, mlp_dim: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(width, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, width)
        self.approximate = GELU_APPROXIMATION[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, width: int, heads: int, mlp_dim: int, eps: float, act: str):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(width, eps=eps)
        self.self_attn = Attention(width, heads)
        self.layer_norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, mlp_dim, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer_norm1(x)
        x = x + self.self_attn(h, h)
        return x + self.mlp(self.layer_norm2(x))


class TransformerStack(nn.Module):
    def __init__(self, cfg: VisionConfig | TextConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            Block(cfg.width, cfg.heads, cfg.mlp_dim, cfg.layer_norm_eps, cfg.act) for _ in range(cfg.depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class PatchEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.patch_embedding = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.position_embedding = nn.Embedding(cfg.num_patches, cfg.width)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        return patches + self.position_embedding.weight


class MAPHead(nn.Module):
    """Multihead attention pooling: a learned probe attends over all patch tokens, then LN + MLP."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.attention = Attention(cfg.width, cfg.heads)
        self.layernorm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg.width, cfg.mlp_dim, cfg.act)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        probe = self.probe.expand(tokens.shape[0], -1, -1)
        pooled = self.attention(probe, tokens)
        pooled = pooled + self.mlp(self.layernorm(pooled))
        return pooled[:, 0]


class VisionTower(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = PatchEmbeddings(cfg)
        self.encoder = TransformerStack(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.head = MAPHead(cfg)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, width) unnormalized image embedding."""
        return self.head(self.post_layernorm(self.encoder(self.embeddings(pixel_values))))


class TokenEmbeddings(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.position_embedding = nn.Embedding(cfg.context_length, cfg.width)
        # A compact vocabulary (core/vocabulary.py) keeps some rows of the table and maps each
        # original token id to its row here; None: the full table, indexed by the id itself.
        self.register_buffer("row_of_id", None, persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        rows = input_ids if self.row_of_id is None else self.row_of_id[input_ids]
        return self.token_embedding(rows) + self.position_embedding.weight[:length]


class TextTower(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = TokenEmbeddings(cfg)
        self.encoder = TransformerStack(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.head = nn.Linear(cfg.width, cfg.embed_dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(N, context_length) int64 token ids -> (N, embed_dim) unnormalized text embedding.

        No attention mask: SigLIP attends over the padding too and pools the last position.
        """
        hidden = self.final_layer_norm(self.encoder(self.embeddings(input_ids)))
        return self.head(hidden[:, -1])

    def pooled(self, input_ids: torch.Tensor) -> torch.Tensor:
        """`forward`'s embedding, with the last block computed for the pooled position alone: its keys
        and values still see every position, but its query, output projection and MLP run on the last
        row only, since no later layer reads the others. Exact, and what exported text towers run
        (fewer FLOPs at batch 1); training keeps `forward`, which its recorded figures were made with."""
        *early, last = self.encoder.layers
        x = self.embeddings(input_ids)
        for layer in early:
            x = layer(x)
        h = last.layer_norm1(x)
        x = x[:, -1:] + last.self_attn(h[:, -1:], h)
        x = x + last.mlp(last.layer_norm2(x))
        # The pooled row stays a (B, 1, W) slice up to here: XNNPACK (ExecuTorch) takes a slice and
        # a final reshape, not a select, which would leave the LayerNorm and head outside its graph.
        return self.head(self.final_layer_norm(x)).reshape(x.shape[0], -1)


class SiglipModel(nn.Module):
    """Both towers plus the learned temperature t = exp(logit_scale) and bias b."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.vision_model = VisionTower(config.vision)
        self.text_model = TextTower(config.text)
        self.logit_scale = nn.Parameter(torch.tensor([math.log(10.0)]))
        self.logit_bias = nn.Parameter(torch.tensor([-10.0]))
        # The kept vocabulary (core.vocabulary.KeptVocabulary) it was trained with, if any: the
        # checkpoint's vocabulary.json, or what training compacted the text tower to.
        self.vocabulary = None

    def encode_image(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        emb = self.vision_model(pixel_values)
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_text(self, input_ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        emb = self.text_model(input_ids)
        return F.normalize(emb, dim=-1) if normalize else emb

    def logits(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Pairwise logits t * <img, txt> + b on L2-normalized embeddings, (N_img, N_txt)."""
        return image_emb @ text_emb.T * self.logit_scale.exp() + self.logit_bias

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        return self.logits(self.encode_image(pixel_values), self.encode_text(input_ids))


class ImageEncoder(nn.Module):
    """The image tower alone, emitting L2-normalized embeddings: what a bundle's image file runs."""

    def __init__(self, model: SiglipModel):
        super().__init__()
        self.vision_model = model.vision_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.vision_model(pixel_values), dim=-1)


class TextEncoder(nn.Module):
    """The text tower alone, emitting L2-normalized embeddings: what a bundle's text file runs."""

    def __init__(self, model: SiglipModel):
        super().__init__()
        self.text_model = model.text_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_model.pooled(input_ids), dim=-1)


# Names the scheme `init_weights` follows, so that what was trained from scratch with another one
# (a cached demo teacher) is not taken for the same recipe.
INIT_SCHEME = "big_vision-xavier"


def init_weights(model: SiglipModel, seed: int = 0) -> SiglipModel:
    """Fresh weights for training from scratch, as big_vision initializes SigLIP: Xavier-uniform
    linears (attention, MLPs, heads) and MAP probe, LeCun-normal patch embedding (Flax's Conv
    default), token and position embeddings normal with std 1/sqrt(width) (Flax's Embed default),
    zero biases, LayerNorms at identity; t' = log 10, b = -10.

    The scale matters at small widths: with every weight at std 0.02, what this used before, the
    demo teacher did not learn (benchmarks/results/demo_recipe.md)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                fan_in, fan_out = module.weight.shape[1], module.weight.shape[0]
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                module.weight.uniform_(-bound, bound, generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                std = module.weight[0].numel() ** -0.5
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std, generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=module.weight.shape[1] ** -0.5, generator=generator)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        probe = model.vision_model.head.probe
        bound = math.sqrt(6.0 / (1 + probe.shape[-1]))  # Xavier over Flax's (1, 1, width): fan-in 1
        probe.uniform_(-bound, bound, generator=generator)
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    return model


def build_model(config: ModelConfig, seed: int = 0) -> SiglipModel:
    """A freshly initialized model of the given shape."""
    return init_weights(SiglipModel(config), seed)


def on_numpy(
    encode: Callable[[torch.Tensor], torch.Tensor], device: torch.device
) -> Callable[[np.ndarray], np.ndarray]:
    """numpy in, numpy out: `encode` run on `device` without grad, float32 back on the CPU. The one way
    a torch module runs where the rest of the code speaks numpy (embedding loops, runtimes, the bench)."""

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        return encode(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return run


def numpy_runner(model: SiglipModel, kind: str) -> Callable[[np.ndarray], np.ndarray]:
    """The model's image or text tower on numpy, on the model's device."""
    encode = model.encode_image if kind == "image" else model.encode_text
    return on_numpy(encode, next(model.parameters()).device)
