"""Lowering to ONNX: each tower traced with the dynamo exporter (opset 18, dynamic batch), then stored at
the precision asked for. Measured on the demo student (256 held-out pairs; gate: cosine >= 0.99 and
top-1 agreement >= 0.98 both ways; speed: `siglip2-sdk bench`, 1 thread, image batch 1 / batch 32):

- int8 (the default int8, because it is the only int8 scheme that keeps the gate): int8 weights in
  blocks of 32 (MatMulNBits), fp32 activations, token table int8. Cosine min 0.99999, agreement
  0.992/0.988, towers 24.9 MB (fp32: 97.4). Slower than fp32 on this tiny model (1.6 vs 0.7 ms,
  3,055 vs 3,819 images/s): the kernel dequantizes its blocks on every call.
- int8-dynamic: onnxruntime's dynamic int8 in `INT8_MODULES` (activations quantized per tensor at run
  time, so an embedding also depends on the rest of its batch). The fastest (0.5 ms, 5,005 images/s),
  but agreement 0.92/0.92 (cosine min 0.9993): one scale per batch is too coarse for the demo
  student's crowded embeddings.
- int8-static: NNCF post-training int8 in `INT8_MODULES` (transformer preset, SmoothQuant, activation
  ranges from the calibration data). Agreement 0.89/0.88 (cosine min 0.9986), text 16x slower than
  fp32 at batch 1 (8.2 ms), export 4x slower.
- fp16: fp16 weights computed in fp32: cosine 1.0, agreement 1.0, half the size, fp32 speed. The
  whole graph cast to fp16 ran no faster on onnxruntime's CPU provider and lost accuracy (cosine min
  0.9995).

On 1,146 test examples every int8 scheme kept zero-shot top-1 within 0.13 points and t->i R@1 within
0.05 of the float model: the agreement gate is the stricter test.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch

from .lowering import INT8_MODULES, Calibration, ExportTowers, Lowered

OPSET = 18
FILES = {"image_model": "image.onnx", "text_model": "text.onnx"}
INPUTS = {"image": "pixel_values", "text": "input_ids"}
PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic", "int8-static")
WEIGHT_BLOCK = 32  # int8 weights per scale: with 128 the demo student fell to 0.977 t->i agreement
SCHEMES = {
    "fp32": "none",
    "fp16": "fp16 weights (matrices and tables), computed in fp32",
    "int8": f"int8 weights in blocks of {WEIGHT_BLOCK} (MatMulNBits), fp32 activations; token embedding int8",
    "int8-dynamic": (
        "onnxruntime dynamic int8 in the image blocks and text MLPs: int8 weights per channel, "
        "activations per tensor at run time; token embedding int8"
    ),
    "int8-static": (
        "NNCF static int8 in the image blocks and text MLPs (transformer preset, SmoothQuant, activation "
        "ranges from calibration data); token embedding int8"
    ),
}


def _export(
    module: torch.nn.Module, example: torch.Tensor, input_name: str, output_name: str, path: Path
) -> None:
    # The example has batch 2: traced with batch 1, the exporter silently fixes the batch axis at 1.
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        opset_version=OPSET,
        input_names=[input_name],
        output_names=[output_name],  # not "embedding": the text graph already has a value of that name
        dynamic_shapes=({0: batch},),
        verbose=False,
    )
    program.save(str(path))


def lower(towers: ExportTowers, precision: str, folder: Path, calibration: Calibration) -> Lowered:
    """image.onnx and text.onnx in `folder`, both with a dynamic batch axis."""
    export_fp32(towers, folder)
    if precision != "fp32":
        inputs = {"image": calibration.pixels, "text": calibration.input_ids}
        with _quiet_quantizers():
            for tower in ("image", "text"):
                path = folder / FILES[f"{tower}_model"]
                REWRITE[precision](path, tower, inputs[tower])
    return Lowered(files=dict(FILES), quantization=SCHEMES[precision], precision=precision.split("-")[0])


def export_fp32(towers: ExportTowers, folder: Path) -> None:
    with torch.no_grad():
        _export(
            towers.image,
            towers.example_pixels(),
            INPUTS["image"],
            "image_embedding",
            folder / FILES["image_model"],
        )
        _export(
            towers.text, towers.example_ids(), INPUTS["text"], "text_embedding", folder / FILES["text_model"]
        )


def fp16_weights(path: Path, tower: str, calibration: np.ndarray) -> None:
    """Every float matrix and table stored as fp16 and cast back to fp32 in the graph (onnxruntime
    folds the casts when it loads the file). onnxruntime's float16 converter, asked for the same
    (every op type kept in fp32, force_fp16_initializers), measured cosine 0.9995 instead of 1.0."""
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(path)
    graph = model.graph
    casts = []
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type != TensorProto.FLOAT or len(tensor.dims) < 2:
            continue
        half = numpy_helper.from_array(
            numpy_helper.to_array(tensor).astype(np.float16), f"{tensor.name}.fp16"
        )
        casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=TensorProto.FLOAT))
        graph.initializer[index].CopyFrom(half)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, path)


def int8_weights(path: Path, tower: str, calibration: np.ndarray) -> None:
    """Weight-only int8: MatMul weights symmetric per block of WEIGHT_BLOCK inputs (MatMulNBits, which
    dequantizes inside the kernel), the token table through onnxruntime's int8 Gather."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # MatMulNBits takes 8-bit MatMul weights only; its Gather counterpart only 4-bit ones.
    quantize_dynamic(path, path, weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"])
    quantizer = MatMulNBitsQuantizer(
        onnx.load(path), bits=8, block_size=WEIGHT_BLOCK, is_symmetric=True, op_types_to_quantize=("MatMul",)
    )
    quantizer.process()
    onnx.save(quantizer.model.model, path)


def int8_dynamic(path: Path, tower: str, calibration: np.ndarray) -> None:
    """onnxruntime's dynamic int8 on the nodes inside `INT8_MODULES`: weights per output channel,
    activations quantized per tensor at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    inside = _nodes_in(onnx.load(path, load_external_data=False), INT8_MODULES[tower])
    quantize_dynamic(path, path, weight_type=QuantType.QInt8, per_channel=True, nodes_to_quantize=inside)


def int8_static(path: Path, tower: str, calibration: np.ndarray) -> None:
    """NNCF post-training int8 on the nodes inside `INT8_MODULES`, activation ranges observed on
    `calibration` (one example per step: NNCF warns that larger batches skew some of its statistics)."""
    import nncf

    model = onnx.load(path)
    inside = set(_nodes_in(model, INT8_MODULES[tower]))
    dataset = nncf.Dataset(list(calibration), lambda row: {INPUTS[tower]: row[None]})
    ignored = nncf.IgnoredScope(names=[node.name for node in model.graph.node if node.name not in inside])
    quantized = nncf.quantize(
        model,
        dataset,
        subset_size=len(calibration),
        model_type=nncf.ModelType.TRANSFORMER,
        ignored_scope=ignored,
    )
    onnx.save(quantized, path)


# How each precision rewrites the fp32 files in place.
REWRITE = {
    "fp16": fp16_weights,
    "int8": int8_weights,
    "int8-dynamic": int8_dynamic,
    "int8-static": int8_static,
}


def _nodes_in(model: onnx.ModelProto, module_types: tuple[type, ...]) -> list[str]:
    """Names of the graph's nodes traced from inside one of `module_types` (the exporter records each
    node's module classes in its metadata)."""
    wanted = {f"{cls.__module__}.{cls.__qualname__}" for cls in module_types}
    names = []
    for node in model.graph.node:
        hierarchy = next(
            (p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.class_hierarchy"), "[]"
        )
        if wanted & set(ast.literal_eval(hierarchy)):
            names.append(node.name)
    return names


@contextlib.contextmanager
def _quiet_quantizers() -> Iterator[None]:
    """onnxruntime's quantizers log generic pre-processing advice on the root logger every call; NNCF
    logs each placement decision and draws progress bars on stdout (the CLI shows its own status)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # Its module calls logging.basicConfig(level=INFO) when first imported; the caller's logging stays.
    import onnxruntime.quantization.matmul_nbits_quantizer  # noqa: F401

    root.handlers[:] = handlers
    root.setLevel(level)
    loggers = [root, logging.getLogger("nncf")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
