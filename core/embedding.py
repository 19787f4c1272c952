"""Batched embedding on top of any "run the model" function: the loop that `Encoder` (every
runtime) and the trainer's periodic evaluation (a model in training) share. Torch-free."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .preprocess import ImagePreprocessing, ImageSource, preprocess_one
from .tokenizer import Tokenizer

DECODE_WORKERS = min(4, os.cpu_count() or 1)


def embed_images(
    images: ImageSource | Sequence[ImageSource],
    spec: ImagePreprocessing,
    run: Callable[[np.ndarray], np.ndarray],
    dim: int,
    batch_size: int = 32,
    workers: int = DECODE_WORKERS,
) -> np.ndarray:
    """Paths, encoded bytes, PIL images or uint8 arrays -> float32 (N, dim), `run` on each batch.

    Decoding runs in `workers` threads, one batch ahead of the model, so end-to-end throughput stays
    close to the model's own (Pillow and the runtimes release the GIL while they work)."""
    if isinstance(images, ImageSource):
        images = [images]
    out = np.empty((len(images), dim), dtype=np.float32)
    starts = range(0, len(images), batch_size)
    with ThreadPoolExecutor(max(1, workers)) as pool:

        def decode(start: int) -> list[Future]:
            return [pool.submit(preprocess_one, image, spec) for image in images[start : start + batch_size]]

        ahead = decode(starts[0]) if starts else []
        for index, start in enumerate(starts):
            pixels = np.stack([future.result() for future in ahead])
            ahead = decode(starts[index + 1]) if index + 1 < len(starts) else []
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
