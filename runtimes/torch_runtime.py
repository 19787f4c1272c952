"""The reference backend: a SigLIP 2 checkpoint run directly in PyTorch (eager, CPU or GPU)."""

from __future__ import annotations

import numpy as np
import torch

from siglip2_sdk.core.model import SiglipModel


class TorchBackend:
    runtime = "torch"

    def __init__(self, model: SiglipModel, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.device = torch.device(device)

    @torch.inference_mode()
    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        emb = self.model.encode_image(torch.from_numpy(pixels).to(self.device))
        return emb.float().cpu().numpy()

    @torch.inference_mode()
    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        emb = self.model.encode_text(torch.from_numpy(input_ids).to(self.device))
        return emb.float().cpu().numpy()
