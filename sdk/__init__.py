"""siglip2-sdk: SigLIP 2 from the data center to the phone.

`import siglip2_sdk` is cheap and torch-free; torch-backed pieces (`load_checkpoint`,
`save_checkpoint`) import torch when first used.
"""

from __future__ import annotations

from importlib import import_module

from siglip2_sdk.core.version import __version__

# public name -> module that defines it; loaded on first access so torch stays optional.
_EXPORTS = {
    "Encoder": "siglip2_sdk.encoder",
    "PhotoIndex": "siglip2_sdk.index",
    "Hit": "siglip2_sdk.index",
    "load_checkpoint": "siglip2_sdk.core.checkpoint",
    "save_checkpoint": "siglip2_sdk.core.checkpoint",
    "Tokenizer": "siglip2_sdk.core.tokenizer",
    "ImagePreprocessing": "siglip2_sdk.core.preprocess",
    "load_image": "siglip2_sdk.core.preprocess",
    "preprocess": "siglip2_sdk.core.preprocess",
    "ModelConfig": "siglip2_sdk.core.config",
    "PRESETS": "siglip2_sdk.core.config",
    "Siglip2Error": "siglip2_sdk.core.errors",
    "ImageLoadError": "siglip2_sdk.core.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'siglip2_sdk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
