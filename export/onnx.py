"""Lowering to ONNX: each tower traced with the dynamo exporter (opset 18, dynamic batch), and int8 by
onnxruntime's dynamic quantization (int8 weights per channel, activations quantized at run time)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .lowering import Calibration, Lowered, Towers

OPSET = 18
FILES = {"image_model": "image.onnx", "text_model": "text.onnx"}
PRECISIONS = ("fp32", "int8")


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


def lower(towers: Towers, precision: str, folder: Path, calibration: Calibration) -> Lowered:
    """image.onnx and text.onnx in `folder`, both with a dynamic batch axis."""
    export_fp32(towers, folder)
    quantization = quantize_int8(folder) if precision == "int8" else "none"
    return Lowered(files=dict(FILES), quantization=quantization)


def export_fp32(towers: Towers, folder: Path) -> None:
    with torch.no_grad():
        _export(
            towers.image,
            towers.example_pixels(),
            "pixel_values",
            "image_embedding",
            folder / FILES["image_model"],
        )
        _export(
            towers.text, towers.example_ids(), "input_ids", "text_embedding", folder / FILES["text_model"]
        )


def quantize_int8(folder: Path) -> str:
    """Dynamic int8 in place: MatMul weights per output channel, the token embedding (Gather) too."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs generic pre-processing advice on the root logger every call
    try:
        for name in FILES.values():
            source = folder / name
            staged = folder / f"{name}.int8"
            quantize_dynamic(source, staged, weight_type=QuantType.QInt8, per_channel=True)
            staged.replace(source)
    finally:
        root.setLevel(level)
    return "onnxruntime dynamic int8: int8 weights per channel (MatMul, Gather), activations at run time"
