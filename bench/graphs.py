"""What a bundle's tower files compute, read from the files themselves (so any bundle, old or new, can
be described): the matrix-product FLOPs of one example and the share of them computed on int8
operands, the XNNPACK partitions a phone runtime runs the tower in, and the operators it leaves
outside them. `bench` reports it per tower beside the speed.

Each format is read with its own tooling: onnxruntime's symbolic shape inference (the fused graphs
hold contrib ops that ONNX's own inference does not know), the LiteRT interpreter as the runtime loads
the file (its XNNPACK delegate decides at load), and the ExecuTorch program with its XNNPACK payload
decoded by the flatc and schema ExecuTorch ships.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ONNX_INT8_MATMUL_OPS = {
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QLinearMatMul",
    "QGemm",
}
ONNX_MATMUL_OPS = {"MatMul", "Gemm", "FusedMatMul", "MatMulNBits"} | ONNX_INT8_MATMUL_OPS
ONNX_CONV_OPS = {"Conv", "ConvInteger", "QLinearConv"}
ONNX_INT8_OPS = ONNX_INT8_MATMUL_OPS | {"ConvInteger", "QLinearConv"}
LITERT_PRODUCTS = {"FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D"}
XNN_INT8_TYPES = {"xnn_datatype_qint8", "xnn_datatype_quint8", "xnn_datatype_qdint8", "xnn_datatype_qpint8"}


@dataclass
class TowerGraph:
    gflop: float  # matrix products (linear, matmul, convolution) for one example
    int8_share: float | None  # of those FLOPs, the share computed on int8 operands (None: no products)
    ops: int  # operators in the graph the runtime runs
    partitions: int | None = None  # XNNPACK partitions (None: the runtime runs no delegate)
    outside: int | None = None  # operators left outside every partition

    def to_dict(self) -> dict:
        return asdict(self)


def describe_tower(path: Path, runtime: str) -> TowerGraph:
    """The tower file at `path`, run by `runtime` ("onnxruntime", "litert", "executorch")."""
    readers = {"onnxruntime": _onnx_tower, "litert": _litert_tower, "executorch": _executorch_tower}
    return readers[runtime](Path(path))


def _summary(products: Sequence[tuple[float, bool]], batch: int, **counts) -> TowerGraph:
    """(FLOPs, int8) per product of a file that takes `batch` examples, as per-example figures."""
    total = sum(flops for flops, _ in products)
    int8 = sum(flops for flops, is_int8 in products if is_int8)
    share = float(int8 / total) if total else None
    return TowerGraph(gflop=float(total / batch / 1e9), int8_share=share, **counts)


def _onnx_tower(path: Path) -> TowerGraph:
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # the batch axis is dynamic
    inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    graph = inferred.graph
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}

    def int8_operands(node) -> bool:
        """An int8 kernel, or a float one between DequantizeLinear nodes (QDQ, as NNCF writes it):
        onnxruntime fuses those into int8 kernels when it loads the file."""
        return node.op_type in ONNX_INT8_OPS or all(name in dequantized for name in node.input[:2])

    products = []
    for node in graph.node:
        out = shapes.get(node.output[0])
        if node.op_type in ONNX_CONV_OPS and out:
            weight = shapes[node.input[3] if node.op_type == "QLinearConv" else node.input[1]]
            products.append((2 * math.prod(out) * math.prod(weight[1:]), int8_operands(node)))
        elif node.op_type in ONNX_MATMUL_OPS and out:
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "MatMulNBits":  # int8 compute only at accuracy level 4
                depth, is_int8 = attributes["K"], attributes.get("accuracy_level", 0) == 4
            else:
                first = shapes[node.input[0]]
                depth = first[-2] if attributes.get("transA") else first[-1]
                is_int8 = int8_operands(node)
            products.append((2 * math.prod(out) * depth, is_int8))
    return _summary(products, 1, ops=len(graph.node))


def _litert_tower(path: Path) -> TowerGraph:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    model_nodes = [n for n in nodes if n["op_name"] != "DELEGATE"]
    # Shapes as Python ints: numpy's int32 overflows on a B/32 product's FLOPs.
    tensors = {
        t["index"]: {**t, "shape": [int(n) for n in t["shape"]]} for t in interpreter.get_tensor_details()
    }
    produced_by = {out: n["index"] for n in model_nodes for out in n["outputs"]}
    products = []
    for node in model_nodes:
        if node["op_name"] not in LITERT_PRODUCTS:
            continue
        activation, weight = (tensors[i] for i in node["inputs"][:2])
        out = tensors[node["outputs"][0]]["shape"]
        if node["op_name"] == "FULLY_CONNECTED":
            depth = weight["shape"][-1]
        elif node["op_name"] == "BATCH_MATMUL":  # K from the first operand, transposed or not
            depth = math.prod(activation["shape"][-2:]) // out[-2]
        elif node["op_name"] == "CONV_2D":  # filter (out, kh, kw, in)
            depth = math.prod(weight["shape"][1:])
        else:  # depthwise: filter (1, kh, kw, out), one input channel per output
            depth = math.prod(weight["shape"][1:3])
        # int8 activations (static) or int8 weights a float input meets (dynamic range, quantized at
        # run time); weights behind a DEQUANTIZE node are float by the time the product runs.
        is_int8 = activation["dtype"].__name__ in ("int8", "uint8") or (
            weight["dtype"].__name__ == "int8" and weight["index"] not in produced_by
        )
        products.append((2 * math.prod(out) * depth, is_int8))
    batch = int(interpreter.get_input_details()[0]["shape"][0])
    outside = _litert_outside(interpreter, model_nodes, delegates, produced_by)
    return _summary(products, batch, ops=len(model_nodes), partitions=len(delegates), outside=outside)


def _litert_outside(interpreter, model_nodes: list[dict], delegates: list[dict], produced_by: dict) -> int:
    """Model nodes the interpreter still runs itself. Its execution plan is not exposed, so they are
    found as the nodes that must run to produce what the delegates and the graph's outputs consume
    (everything else a delegate computes)."""
    from_delegates = {out for d in delegates for out in d["outputs"]}
    inputs_of = {n["index"]: n["inputs"] for n in model_nodes}
    needed = [o["index"] for o in interpreter.get_output_details()]
    needed += [i for d in delegates for i in d["inputs"]]
    outside = set()
    while needed:
        tensor = needed.pop()
        node = produced_by.get(tensor)
        if tensor in from_delegates or node is None or node in outside:
            continue  # a delegate's output, a graph input or constant, or a node already counted
        outside.add(node)
        needed += [i for i in inputs_of[node] if i >= 0]
    return len(outside)


def _executorch_tower(path: Path) -> TowerGraph:
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(path.read_bytes()).program
    plan = program.execution_plan[0]
    calls = [type(i.instr_args).__name__ for i in plan.chains[0].instructions]
    graphs = [_xnnpack_graph(program.backend_delegate_data[d.processed.index].data) for d in plan.delegates]
    products = [product for graph in graphs for product in _xnnpack_products(graph)]
    batch = _executorch_batch(plan)
    delegated = sum(len(graph["xnodes"]) for graph in graphs)
    outside = calls.count("KernelCall")
    return _summary(
        products, batch, ops=delegated + outside, partitions=calls.count("DelegateCall"), outside=outside
    )


def _executorch_batch(plan) -> int:
    """The batch of the program's input (its first dimension)."""
    first = plan.values[plan.inputs[0]].val
    return int(first.sizes[0]) if getattr(first, "sizes", None) else 1


