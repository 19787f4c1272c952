"""Lowering to ONNX: each tower traced with the dynamo exporter (opset 18, dynamic batch), then stored at
the precision asked for. What each scheme keeps of the float model and what it costs, measured on the
demo student and a B/32: benchmarks/results/onnx_int8.md.

- int8 (the default int8): int8 weights in blocks of WEIGHT_BLOCK that onnxruntime rebuilds into fp32
  matrices when it loads the file, and the token table int8 per row. A quarter of the size, fp32
  speed, and the smallest error of the int8 schemes, so it keeps the parity gate where the others
  do not.
- int8-dynamic: onnxruntime's dynamic int8 (int8 weights, activations quantized per tensor at run
  time) in every MatMul but the text head: the fastest scheme, with the largest error (one activation
  scale per batch; an embedding also depends on the rest of its batch).
- int8-static: NNCF post-training int8 in `INT8_MODULES` (transformer preset, SmoothQuant, activation
  ranges from the calibration data).
- fp16: fp16 weights computed in fp32: half the size, fp32 speed. The whole graph cast to fp16 ran
  no faster on onnxruntime's CPU provider and lost accuracy.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
from collections import Counter
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
WEIGHT_BLOCK = 32  # int8 weights per scale (rows of a MatMul weight)
SCHEMES = {
    "fp32": "none",
    "fp16": "fp16 weights (matrices and tables), computed in fp32",
    "int8": (
        f"int8 weights in blocks of {WEIGHT_BLOCK}, rebuilt as fp32 when the file loads (fp32 compute); "
        "token embedding int8 per row"
    ),
    "int8-dynamic": (
        "onnxruntime dynamic int8 in every MatMul but the text head: int8 weights per channel in 7 bits "
        "(reduce_range), activations per tensor at run time; token embedding int8 per row"
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
    """image.onnx and text.onnx in `folder`, both with a dynamic batch axis, stored at `precision`
    and then fused for onnxruntime."""
    export_fp32(towers, folder)
    inputs = {"image": calibration.pixels, "text": calibration.input_ids}
    with _quiet_quantizers():
        for tower in ("image", "text"):
            path = folder / FILES[f"{tower}_model"]
            if precision != "fp32":
                REWRITE[precision](path, tower, inputs[tower])
            fuse(path)
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


def fuse(path: Path) -> None:
    """onnxruntime's transformer optimizer on the file: each tanh-GELU with its bias into one FastGelu,
    each residual Add with the LayerNormalization after it into SkipLayerNormalization, and the
    Add/Mul chains of the remaining LayerNorms and GELUs into single ops. onnxruntime's own graph
    optimizer, at load, knows none of these patterns. Run after quantization, whose tools (NNCF) do
    not read these contrib ops; the patterns are on activations, which quantizing weights leaves be.
    Which ops fused and what they bought: benchmarks/results/design_choices.md."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model = onnx.load(path)
    _reduce_l2_as_sum(model.graph)
    # "clip": the fusion set for pre-LN encoders with tanh GELU. opt_level 0: the Python fusions
    # only; onnxruntime still applies its own optimizations when it loads the file.
    fused = optimize_model(model, model_type="clip", opt_level=0, optimization_options=FusionOptions("clip"))
    onnx.save(fused.model, path)


def fused_operators(path: Path) -> Counter:
    """How many of each onnxruntime contrib op (com.microsoft) the file's graph holds."""
    graph = onnx.load(path, load_external_data=False).graph
    return Counter(node.op_type for node in graph.node if node.domain == "com.microsoft")


def _reduce_l2_as_sum(graph: onnx.GraphProto) -> None:
    """ReduceL2 (the embedding's L2 norm) spelled out as Mul -> ReduceSum -> Sqrt, the same sum.
    onnxruntime's symbolic shape inference has no rule for opset 18's ReduceL2 (axes as an input)
    and gives up on the whole graph, and the transformer optimizer's SkipLayerNormalization fusion
    needs the shapes it infers."""
    from onnx import helper

    for node in list(graph.node):
        if node.op_type != "ReduceL2" or node.domain:
            continue
        data, out = node.input[0], node.output[0]
        summed = helper.make_node("ReduceSum", [f"{out}.squares", *node.input[1:]], [f"{out}.sum"])
        summed.attribute.extend(node.attribute)  # keepdims, noop_with_empty_axes: both ops have them
        spelled = [helper.make_node("Mul", [data, data], [f"{out}.squares"]), summed]
        spelled.append(helper.make_node("Sqrt", [f"{out}.sum"], [out]))
        _replace_node(graph, node, spelled)


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
    _prepend(graph, casts)
    onnx.save(model, path)


def int8_weights(path: Path, tower: str, calibration: np.ndarray) -> None:
    """Weight-only int8 that computes at fp32 speed: every MatMul weight int8 per block of
    WEIGHT_BLOCK inputs, the token table int8 per row."""
    model = onnx.load(path)
    _int8_weight_blocks(model.graph)
    _int8_token_rows(model.graph)
    onnx.save(model, path)


