"""The one interface every runtime backend implements: L2-normalized embeddings from model inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from siglip2_sdk.core.bundle import Manifest
from siglip2_sdk.core.errors import BundleError


class Backend(Protocol):
    runtime: str  # "torch" | "onnxruntime" | "litert" | "executorch"

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) preprocessed images -> float32 (N, D) L2-normalized embeddings."""
        ...

    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        """int64 (N, L) token ids -> float32 (N, D) L2-normalized embeddings."""
        ...


def check_shapes(path, manifest: Manifest, tower: str, inputs: Sequence, outputs: Sequence) -> None:
    """A tower file's own input and output shapes (batch axis first; a name or None where dynamic)
    against the manifest: a hand-edited embed_dim, image.size or text.length is refused here, in one
    line, instead of failing inside the runtime later."""
    expected = (3, *manifest.image.size) if tower == "image" else (manifest.text.length,)
    wanted = f"{tower} input {'x'.join(map(str, expected))} -> {manifest.embed_dim}-d"
    found = f"{tower} input {'x'.join(map(str, inputs[1:]))} -> {outputs[-1]}-d"
    pairs = [*zip(inputs[1:], expected, strict=False), (outputs[-1], manifest.embed_dim)]
    if len(inputs) != len(expected) + 1 or any(
        isinstance(got, int) and got >= 0 and got != want for got, want in pairs
    ):
        raise BundleError(
            f"'{path}' maps {found}, but the manifest says {wanted}: the manifest does not match the "
            "model files (edited by hand?): re-export the bundle"
        )


def pad_to_batch(rows: np.ndarray, batch: int) -> np.ndarray:
    """`rows` filled up to a file's fixed `batch` by repeating the last real row, not with zeros:
    dynamically quantized kernels pick activation ranges at run time, and a copy of a real row adds
    no new range. Callers drop the padded rows' outputs."""
    return np.pad(rows, [(0, batch - len(rows))] + [(0, 0)] * (rows.ndim - 1), mode="edge")
