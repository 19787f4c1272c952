"""Lowering to ExecuTorch: each tower exported for a fixed batch, in ops the XNNPACK partitioner takes
(`delegable`), and delegated to XNNPACK.

int8: PT2E with XNNPACK's dynamic quantization (int8 weights per output channel, activations
quantized per row at run time) where `INT8_LINEARS` says, and the token table as int8 rows
(`quantized_decomposed.embedding_byte`, a kernel of `executorch.kernels.quantized`, which the runtime
backend loads too). Static int8 (activation ranges calibrated on real images, one scale per tensor)
was tried for the image tower and refused by the gate where dynamic per-row activations kept it.

fp16: `delegable`'s tower in half precision behind float32 inputs and outputs (see `HalfTower`), half
the size, in 2 partitions per tower. It is for phones whose CPUs compute in fp16 (ARMv8.2 and later);
x86 CPUs without fp16 arithmetic run it slower than fp32.

What each choice measured: benchmarks/results/design_choices.md and b32.md.
"""

from __future__ import annotations

import copy
import math
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from siglip2_sdk.core.model import MLP, Attention, ImageEncoder, MAPHead

from .lowering import INT8_LINEARS, Calibration, ExportTowers, Lowered, linears_in

FILES = {"image_model": "image.pte", "text_model": "text.pte"}
PRECISIONS = ("fp32", "fp16", "int8")
# One fixed batch: XNNPACK in ExecuTorch delegates no reshape or slice of a symbolic size, so a
# dynamic batch axis cut each demo tower into 22-31 partitions, the ops between them on portable
# kernels; fixed, each tower is 1-3 (figures: benchmarks/results/design_choices.md). Readers feed
# larger batches one call per example (the manifest's batch_size), as with LiteRT.
BATCH_SIZE = 1
GELU_TANH_SCALE = 2 * math.sqrt(2 / math.pi)  # tanh(u) = 2 * sigmoid(2u) - 1
SCHEMES = {
    "fp32": "none (XNNPACK-delegated fp32)",
    "fp16": "fp16 weights and activations (XNNPACK), float32 inputs and outputs",
    "int8": (
        "PT2E XNNPACK dynamic int8 (weights per channel, activations per row at run time) in the MLPs "
        "and the image blocks' v and output projections; token embedding int8 per row; patch embedding, "
        "q and k projections, text attention and the heads' attention and projection in fp32"
    ),
}


class HalfTower(torch.nn.Module):
    """A tower computed in half precision on float32 inputs (token ids pass as they are), giving
    float32 embeddings re-normalized in float32 (half rounding moves the norm by ~1e-3). The tower is
    `delegable`'s copy: its LayerNorms run as XNNPACK means in half, where ExecuTorch 1.5's own half
    LayerNorm (a portable kernel, outside the delegate) is wrong from width 256 on (cosine 0.58
    against float on one LayerNorm(256), 0.07 on the whole B/32 tower)."""

    def __init__(self, tower: torch.nn.Module):
        super().__init__()
        self.tower = delegable(tower).half()  # a copy: the caller's model stays float32

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.half() if inputs.is_floating_point() else inputs
        return _unit_rows(self.tower(inputs).float())


def _last_axis_mean(x: torch.Tensor) -> torch.Tensor:
    """x.mean(dim=-1, keepdim=True) as XNNPACK takes it: it averages only the two innermost axes of a
    4-D tensor, so each row is viewed as (W, 1)."""
    means = x.reshape(-1, 1, x.shape[-1], 1).mean(dim=(2, 3), keepdim=True)
    return means.reshape(*x.shape[:-1], 1)


class DelegableLayerNorm(torch.nn.Module):
    """LayerNorm in ops the XNNPACK partitioner delegates: its own LayerNorm is not, and each one cut
    the tower into another partition."""

    def __init__(self, norm: torch.nn.LayerNorm):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centered = x - _last_axis_mean(x)
        variance = _last_axis_mean(centered * centered)
        return centered * torch.rsqrt(variance + self.eps) * self.weight + self.bias


