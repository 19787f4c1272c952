"""Lowering to ExecuTorch: each tower exported with a bounded dynamic batch and delegated to XNNPACK."""

from __future__ import annotations

from pathlib import Path

import torch

from siglip2_sdk.core.model import ImageEncoder, SiglipModel, TextEncoder

FILES = {"image_model": "image.pte", "text_model": "text.pte"}
# ExecuTorch plans memory for the largest batch the program accepts: a bound keeps the activation
# arena small on a phone (readers feed larger batches in chunks; the bound is in the manifest).
MAX_BATCH = 64


def _lower(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    exported = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},))
    program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(program.buffer)


def export_fp32(model: SiglipModel, folder: Path) -> dict[str, str]:
    """image.pte and text.pte in `folder`; returns role -> file name."""
    size = model.config.vision.image_size
    with torch.no_grad():
        _lower(ImageEncoder(model), torch.zeros(2, 3, size, size), folder / FILES["image_model"])
        ids = torch.zeros(2, model.config.text.context_length, dtype=torch.int64)
        _lower(TextEncoder(model), ids, folder / FILES["text_model"])
    return dict(FILES)
