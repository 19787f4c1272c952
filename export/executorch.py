"""Lowering to ExecuTorch: each tower exported with a bounded dynamic batch and delegated to XNNPACK.

int8: PT2E with XNNPACK's dynamic quantization (int8 weights per output channel, activations
quantized per row at run time) where `INT8_MODULES` says, and the token table as int8 rows
(`quantized_decomposed.embedding_byte`, a kernel of `executorch.kernels.quantized`, which the runtime
backend loads too). On the demo student (256 held-out pairs, `siglip2-sdk bench` on 1 thread): cosine
min 0.99998, agreement 0.992/0.988, towers 27.1 MB (fp32: 97.0), 2,641 images/s against 2,103.
Static int8 (activation ranges calibrated on real images, one scale per tensor) was measured for the
image tower and refused: cosine min 0.9989 and 85%/92% top-1 agreement, where dynamic per-row
activations kept 99-100%, and no faster (2,005 against 2,024 images/s at batch 32).

fp16: the tower in half precision behind float32 inputs and outputs, LayerNorms in float32 (see
`Float32LayerNorm`); cosine 1.0 on the demo student and on B/32, half the size. It is for phones whose
CPUs compute in fp16 (ARMv8.2 and later): on this x86 CPU (AVX2 and F16C, no fp16 arithmetic) it ran
2.5x slower than fp32 (841 against 2,103 images/s).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from .lowering import INT8_MODULES, Calibration, ExportTowers, Lowered

FILES = {"image_model": "image.pte", "text_model": "text.pte"}
PRECISIONS = ("fp32", "fp16", "int8")
# ExecuTorch plans memory for the largest batch the program accepts: a bound keeps the activation
# arena small on a phone (readers feed larger batches in chunks; the bound is in the manifest).
MAX_BATCH = 64
SCHEMES = {
    "fp32": "none (XNNPACK-delegated fp32)",
    "fp16": "fp16 weights and activations (XNNPACK), LayerNorm in fp32, float32 inputs and outputs",
    "int8": (
        "PT2E XNNPACK dynamic int8 (weights per channel, activations per row at run time) in the image "
        "blocks and the text MLPs; token embedding int8 per row; patch embedding, MAP head, text "
        "attention and head in fp32"
    ),
}


class Float32LayerNorm(torch.nn.Module):
    """A LayerNorm computed in float32 inside a half-precision tower. ExecuTorch 1.5's half LayerNorm
    (left outside the XNNPACK delegate) is wrong from width 256 on: cosine 0.58 against float on one
    LayerNorm(256), 0.07 on the whole B/32 tower, where width 128 and every other op are exact."""

    def __init__(self, norm: torch.nn.LayerNorm):
        super().__init__()
        self.norm = copy.deepcopy(norm).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.float()).to(x.dtype)


class HalfTower(torch.nn.Module):
    """A tower computed in half precision on float32 inputs (token ids pass as they are), giving
    float32 embeddings re-normalized in float32 (half rounding moves the norm by ~1e-3)."""

    def __init__(self, tower: torch.nn.Module):
        super().__init__()
        self.tower = copy.deepcopy(tower).half()  # a copy: the caller's model stays float32
        norms = [(name, m) for name, m in self.tower.named_modules() if isinstance(m, torch.nn.LayerNorm)]
        for name, norm in norms:
            self.tower.set_submodule(name, Float32LayerNorm(norm))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.half() if inputs.is_floating_point() else inputs
        return F.normalize(self.tower(inputs).float(), dim=-1)


def lower(towers: ExportTowers, precision: str, folder: Path, calibration: Calibration) -> Lowered:
    """image.pte and text.pte in `folder`, batch axis dynamic up to MAX_BATCH."""
    image, text = towers.image, towers.text
    if precision == "fp16":
        image, text = HalfTower(image), HalfTower(text)
    int8 = INT8_MODULES if precision == "int8" else {"image": (), "text": ()}
    with torch.no_grad():
        partitions = {
            "image": _lower(image, towers.example_pixels(), folder / FILES["image_model"], int8["image"]),
            "text": _lower(text, towers.example_ids(), folder / FILES["text_model"], int8["text"]),
        }
    return Lowered(
        files=dict(FILES),
        quantization=SCHEMES[precision],
        max_batch={"image": MAX_BATCH, "text": MAX_BATCH},
        delegate_partitions=partitions,
    )


def _lower(module: torch.nn.Module, example: torch.Tensor, path: Path, int8_modules: tuple[type, ...]) -> int:
    """Write the lowered program to `path`; returns how many XNNPACK partitions it calls."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    shapes = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
    exported = torch.export.export(module, (example,), dynamic_shapes=shapes)
    if int8_modules:
        quantized = _quantized(exported.module(), example, int8_modules)
        exported = torch.export.export(quantized, (example,), dynamic_shapes=shapes)
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    graph = edge.exported_program().graph_module.graph
    partitions = sum(1 for node in graph.nodes if "executorch_call_delegate" in str(node.target))
    # The fusion pass turns each dequantize + embedding pair into one embedding_byte kernel.
    program = edge.to_executorch(ExecutorchBackendConfig(do_quant_fusion_and_const_prop=bool(int8_modules)))
    path.write_bytes(program.buffer)
    return partitions


def _quantized(module: torch.nn.Module, example: torch.Tensor, int8_modules: tuple[type, ...]):
    """`module` (an exported graph) with int8 quantize/dequantize pairs: dynamic int8 linears inside
    `int8_modules`, every token table as int8 rows. Dynamic quantization observes no activation ranges
    ahead of time, so one run on the example calibrates it."""
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
    for module_type in int8_modules:
        linears.set_module_type(module_type, dynamic)
    prepared = prepare_pt2e(module, ComposableQuantizer([EmbeddingQuantizer(), linears]))
    prepared(example)
    return convert_pt2e(prepared)
