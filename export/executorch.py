"""Lowering to ExecuTorch: each tower exported with a bounded dynamic batch and delegated to XNNPACK."""

from __future__ import annotations

from pathlib import Path

import torch

from .lowering import Calibration, Lowered, Towers

FILES = {"image_model": "image.pte", "text_model": "text.pte"}
PRECISIONS = ("fp32",)
# ExecuTorch plans memory for the largest batch the program accepts: a bound keeps the activation
# arena small on a phone (readers feed larger batches in chunks; the bound is in the manifest).
MAX_BATCH = 64


def _lower(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    exported = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(program.buffer)


def lower(towers: Towers, precision: str, folder: Path, calibration: Calibration) -> Lowered:
    """image.pte and text.pte in `folder`, batch axis dynamic up to MAX_BATCH."""
    with torch.no_grad():
        _lower(towers.image, towers.example_pixels(), folder / FILES["image_model"])
        _lower(towers.text, towers.example_ids(), folder / FILES["text_model"])
    return Lowered(
        files=dict(FILES),
        quantization="none (XNNPACK-delegated fp32)",
        max_batch={"image": MAX_BATCH, "text": MAX_BATCH},
    )
