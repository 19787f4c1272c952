"""`Encoder`: embed images and texts with one API, whatever runs the model underneath."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from siglip2_sdk.core import embedding
from siglip2_sdk.core.bundle import MANIFEST_NAME, verify_bundle
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.preprocess import ImagePreprocessing, ImageSource
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.runtimes import open_backend
from siglip2_sdk.runtimes.base import Backend


class Encoder:
    """L2-normalized SigLIP 2 embeddings of images and texts, plus zero-shot probabilities."""

    def __init__(
        self,
        backend: Backend,
        *,
        image_preprocessing: ImagePreprocessing,
        tokenizer: Tokenizer,
        model_id: str,
        dim: int,
        logit_scale: float,
        logit_bias: float,
        source: str | os.PathLike | None = None,
        weights_digest: str | Callable[[], str] | None = None,
    ):
        self.backend = backend
        self.source = str(source) if source is not None else model_id  # what Encoder.load was given
        self.image_preprocessing = image_preprocessing
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.dim = dim
        self.logit_scale = logit_scale  # t itself, ready to multiply
        self.logit_bias = logit_bias
        self._weights_digest = weights_digest

    @property
    def runtime(self) -> str:
        return self.backend.runtime

    @functools.cached_property
    def weights_digest(self) -> str | None:
        """sha256 of the source checkpoint's tensors (`core.digest.weights_digest`): one value for a
        checkpoint and every bundle exported from it, whatever the runtime, precision or path. None for
        a bundle exported before manifests recorded it."""
        digest = self._weights_digest
        return digest() if callable(digest) else digest

    @property
    def model_identity(self) -> str:
        """What tells this model from every other: its weights digest; for a bundle exported before
        digests were recorded, its name (`name:<model_id>`, said once in a warning), as before."""
        if self.weights_digest:
            return self.weights_digest
        warnings.warn(
            f"'{self.source}' was exported before bundles recorded their weights' digest, so it is told "
            f"apart from other models by its name {self.model_id!r} only: re-export it with this "
            "siglip2-sdk to tie indexes to its weights",
            stacklevel=3,
        )
        return f"name:{self.model_id}"

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        runtime: str | None = None,
        *,
        threads: int | None = None,
        allow_failed: bool = False,
    ) -> Encoder:
        """A bundle folder (runs on its own runtime) or a checkpoint folder, HF id or alias (torch).
        A bundle whose export parity gate failed is refused unless `allow_failed` (to measure it)."""
        folder = Path(path).expanduser()
        if (folder / MANIFEST_NAME).is_file():
            return cls._from_bundle(folder, runtime, threads, allow_failed)
        if runtime not in (None, "torch"):
            raise Siglip2Error(
                f"'{path}' is a checkpoint, which runs on runtime='torch'; for {runtime!r} export it "
                "first (siglip2-sdk export) and load the bundle"
            )
        return cls._from_checkpoint(path, threads)

    @classmethod
    def _from_bundle(
        cls, folder: Path, runtime: str | None, threads: int | None, allow_failed: bool
    ) -> Encoder:
        # Refuses damaged files, and bundles that failed their gate unless asked not to.
        manifest = verify_bundle(folder, allow_failed=allow_failed)
        if runtime not in (None, manifest.runtime):
            raise Siglip2Error(
                f"bundle '{folder}' was made for {manifest.runtime}; pass runtime={manifest.runtime!r} "
                f"or export the checkpoint for {runtime}"
            )
        backend = open_backend(folder, manifest, threads)
        text = manifest.text
        tokenizer = Tokenizer.from_file(
            folder / manifest.files["tokenizer"].path,
            length=text.length,
            lowercase=text.lowercase,
            pad_id=text.pad_id,
        )
        if tokenizer.eos_id != text.eos_id:
            raise Siglip2Error(
                f"bundle '{folder}': tokenizer EOS id {tokenizer.eos_id} != manifest's {text.eos_id}"
            )
        return cls(
            backend,
            image_preprocessing=manifest.image,
            tokenizer=tokenizer,
            model_id=manifest.model_id,
            dim=manifest.embed_dim,
            logit_scale=manifest.logit_scale,
            logit_bias=manifest.logit_bias,
            source=folder.resolve(),
            weights_digest=manifest.weights_digest or None,
        )

    @classmethod
    def _from_checkpoint(cls, path: str | os.PathLike, threads: int | None) -> Encoder:
        import torch

        from siglip2_sdk.core.checkpoint import load_checkpoint
        from siglip2_sdk.core.digest import weights_digest
        from siglip2_sdk.runtimes.torch_runtime import TorchBackend

        if threads:
            torch.set_num_threads(threads)
        model = load_checkpoint(path)
        tokenizer_file = model.source_dir / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise Siglip2Error(
                f"checkpoint '{model.source_dir}' has no tokenizer.json: save it with "
                "save_checkpoint(..., tokenizer_file=...) or copy the Gemma tokenizer.json beside it"
            )
        text = model.config.text
        tokenizer = Tokenizer.for_text_tower(tokenizer_file, text)
        return cls(
            TorchBackend(model),
            image_preprocessing=model.image_preprocessing,
            tokenizer=tokenizer,
            model_id=str(path).rstrip("/") or str(path),
            dim=model.config.embed_dim,
            logit_scale=float(model.logit_scale.detach().exp()),
            logit_bias=float(model.logit_bias.detach()),
            source=model.source_dir.resolve(),
            # Hashing a large checkpoint takes a while: only when asked (an index asks).
            weights_digest=functools.partial(weights_digest, model.source_dir),
        )

    def embed_images(self, images: ImageSource | Sequence[ImageSource], batch_size: int = 32) -> np.ndarray:
        """Paths, encoded bytes, PIL images or uint8 HxWx3 arrays -> float32 (N, D)."""
        return embedding.embed_images(
            images, self.image_preprocessing, self.backend.embed_pixels, self.dim, batch_size
        )

    def embed_texts(self, texts: str | Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Texts -> float32 (N, D)."""
        for text in [texts] if isinstance(texts, str) else texts:
            if isinstance(text, str) and not _is_unicode(text):
                raise Siglip2Error(
                    f"the text {text.encode('utf-8', 'backslashreplace').decode()[:60]!r} is not valid "
                    "Unicode (bytes in another encoding than UTF-8?): pass it as UTF-8 text"
                )
        return embedding.embed_texts(texts, self.tokenizer, self.backend.embed_tokens, self.dim, batch_size)

    def zero_shot(self, images: ImageSource | Sequence[ImageSource], labels: Sequence[str]) -> np.ndarray:
        """Sigmoid probability of each label for each image, (N, L), with the model's own t and b."""
        logits = self.embed_images(images) @ self.embed_texts(labels).T * self.logit_scale + self.logit_bias
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def _is_unicode(text: str) -> bool:
    """False for a str holding lone surrogates: bytes that were not UTF-8, as Python hands a
    command-line argument over (surrogateescape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
