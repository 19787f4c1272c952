"""The one interface every runtime backend implements: L2-normalized embeddings from model inputs."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    runtime: str  # "torch" | "onnxruntime" | "litert" | "executorch"

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) preprocessed images -> float32 (N, D) L2-normalized embeddings."""
        ...

    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        """int64 (N, L) token ids -> float32 (N, D) L2-normalized embeddings."""
        ...
