"""A checkpoint's config files (config.json, preprocessor_config.json) read without torch: the shapes
and preprocessing that `info`, the benchmark and `core.checkpoint`'s torch loader all start from."""

from __future__ import annotations

import json
from pathlib import Path

from .config import ModelConfig, from_hf_config
from .errors import CheckpointError
from .preprocess import ImagePreprocessing


def read_config(folder: Path) -> ModelConfig:
    path = folder / "config.json"
    try:
        hf = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read '{path}': {exc}") from None
    return from_hf_config(hf, source=str(path))


def read_image_preprocessing(folder: Path, config: ModelConfig) -> ImagePreprocessing:
    """The checkpoint's preprocessor_config.json, or SigLIP 2's recipe when there is none."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        size = config.vision.image_size
        return ImagePreprocessing(size=(size, size))
    try:
        return ImagePreprocessing.from_hf_config(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot read '{path}': {exc}") from None
