"""Lowering to LiteRT (TFLite): each tower converted by litert-torch at a fixed batch, then quantized.

- int8 (the default int8): dynamic int8 (int8 weights per channel, activations quantized per row at
  run time, XNNPACK's qd8 kernels) in the linears `INT8_LINEARS` picks, the same layout as
  ExecuTorch's int8; the token table int8 weights; everything else fp32. One delegate partition per
  tower.
- int8-weight-only: AI Edge Quantizer's `weight_only_wi8_afp32` on both towers: int8 weights, token
  embedding included, float compute. The smallest files, at fp32 speed.
- int8-dynamic: dynamic int8 in every fully connected layer. The fastest LiteRT scheme, and the one
  that moves the similarity scores most; the gate refuses it on the demo student more often than not.
- int8-static: int8 compute. The image tower by PT2E static quantization calibrated on real images,
  the text tower by AI Edge Quantizer's dynamic int8 recipe (it also quantizes the token embedding,
  which PT2E leaves in float).

What each measured: benchmarks/results/b32.md, parity_gate.md and design_choices.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .lowering import INT8_LINEARS, Calibration, ExportTowers, Lowered, linears_in

FILES = {"image_model": "image.tflite", "text_model": "text.tflite"}
PRECISIONS = ("fp32", "int8", "int8-weight-only", "int8-dynamic", "int8-static")
# The converter cannot lower a dynamic batch axis, so each file takes one fixed batch and readers pad
# the last chunk. Batch 1, measured with LiteRT on 2 CPU threads: a B/32 image tower is compute-bound
# (batch 8 ran at 2.4-2.6 images/s against 1.9-2.7 for batch 1), while with a fixed batch of 8 one
# query or one photo costs as much as 8. Only the 3-layer demo student gains from batching (757 -> 1464
# images/s at batch 32), and there a batch-1 call already takes about a millisecond.
BATCH_SIZE = 1
INT8_SCHEME = (
    "AI Edge Quantizer: dynamic int8 (int8 weights per channel, activations per row at run time) in the "
    "MLPs and the image blocks' v and output projections; token embedding int8 weights; patch "
    "embedding, q and k projections, text attention and the heads' attention and projection in fp32"
)
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
            _quantize(text_path, _library_recipe("dynamic_wi8_afp32"))
        elif precision == "int8":
            for tower, path in (("image", image_path), ("text", text_path)):
                module = getattr(towers, tower)
                picked = linears_in(module, INT8_LINEARS[tower])
                _quantize(path, _int8_linears(path, [module.get_submodule(n).weight for n in picked]))
        elif precision == "int8-weight-only":
            _quantize(image_path, _library_recipe("weight_only_wi8_afp32"))
            _quantize(text_path, _library_recipe("weight_only_wi8_afp32"))
        elif precision == "int8-dynamic":
            _quantize(image_path, _dynamic_fully_connected())
            _quantize(text_path, _dynamic_fully_connected())
    schemes = {
        "fp32": "none",
        "int8": INT8_SCHEME,
        "int8-weight-only": WEIGHT_ONLY_SCHEME,
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


def _quantize(path: Path, rules: list[dict]) -> None:
    """Replace the float .tflite at `path` with its version quantized by AI Edge Quantizer `rules` (a
    recipe: of the rules matching an op, the last one applies)."""
    from ai_edge_quantizer import quantizer

    result = quantizer.Quantizer(str(path), rules).quantize(
        enable_progress_bar=False, enable_progress_report=False
    )
    result.export_model(str(path), overwrite=True)


def _library_recipe(name: str) -> list[dict]:
    """One of AI Edge Quantizer's own recipes (imported only where a file is quantized)."""
    from ai_edge_quantizer import recipe

    return getattr(recipe, name)()


def _dynamic_fully_connected() -> list[dict]:
    """Dynamic int8 in the fully connected layers, int8 weights with float compute everywhere else
    (the token table): the library's own two recipes, the later rule taking precedence. Its
    dynamic_wi8_afp32 alone also quantizes the attention's batch matmuls, whose kernel LiteRT 2.3
    then refuses to prepare (int8 activations on both sides)."""
    dynamic = [dict(rule, operation="FULLY_CONNECTED") for rule in _library_recipe("dynamic_wi8_afp32")]
    return _library_recipe("weight_only_wi8_afp32") + dynamic


def _int8_linears(path: Path, weights: list[torch.Tensor]) -> list[dict]:
    """Dynamic int8 in the fully connected layers of the float file at `path` that compute one of
    `weights`, int8 weights for the token table, nothing else. An op is found by its weight rather
    than by the names the converter gives tensors (one name lists several fused modules); a rule
    names the op by its scope, the quantizer's name for it."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    wanted = [w.detach().to(torch.float32).numpy() for w in weights]
    model = tfl.read_model(path)
    dynamic = _library_recipe("dynamic_wi8_afp32")[0]
    weight_only = _library_recipe("weight_only_wi8_afp32")[0]
    fully_connected = tfl.TFL_OP_NAME_TO_CODE["FULLY_CONNECTED"]
    rules = [dict(weight_only, operation="EMBEDDING_LOOKUP")]
    found: set[int] = set()
    for graph in model.subgraphs:
        for op in graph.operators:
            if model.operatorCodes[op.opcodeIndex].builtinCode != fully_connected:
                continue
            stored = tfl.get_tensor_data(graph.tensors[op.inputs[1]], model.buffers)
            match = next((i for i, w in enumerate(wanted) if _computes(stored, w)), None)
            if match is not None:
                scope = re.escape(tfl.get_op_scope(op, graph.tensors))
                rules.append(dict(dynamic, regex=f"^{scope}$", operation="FULLY_CONNECTED"))
                found.add(match)
    if len(found) != len(wanted):
        missing = len(wanted) - len(found)
        raise RuntimeError(f"{path.name}: {missing} of {len(wanted)} int8 linears not found in the file")
    return rules


def _computes(stored: np.ndarray | None, weight: np.ndarray) -> bool:
    """Whether a fully connected layer's stored weight is `weight` with a factor per input column:
    the converter folds a LayerNorm's scale into the linear after it."""
    if stored is None or stored.shape != weight.shape:
        return False
    stored = stored.astype(np.float32)
    scale = (stored * weight).sum(axis=0) / np.maximum((weight * weight).sum(axis=0), 1e-30)
    return np.allclose(stored, weight * scale, rtol=1e-4, atol=1e-6 * float(np.abs(stored).max()))


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
