"""The reference backend: a SigLIP 2 checkpoint run directly in PyTorch (eager, CPU or GPU)."""

from __future__ import annotations

import torch

from siglip2_sdk.core.model import SiglipModel, numpy_runner


class TorchBackend:
    runtime = "torch"

    def __init__(self, model: SiglipModel, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.embed_pixels = numpy_runner(self.model, "image")
        self.embed_tokens = numpy_runner(self.model, "text")
