"""Errors a user can cause and fix. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class Siglip2Error(Exception):
    """A problem with the user's input or environment, described in one actionable line."""


class ImageLoadError(Siglip2Error):
    """An image file (or array) that cannot be decoded into an RGB picture."""

    def __init__(self, source: str | Path, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"cannot read image '{self.source}': {reason}")


class CheckpointError(Siglip2Error):
    """A checkpoint that cannot be found, or that is not a SigLIP 2 fixed-resolution checkpoint."""


class TokenizerError(Siglip2Error):
    """A tokenizer file that is missing, corrupt, or not the Gemma tokenizer we expect."""


class BundleError(Siglip2Error):
    """A bundle whose manifest is missing, malformed, or does not match its files."""
