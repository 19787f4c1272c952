"""ExecuTorch backend: runs a bundle's `.pte` towers (XNNPACK-delegated) through the ExecuTorch runtime.
ExecuTorch's Python runtime takes torch tensors, so this backend (alone of the readers) needs torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siglip2_sdk.core.bundle import Manifest
from siglip2_sdk.core.errors import BundleError

from .base import check_shapes, pad_to_batch


class ExecuTorchBackend:
    runtime = "executorch"

    def __init__(self, bundle_dir: Path, manifest: Manifest, threads: int | None = None):
        try:
            import torch
            from executorch.runtime import Runtime
        except ImportError:
            raise BundleError(
                f"bundle '{bundle_dir}' runs on ExecuTorch, which is not installed: "
                "pip install 'siglip2-sdk[executorch]'"
            ) from None
        if manifest.precision == "int8":
            # int8 programs call its embedding_byte kernel (the token table) outside the XNNPACK delegate.
            import executorch.kernels.quantized  # noqa: F401
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        runtime = Runtime.get()
        self.methods, self.max_batch, self.fixed = {}, {}, {}
        for tower, role in (("image", "image_model"), ("text", "text_model")):
            path = bundle_dir / manifest.files[role].path
            try:
                self.methods[tower] = runtime.load_program(str(path)).load_method("forward")
            except Exception as exc:  # the runtime raises RuntimeError/ValueError with a status code
                raise BundleError(f"ExecuTorch cannot load '{path}': {exc}") from None
            meta = self.methods[tower].metadata
            check_shapes(
                path,
                manifest,
                tower,
                list(meta.input_tensor_meta(0).sizes()),
                list(meta.output_tensor_meta(0).sizes()),
            )
            # A fixed batch (current bundles), else the bound of a dynamic batch axis (older ones).
            self.fixed[tower] = manifest.batch_size.get(tower)
            self.max_batch[tower] = self.fixed[tower] or manifest.max_batch.get(tower) or 1

    def _call(self, tower: str, piece: np.ndarray) -> np.ndarray:
        """One program call; a short last piece is padded to the fixed batch and the padding dropped."""
        rows, fixed = len(piece), self.fixed[tower]
        if fixed and rows < fixed:
            piece = pad_to_batch(piece, fixed)
        return self.methods[tower].execute([self._torch.from_numpy(piece)])[0].numpy()[:rows]

    def _run(self, tower: str, batch: np.ndarray) -> np.ndarray:
        step = self.max_batch[tower]
        pieces = [self._call(tower, batch[start : start + step]) for start in range(0, len(batch), step)]
        return (
            np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.empty((0, 0), np.float32)
        )

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self._run("image", np.ascontiguousarray(pixels, dtype=np.float32))

    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        return self._run("text", np.ascontiguousarray(input_ids, dtype=np.int64))
