"""ONNX Runtime backend: runs a bundle's `.onnx` towers on the CPU. Torch-free (numpy + onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siglip2_sdk.core.bundle import Manifest
from siglip2_sdk.core.errors import BundleError

from .base import check_shapes


class OnnxRuntimeBackend:
    runtime = "onnxruntime"

    def __init__(self, bundle_dir: Path, manifest: Manifest, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BundleError(
                f"bundle '{bundle_dir}' runs on onnxruntime, which is not installed: "
                "pip install 'siglip2-sdk[onnx]'"
            ) from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.sessions = {}
        for tower, role in (("image", "image_model"), ("text", "text_model")):
            path = bundle_dir / manifest.files[role].path
            try:
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise BundleError(f"onnxruntime cannot load '{path}': {str(exc).splitlines()[0]}") from None
            check_shapes(path, manifest, tower, session.get_inputs()[0].shape, session.get_outputs()[0].shape)
            self.sessions[tower] = (session, session.get_inputs()[0].name)

    def _run(self, tower: str, batch: np.ndarray) -> np.ndarray:
        session, input_name = self.sessions[tower]
        return np.asarray(session.run(None, {input_name: batch})[0], dtype=np.float32)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self._run("image", np.ascontiguousarray(pixels, dtype=np.float32))

    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        return self._run("text", np.ascontiguousarray(input_ids, dtype=np.int64))
