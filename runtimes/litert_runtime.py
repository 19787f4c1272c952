"""LiteRT backend: runs a bundle's `.tflite` towers with the LiteRT interpreter. Torch-free (numpy +
ai-edge-litert). TFLite files take one fixed batch, so inputs go in chunks of it, the last padded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siglip2_sdk.core.bundle import Manifest
from siglip2_sdk.core.errors import BundleError

from .base import check_shapes, pad_to_batch


class _FixedBatchTower:
    """One tower's interpreter, fed any number of rows in chunks of the batch its file was built for."""

    def __init__(self, interpreter, batch: int, dim: int):
        self.interpreter = interpreter
        self.batch, self.dim = batch, dim
        self.input = interpreter.get_input_details()[0]
        self.output = interpreter.get_output_details()[0]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.dim), np.float32)
        for start in range(0, len(rows), self.batch):
            chunk = rows[start : start + self.batch]
            taken = len(chunk)
            padded = pad_to_batch(chunk, self.batch)
            self.interpreter.set_tensor(self.input["index"], _quantize(padded, self.input))
            self.interpreter.invoke()
            out[start : start + taken] = _dequantize(
                self.interpreter.get_tensor(self.output["index"]), self.output
            )[:taken]
        return out


def _quantize(values: np.ndarray, tensor: dict) -> np.ndarray:
    """Values in the input tensor's type: a statically quantized file takes int8 (its scale and zero
    point are in the file), token ids go in as int32 (the converter narrows int64)."""
    scale, zero_point = tensor["quantization"]
    if scale:
        limits = np.iinfo(tensor["dtype"])
        values = np.clip(np.round(values / scale) + zero_point, limits.min, limits.max)
    return values.astype(tensor["dtype"], copy=False)


def _dequantize(values: np.ndarray, tensor: dict) -> np.ndarray:
    scale, zero_point = tensor["quantization"]
    return (values.astype(np.float32) - zero_point) * scale if scale else values


class LiteRTBackend:
    runtime = "litert"

    def __init__(self, bundle_dir: Path, manifest: Manifest, threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise BundleError(
                f"bundle '{bundle_dir}' runs on LiteRT, which is not installed: "
                "pip install 'siglip2-sdk[tflite]'"
            ) from None
        self.towers = {}
        for tower, role in (("image", "image_model"), ("text", "text_model")):
            path = bundle_dir / manifest.files[role].path
            try:
                interpreter = Interpreter(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:  # not a flatbuffer / an op it cannot prepare
                raise BundleError(f"LiteRT cannot load '{path}': {str(exc).splitlines()[0]}") from None
            check_shapes(
                path,
                manifest,
                tower,
                [int(n) for n in interpreter.get_input_details()[0]["shape"]],
                [int(n) for n in interpreter.get_output_details()[0]["shape"]],
            )
            batch = _fixed_batch(interpreter, manifest.batch_size.get(tower), manifest.embed_dim, path)
            self.towers[tower] = _FixedBatchTower(interpreter, batch, manifest.embed_dim)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.towers["image"](np.asarray(pixels, dtype=np.float32))

    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        return self.towers["text"](np.asarray(input_ids, dtype=np.int64))


def _fixed_batch(interpreter, recorded: int | None, dim: int, path: Path) -> int:
    """The batch the file takes, checked (with its embedding width) against the manifest."""
    batch = int(interpreter.get_input_details()[0]["shape"][0])
    width = int(interpreter.get_output_details()[0]["shape"][-1])
    if recorded not in (None, batch) or width != dim:
        raise BundleError(
            f"'{path}' maps batches of {batch} to {width}-d embeddings, but the manifest says batch "
            f"{recorded} and {dim}-d: the file does not belong to this manifest, re-export the bundle"
        )
    return batch