def _xnnpack_graph(payload: bytes) -> dict:
    """An XNNPACK delegate payload as JSON: its header says where the flatbuffer is, flatc decodes it."""
    import executorch
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader

    root = Path(next(iter(executorch.__path__)))
    header = XNNHeader.from_bytes(payload[: XNNHeader.EXPECTED_LENGTH])
    flatbuffer = payload[header.flatbuffer_offset : header.flatbuffer_offset + header.flatbuffer_size]
    with tempfile.TemporaryDirectory() as folder:
        binary = Path(folder) / "graph.bin"
        binary.write_bytes(flatbuffer)
        subprocess.run(
            [str(root / "data/bin/flatc"), "--json", "--strict-json", "--defaults-json", "--raw-binary",
             "-o", folder, str(root / "backends/xnnpack/serialization/schema.fbs"), "--", str(binary)],
            check=True, capture_output=True,
        )  # fmt: skip
        text = (Path(folder) / "graph.json").read_text()
    # flatc writes infinite clamp bounds as bare inf, which JSON has no word for.
    return json.loads(re.sub(r"(?<=[\s:\[,])(-?)inf\b", r"\1Infinity", text))


def _xnnpack_products(graph: dict) -> list[tuple[float, bool]]:
    values = [v["xvalue_union"] for v in graph["xvalues"]]
    tensors = [v.get("tensor_value", v) for v in values]  # quantized values wrap a tensor value

    def dims(i: int) -> list[int]:
        return tensors[i]["dims"]

    products = []
    for node in graph["xnodes"]:
        kind, args = node["xnode_union_type"], node["xnode_union"]
        if kind == "XNNFullyConnected":
            depth = dims(args["filter_id"])[-1]
        elif kind == "XNNBatchMatrixMultiply":  # (.., M, K) x (.., K, N), or the second transposed
            depth = dims(args["input1_id"])[-1]
        elif kind in ("XNNConv2d", "XNNDepthwiseConv2d"):
            depth = args["kernel_height"] * args["kernel_width"] * args["group_input_channels"]
        else:
            continue
        is_int8 = tensors[args["input1_id"]]["datatype"] in XNN_INT8_TYPES
        products.append((2 * math.prod(dims(args["output_id"])) * depth, is_int8))
    return products


def bundle_graphs(folder: Path, log=lambda line: None) -> dict[str, dict] | None:
    """`describe_tower` for both towers of the bundle in `folder`, as dicts; None where a file cannot
    be read (the bench goes on without it, and says why in `log`)."""
    from siglip2_sdk.core.bundle import read_manifest

    manifest = read_manifest(folder)
    try:
        return {
            tower: describe_tower(folder / manifest.files[f"{tower}_model"].path, manifest.runtime).to_dict()
            for tower in ("image", "text")
        }
    except (OSError, ValueError, KeyError, RuntimeError, subprocess.CalledProcessError) as error:
        log(f"{folder.name}: its graphs could not be read ({type(error).__name__}: {error})")
        return None
