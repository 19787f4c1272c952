"""What every runtime's lowering module takes and gives back, so the bundle writer stays one loop.

A lowering module (`onnx`, `executorch`, `litert`) exposes `PRECISIONS` (the precisions it offers)
and `lower(towers, precision, folder, calibration) -> Lowered`: it writes the two tower files into
`folder` and says how it quantized them and what batch sizes the files accept.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from siglip2_sdk.core.model import MLP, Block, ImageEncoder, SiglipModel, TextEncoder, TokenEmbeddings


@dataclass
class ExportTowers:
    """The two modules a bundle's files run, with the shapes of their inputs."""

    image: torch.nn.Module  # float32 (N, 3, H, W) in [-1, 1] -> (N, D) L2-normalized
    text: torch.nn.Module  # int64 (N, L) token ids -> (N, D) L2-normalized
    image_size: int
    context_length: int

    @classmethod
    def of(cls, model: SiglipModel, text: torch.nn.Module | None = None) -> ExportTowers:
        """The model's own towers; `text` replaces the text tower (e.g. with a pruned vocabulary)."""
        return cls(
            image=ImageEncoder(model).eval(),
            text=(text or TextEncoder(model)).eval(),
            image_size=model.config.vision.image_size,
            context_length=model.config.text.context_length,
        )

    def example_pixels(self, batch: int = 2) -> torch.Tensor:
        return torch.zeros(batch, 3, self.image_size, self.image_size)

    def example_ids(self, batch: int = 2) -> torch.Tensor:
        return torch.zeros(batch, self.context_length, dtype=torch.int64)


# Where int8 goes when activations are quantized too (module classes, matched in the traced graphs).
# On the demo student (256 held-out pairs) int8 in the patch embedding, the MAP head and the text
# tower's attention and head cost 1-3% top-1 agreement each with no size to speak of saved; the image
# blocks and the text MLPs hold most of the weights and kept the gate. The token table is weights only.
INT8_MODULES = {"image": (Block,), "text": (TokenEmbeddings, MLP)}

# The linears that compute in int8 where activations are quantized per row at run time (ExecuTorch's
# and LiteRT's int8), per tower: every linear inside a module of a listed type, and for a (type, names)
# pair the named linears inside each module of that type. The image blocks' q and k projections (the
# attention logits), the text attention, the patch embedding and the heads' projections stay fp32.
# On the demo student, LiteRT with every linear in int8 adds half again to the noise int8 puts on the
# similarity scores, and the gate's top-1 agreement passes it on 16% of random samples of 256 test
# pairs; with this layout on 55%, as often as weight-only int8 (benchmarks/results/parity_gate.md).
# On a B/32 it costs ExecuTorch's image tower 30.6 against 23.5 ms (design_choices.md).
INT8_LINEARS = {
    "image": (MLP, (Block, ("self_attn.v_proj", "self_attn.out_proj"))),
    "text": (MLP,),
}


def linears_in(tower: torch.nn.Module, spec: tuple) -> set[str]:
    """The names of the linears in `tower` that `spec` (an INT8_LINEARS entry) picks."""
    picked: set[str] = set()
    for name, module in tower.named_modules():
        for entry in spec:
            inner_type, names = entry if isinstance(entry, tuple) else (entry, None)
            if not isinstance(module, inner_type):
                continue
            for inner, linear in module.named_modules():
                if isinstance(linear, torch.nn.Linear) and (names is None or inner in names):
                    picked.add(f"{name}.{inner}" if name else inner)
    return picked


@dataclass
class Calibration:
    """Real model inputs for static quantization; never the held-out parity examples."""

    pixels: np.ndarray  # float32 (N, 3, H, W), preprocessed
    input_ids: np.ndarray  # int64 (N, L), tokenized


@dataclass
class Lowered:
    files: dict[str, str]  # role ("image_model", "text_model") -> file name in the bundle folder
    quantization: str  # the scheme in words, for the manifest
    # The manifest's precision (fp32 / fp16 / int8) where the offered name also names the scheme
    # ("int8-static" -> "int8"); None: the offered name itself.
    precision: str | None = None
    # Per tower: a fixed batch the file only accepts (TFLite), or the largest of a dynamic batch axis.
    batch_size: dict[str, int | None] = field(default_factory=lambda: {"image": None, "text": None})
    max_batch: dict[str, int | None] = field(default_factory=lambda: {"image": None, "text": None})
    # Per tower, the delegate partitions the file runs in (ExecuTorch: lowered into the file; LiteRT:
    # what its default delegate makes of the file at load); empty where no delegate runs (ONNX).
    delegate_partitions: dict[str, int] = field(default_factory=dict)


# Loggers of the lowering libraries that print advice meant for their own developers (missing
# torchvision ops, optional CUDA kernels) on every export.
NOISY_LOGGERS = ("torch.onnx", "torchao", "torch.utils._pytree", "executorch", "litert_torch", "absl")


@contextlib.contextmanager
def quiet_lowering() -> Iterator[None]:
    """Silence the lowering libraries' warnings and info logs; errors still surface."""
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
