"""Lowering to LiteRT (TFLite): each tower converted by litert-torch at a fixed batch, then quantized.

- int8: AI Edge Quantizer's weight-only int8 (`weight_only_wi8_afp32`) on both towers: int8 weights,
  token embedding included, float compute. A quarter of the size at fp32 speed, and of LiteRT's int8
  schemes the one whose answers stay closest to the float model's.
- int8-dynamic: int8 compute in every fully connected layer (activations quantized per tensor at run
  time, XNNPACK's qd8 kernels), int8 weights with float compute elsewhere; one delegate partition per
  tower. The fastest LiteRT scheme; on a small student whose best and second-best answers are
  thousandths apart it can fall under the gate's top-1 agreement where weight-only int8 does not.
- int8-static: int8 compute. The image tower by PT2E static quantization calibrated on real images,
  the text tower by AI Edge Quantizer's dynamic int8 recipe (it also quantizes the token embedding,
  which PT2E leaves in float).

What each measured: benchmarks/results/b32.md and design_choices.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .lowering import Calibration, ExportTowers, Lowered

FILES = {"image_model": "image.tflite", "text_model": "text.tflite"}
PRECISIONS = ("fp32", "int8", "int8-dynamic", "int8-static")
# The converter cannot lower a dynamic batch axis, so each file takes one fixed batch and readers pad
# the last chunk. Batch 1, measured with LiteRT on 2 CPU threads: a B/32 image tower is compute-bound
# (batch 8 ran at 2.4-2.6 images/s against 1.9-2.7 for batch 1), while with a fixed batch of 8 one
# query or one photo costs as much as 8. Only the 3-layer demo student gains from batching (757 -> 1464
# images/s at batch 32), and there a batch-1 call already takes about a millisecond.
BATCH_SIZE = 1
WEIGHT_ONLY_SCHEME = (
    "AI Edge Quantizer weight_only_wi8_afp32: int8 weights (token embedding included), fp32 compute"
)
DYNAMIC_SCHEME = (
    "AI Edge Quantizer: dynamic int8 in every fully connected layer (int8 weights per channel, "
    "activations quantized at run time), int8 weights and fp32 compute elsewhere (token embedding)"
)
STATIC_SCHEME = (
    "image: PT2E static int8 (weights symmetric per channel, activations per tensor from real "
    "calibration images; the file takes int8 pixels, its input scale and zero point say how); "
    "text: AI Edge Quantizer dynamic_wi8_afp32 (int8 weights per channel, token embedding included; "
    "activations quantized at run time)"
)


def lower(towers: ExportTowers, precision: str, folder: Path, calibration: Calibration) -> Lowered:
    """image.tflite and text.tflite in `folder`, both taking batches of exactly BATCH_SIZE."""
    pixels, ids = towers.example_pixels(BATCH_SIZE), towers.example_ids(BATCH_SIZE)
    image_path, text_path = folder / FILES["image_model"], folder / FILES["text_model"]
    with _quiet_converter(), torch.no_grad():
        if precision == "int8-static":
            quantized, quant_config = _static_int8(towers.image, pixels, calibration.pixels)
            _convert(quantized, pixels, image_path, quant_config)
        else:
            _convert(towers.image, pixels, image_path)
        _convert(towers.text, ids, text_path)
        if precision == "int8-static":
            _quantize(text_path, "dynamic_wi8_afp32")
        elif precision == "int8":
            _quantize(image_path, "weight_only_wi8_afp32")
            _quantize(text_path, "weight_only_wi8_afp32")
        elif precision == "int8-dynamic":
            _quantize(image_path, "dynamic_fully_connected")
            _quantize(text_path, "dynamic_fully_connected")
    schemes = {
        "fp32": "none",
        "int8": WEIGHT_ONLY_SCHEME,
        "int8-dynamic": DYNAMIC_SCHEME,
        "int8-static": STATIC_SCHEME,
    }
    return Lowered(
        files=dict(FILES),
        quantization=schemes[precision],
        precision="int8" if precision.startswith("int8") else precision,
        batch_size={"image": BATCH_SIZE, "text": BATCH_SIZE},
        delegate_partitions={
            tower: delegate_partitions(folder / FILES[f"{tower}_model"]) for tower in ("image", "text")
        },
    )


def delegate_partitions(path: Path) -> int:
    """How many XNNPACK partitions LiteRT's interpreter cuts the file into when it loads it with its
    default delegate, as the runtime backend and the Android app load it. The delegate decides at
    load, so this is what this build of LiteRT decides; each partition is one DELEGATE node in the
    interpreter's graph."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    return sum(1 for op in interpreter._get_ops_details() if op["op_name"] == "DELEGATE")


def _convert(module: torch.nn.Module, example: torch.Tensor, path: Path, quant_config=None) -> None:
    import litert_torch

    litert_torch.convert(module, (example,), quant_config=quant_config).export(str(path))


def _static_int8(module: torch.nn.Module, example: torch.Tensor, pixels: np.ndarray):
    """The module with int8 quantize/dequantize pairs whose activation ranges were observed on
    `pixels`, and the quantization config the converter needs to fuse them into int8 kernels."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    observed = prepare_pt2e(torch.export.export(module, (example,)).module(), quantizer)
    for batch in _fixed_batches(pixels, len(example)):
        observed(torch.from_numpy(batch))
    return convert_pt2e(observed, fold_quantize=False), QuantConfig(pt2e_quantizer=quantizer)


def _fixed_batches(rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """`rows` in batches of exactly `size` (the exported graph's shape); the last one is filled up
    with rows from the start, so the observers only ever see real images."""
    if len(rows) == 0:
        raise ValueError("static int8 needs at least one calibration image")
    for start in range(0, len(rows), size):
        indices = np.arange(start, start + size) % len(rows)
        yield np.ascontiguousarray(rows[indices], dtype=np.float32)


def _quantize(path: Path, recipe_name: str) -> None:
    """Replace the float .tflite at `path` with its version quantized by an AI Edge Quantizer recipe
    (one of its own, or "dynamic_fully_connected")."""
    from ai_edge_quantizer import quantizer, recipe

    if recipe_name == "dynamic_fully_connected":
        rules = _dynamic_fully_connected(recipe)
    else:
        rules = getattr(recipe, recipe_name)()
    result = quantizer.Quantizer(str(path), rules).quantize(
        enable_progress_bar=False, enable_progress_report=False
    )
    result.export_model(str(path), overwrite=True)


def _dynamic_fully_connected(recipe) -> list[dict]:
    """Dynamic int8 in the fully connected layers, int8 weights with float compute everywhere else
    (the token table): the library's own two recipes, the later rule taking precedence. Its
    dynamic_wi8_afp32 alone also quantizes the attention's batch matmuls, whose kernel LiteRT 2.3
    then refuses to prepare (int8 activations on both sides)."""
    dynamic = [dict(rule, operation="FULLY_CONNECTED") for rule in recipe.dynamic_wi8_afp32()]
    return recipe.weight_only_wi8_afp32() + dynamic


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """litert-torch prints a line per conversion stage (the CLI shows its own status), and it and
    AI Edge Quantizer log advice on the root logger: that int64 token ids become int32 (the backend
    feeds int32), that the exported PT2E graph reports training mode (the towers have no dropout or
    batch norm), that a file is overwritten (on purpose, in place)."""
    from litert_torch import config

    shown = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    root = logging.getLogger()
    level = root.level
    config.show_progress = False
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        if shown is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = shown