def int8_dynamic(path: Path, tower: str, calibration: np.ndarray) -> None:
    """onnxruntime's dynamic int8 on every MatMul with a constant weight (attention included): weights
    per output channel, activations per tensor at run time; the token table int8 per row.
    `reduce_range` keeps weights to 7 bits: on AVX2 without VNNI the u8 x s8 kernel adds pairs of
    products in int16 (`vpmaddubsw`), which full-range weights overflow (image cosine 0.94 on the demo
    student without it, 0.999 with it), as onnxruntime's quantization guide warns. The text head
    (a Gemm) stays fp32, a negligible share of the work."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        path,
        path,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        op_types_to_quantize=["MatMul"],
    )
    model = onnx.load(path)
    _int8_token_rows(model.graph)
    onnx.save(model, path)


def _int8_weight_blocks(graph: onnx.GraphProto) -> None:
    """Each float MatMul weight (K, N) stored as int8 blocks of WEIGHT_BLOCK rows with one fp32 scale
    per block and column, rebuilt by Cast -> Mul -> Reshape on constants, which onnxruntime folds
    back into an fp32 matrix when it loads the file: int8 on disk, fp32 kernels at run time.
    Hand-written because onnxruntime's weight-only int8 (MatMulNBits) dequantizes its blocks on every
    call (3x slower than fp32 on B/32) and its DequantizeLinear is not folded at load."""
    from onnx import TensorProto, helper, numpy_helper

    weights = _constant_inputs(graph, {("MatMul", 1)})
    rebuilt = []
    for tensor in list(graph.initializer):
        if tensor.name not in weights or tensor.data_type != TensorProto.FLOAT or len(tensor.dims) != 2:
            continue
        rows, cols = tensor.dims
        if rows % WEIGHT_BLOCK:
            continue
        blocks = numpy_helper.to_array(tensor).reshape(rows // WEIGHT_BLOCK, WEIGHT_BLOCK, cols)
        quantized, scale = _symmetric_int8(blocks, axis=1)
        name = tensor.name
        graph.initializer.remove(tensor)
        graph.initializer.extend(
            [
                numpy_helper.from_array(quantized, f"{name}.int8"),
                numpy_helper.from_array(scale, f"{name}.scale"),
                numpy_helper.from_array(np.array([rows, cols], dtype=np.int64), f"{name}.shape"),
            ]
        )
        rebuilt += [
            helper.make_node("Cast", [f"{name}.int8"], [f"{name}.float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{name}.float", f"{name}.scale"], [f"{name}.blocks"]),
            helper.make_node("Reshape", [f"{name}.blocks", f"{name}.shape"], [name]),
        ]
    _prepend(graph, rebuilt)


def _int8_token_rows(graph: onnx.GraphProto) -> None:
    """The token table (a Gather's constant 2-D data) as int8 with one scale per row: the looked-up
    rows and their scales are gathered and multiplied, so only the rows a text uses are touched.
    Hand-written because onnxruntime quantizes a Gather's table with one scale for all 256k rows,
    the largest error in the int8 text tower."""
    from onnx import TensorProto, helper, numpy_helper

    # Only a table one Gather alone reads: rewriting a shared one would leave its other readers dangling.
    readers = Counter(name for node in graph.node for name in node.input)
    only_gathered = _constant_inputs(graph, {("Gather", 0)})
    tables = {t.name: t for t in graph.initializer if t.name in only_gathered and readers[t.name] == 1}
    for node in list(graph.node):
        table = tables.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or table.data_type != TensorProto.FLOAT or len(table.dims) != 2:
            continue
        quantized, scale = _symmetric_int8(numpy_helper.to_array(table), axis=1)
        name, out = table.name, node.output[0]
        graph.initializer.remove(table)
        graph.initializer.extend(
            [
                numpy_helper.from_array(quantized, f"{name}.int8"),
                numpy_helper.from_array(scale, f"{name}.scale"),
            ]
        )
        lookup = [
            helper.make_node("Gather", [f"{name}.int8", node.input[1]], [f"{out}.int8"], axis=0),
            helper.make_node("Gather", [f"{name}.scale", node.input[1]], [f"{out}.scale"], axis=0),
            helper.make_node("Cast", [f"{out}.int8"], [f"{out}.float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{out}.float", f"{out}.scale"], [out]),
        ]
        _replace_node(graph, node, lookup)


def _replace_node(graph: onnx.GraphProto, node: onnx.NodeProto, nodes: list) -> None:
    """`nodes` in `node`'s place, in order (the graph stays topologically sorted)."""
    position = list(graph.node).index(node)
    graph.node.remove(node)
    for offset, new in enumerate(nodes):
        graph.node.insert(position + offset, new)


def _symmetric_int8(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 values in [-127, 127] and the fp32 scales (kept dims) that multiply them back: each scale
    is the largest magnitude along `axis` over 127, one per position of the other axes."""
    scale = np.maximum(np.abs(values).max(axis=axis, keepdims=True), 1e-12) / 127.0
    quantized = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
    return quantized, scale.astype(np.float32)


def _constant_inputs(graph: onnx.GraphProto, uses: set[tuple[str, int]]) -> set[str]:
    """Initializers every consumer of which reads them as one of `uses` ((op type, input index))."""
    seen: dict[str, set[tuple[str, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            seen.setdefault(name, set()).add((node.op_type, index))
    initializers = {tensor.name for tensor in graph.initializer}
    return {name for name, kinds in seen.items() if name in initializers and kinds <= uses}


def _prepend(graph: onnx.GraphProto, nodes: list) -> None:
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)


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
