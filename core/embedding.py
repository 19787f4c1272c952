"""Batched embedding on top of any "run the model" function: the loop that `Encoder` (every
runtime) and the trainer's periodic evaluation (a model in training) share. Torch-free."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .preprocess import ImagePreprocessing, ImageSource, preprocess
from .tokenizer import Tokenizer


def embed_images(
    images: ImageSource | Sequence[ImageSource],
    spec: ImagePreprocessing,
    run: Callable[[np.ndarray], np.ndarray],
    dim: int,
    batch_size: int = 32,
) -> np.ndarray:
    """Paths, encoded bytes, PIL images or uint8 arrays -> float32 (N, dim), `run` on each batch."""
    if isinstance(images, ImageSource):
        images = [images]
    out = np.empty((len(images), dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        pixels = preprocess(images[start : start + batch_size], spec)
        out[start : start + len(pixels)] = run(pixels)
    return out


def embed_texts(
    texts: str | Sequence[str],
    tokenizer: Tokenizer,
    run: Callable[[np.ndarray], np.ndarray],
    dim: int,
    batch_size: int = 256,
) -> np.ndarray:
    """Texts -> float32 (N, dim), `run` on each batch of token ids."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    out = np.empty((len(texts), dim), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        out[start : start + batch_size] = run(tokenizer(texts[start : start + batch_size]))
    return out