def _delegable_attention(self: Attention, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """`Attention.forward` as XNNPACK takes it: the softmax written out (scaled_dot_product_attention
    decomposes into a "safe" softmax it does not take) between 3-D batched matmuls (a 4-D matmul
    decomposes into expands, which it does not take either)."""
    batch, width = query.shape[0], query.shape[-1]
    depth = width // self.heads

    def heads(x: torch.Tensor) -> torch.Tensor:  # (B, L, W) -> (B * heads, L, depth)
        length = x.shape[1]
        return x.reshape(batch, length, self.heads, depth).transpose(1, 2).reshape(-1, length, depth)

    # Each projection reads its own copy of its input when they are int8: PT2E quantizes an input the
    # projections share once, and the XNNPACK partitioner cuts the graph after the linears sharing that
    # quantized input, one partition more per block (B/32 image int8: 13 partitions, 1 with copies).
    q_input, k_input, v_input = (
        (query.clone(), context.clone(), context.clone()) if self.copies_inputs else (query, context, context)
    )
    q, k, v = (
        heads(self.q_proj(q_input) * depth**-0.5),
        heads(self.k_proj(k_input)),
        heads(self.v_proj(v_input)),
    )
    out = torch.bmm(torch.bmm(q, k.transpose(1, 2)).softmax(dim=-1), v)
    length = out.shape[1]
    return self.out_proj(
        out.reshape(batch, self.heads, length, depth).transpose(1, 2).reshape(batch, length, width)
    )


def _delegable_mlp(self: MLP, x: torch.Tensor) -> torch.Tensor:
    """`MLP.forward` with tanh-GELU as x * sigmoid(2u), the same function as 0.5x(1 + tanh(u)): the
    tanh form decomposes into a cube XNNPACK does not take."""
    h = self.fc1(x)
    if self.approximate == "tanh":
        h = h * torch.sigmoid(GELU_TANH_SCALE * (h + 0.044715 * h * h * h))
    else:
        h = F.gelu(h)
    return self.fc2(h)


def _delegable_map_head(self: MAPHead, tokens: torch.Tensor) -> torch.Tensor:
    """`MAPHead.forward` for the fixed batch: the probe is expanded only for a batch above 1 (XNNPACK
    takes no expand), and the pooled row is taken by a reshape, which it takes, not a select."""
    probe = self.probe if tokens.shape[0] == 1 else self.probe.expand(tokens.shape[0], -1, -1)
    pooled = self.attention(probe, tokens)
    pooled = pooled + self.mlp(self.layernorm(pooled))
    return pooled.reshape(tokens.shape[0], -1)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """F.normalize(x, dim=-1) in ops XNNPACK takes (its norm decomposes into a square root by `pow`
    and a `sum`, neither taken): the sum of squares as a mean times the width."""
    squares = _last_axis_mean(x * x) * x.shape[-1]
    return x * torch.rsqrt(squares.clamp_min(1e-24))


def _delegable_image_encoder(self: ImageEncoder, pixel_values: torch.Tensor) -> torch.Tensor:
    return _unit_rows(self.vision_model(pixel_values))


def _delegable_text_encoder(self: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    return _unit_rows(self.text_model.pooled(input_ids))


def delegable(tower: torch.nn.Module, int8_linears: tuple = ()) -> torch.nn.Module:
    """A copy of `tower` that computes the same function in ops the XNNPACK partitioner delegates
    (LayerNorm, attention's softmax, tanh-GELU rewritten), so that the tower runs in few partitions:
    each op left outside splits it, and between partitions activations go through the portable
    kernels. Module classes and names stay, so `int8_linears` (see INT8_LINEARS) still finds them."""
    tower = copy.deepcopy(tower)
    quantized = linears_in(tower, int8_linears)
    for name, module in list(tower.named_modules()):
        if isinstance(module, torch.nn.LayerNorm):
            tower.set_submodule(name, DelegableLayerNorm(module))
        elif isinstance(module, Attention):
            projections = (f"{name}.{p}" for p in ("q_proj", "k_proj", "v_proj"))
            module.copies_inputs = sum(p in quantized for p in projections) > 1
            module.forward = types.MethodType(_delegable_attention, module)
        elif isinstance(module, MLP):
            module.forward = types.MethodType(_delegable_mlp, module)
        elif isinstance(module, MAPHead):
            module.forward = types.MethodType(_delegable_map_head, module)
    # The encoders (ImageEncoder; TextEncoder or the pruned one) normalize their embedding last.
    if isinstance(tower, ImageEncoder):
        tower.forward = types.MethodType(_delegable_image_encoder, tower)
    elif hasattr(tower, "text_model"):
        tower.forward = types.MethodType(_delegable_text_encoder, tower)
    return tower


def lower(towers: ExportTowers, precision: str, folder: Path, calibration: Calibration) -> Lowered:
    """image.pte and text.pte in `folder`, each for batches of BATCH_SIZE."""
    int8 = INT8_LINEARS if precision == "int8" else {"image": (), "text": ()}
    if precision == "fp16":
        image, text = HalfTower(towers.image), HalfTower(towers.text)
    else:
        image, text = delegable(towers.image, int8["image"]), delegable(towers.text, int8["text"])
    with torch.no_grad():
        partitions = {
            "image": _lower(
                image, towers.example_pixels(BATCH_SIZE), folder / FILES["image_model"], int8["image"]
            ),
            "text": _lower(text, towers.example_ids(BATCH_SIZE), folder / FILES["text_model"], int8["text"]),
        }
    return Lowered(
        files=dict(FILES),
        quantization=SCHEMES[precision],
        batch_size={"image": BATCH_SIZE, "text": BATCH_SIZE},
        delegate_partitions=partitions,
    )


def _lower(module: torch.nn.Module, example: torch.Tensor, path: Path, int8_linears: tuple) -> int:
    """Write the lowered program to `path` (int8 where `int8_linears` says: see INT8_LINEARS); returns
    how many XNNPACK partitions it calls."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    exported = torch.export.export(module, (example,))
    if int8_linears:
        quantized = _quantized(exported.module(), example, linears_in(module, int8_linears))
        exported = torch.export.export(quantized, (example,))
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    graph = edge.exported_program().graph_module.graph
    partitions = sum(1 for node in graph.nodes if "executorch_call_delegate" in str(node.target))
    # The fusion pass turns each dequantize + embedding pair into one embedding_byte kernel.
    program = edge.to_executorch(ExecutorchBackendConfig(do_quant_fusion_and_const_prop=bool(int8_linears)))
    path.write_bytes(program.buffer)
    return partitions


def _quantized(module: torch.nn.Module, example: torch.Tensor, int8_linears: set[str]):
    """`module` (an exported graph) with int8 quantize/dequantize pairs: the linears named in
    `int8_linears` dynamic int8, every token table as int8 rows. Dynamic quantization observes no
    activation ranges ahead of time, so one run on the example calibrates it."""
    import executorch.kernels.quantized  # noqa: F401  (registers embedding_byte for the fusion pass)
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import ComposableQuantizer
    from torchao.quantization.pt2e.quantizer.embedding_quantizer import EmbeddingQuantizer

    dynamic = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    linears = XNNPACKQuantizer()
    for name in sorted(int8_linears):  # the exported graph's nodes keep the tower's module names
        linears.set_module_name(name, dynamic)
    prepared = prepare_pt2e(module, ComposableQuantizer([EmbeddingQuantizer(), linears]))
    prepared(example)
    return convert_pt2e(prepared)
