"""What a corpus source is: a Debian package plus a reader that turns its files into image-text pairs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePath

from PIL import Image


@dataclass
class Pair:
    """One picture with its captions; the builder normalizes the image (RGB on white, bounded size)."""

    source_id: str  # stable and unique within the source, e.g. the file's path inside the package
    image: Image.Image  # any mode; alpha is composited on white by the builder
    captions: dict[str, str]  # language tag ("en", "de", "pt-BR", ...) -> caption; "en" when known
    labels: dict[str, str] = field(default_factory=dict)  # label set -> label, e.g. {"category": "animals"}


@dataclass(frozen=True)
class Source:
    name: str  # short, used in keys and the data card: "tuxpaint", "emoji", ...
    debian_package: str
    license: str  # SPDX-style id plus a few words, shown on the data card
    # Given the package's filesystem root ("/" when installed), then one root per extra package (None
    # for an extra package that cannot be had: the reader does without, e.g. leaves labels out).
    read: Callable[..., Iterator[Pair]]
    extra_packages: tuple[str, ...] = ()
    # Keep at most this many images per identical English caption (None: all). Many images under one
    # caption are false negatives for each other in a contrastive batch and blur retrieval metrics.
    max_per_caption: int | None = None
    # Bump when the reader changes what it yields, so cached renders of this source are rebuilt.
    reader_version: int = 1


def folder_labels(relative: PurePath) -> dict[str, str]:
    """Labels from where a file sits: its first folder is the category, the second the subcategory."""
    folders = relative.parts[:-1]
    return dict(zip(("category", "subcategory"), folders[:2], strict=False))
