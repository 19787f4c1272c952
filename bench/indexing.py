"""End to end: `PhotoIndex.add` into a fresh index, beside the model-only throughput."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from siglip2_sdk.core.shards import Example
from siglip2_sdk.encoder import Encoder
from siglip2_sdk.index import PhotoIndex

from .settings import BenchSettings


def export_images(examples: Sequence[Example], folder: Path, limit: int) -> int:
    """The test images as files, duplicates dropped (PhotoIndex would share one vector between them and
    so skip the model). Returns how many were written."""
    seen, written = set(), 0
    for example in examples:
        digest = hashlib.sha256(example.image).digest()
        if digest in seen:
            continue
        seen.add(digest)
        (folder / f"{written:06d}.{example.image_ext}").write_bytes(example.image)
        written += 1
        if written == limit:
            break
    return written


def index_throughput(encoder: Encoder, images: Path, batch: int) -> dict:
    """Images per second of `PhotoIndex.add` into a fresh index: reading, hashing, decoding, resizing,
    the model and the SQLite commits, all of it."""
    with (
        tempfile.TemporaryDirectory(prefix="siglip2-bench-index-") as scratch,
        PhotoIndex.open(scratch, encoder) as index,
    ):
        start = time.perf_counter()
        report = index.add(images, batch_size=batch)
        seconds = time.perf_counter() - start
    return {"images": report.added, "failed": len(report.failed), "seconds": seconds,
            "per_s": report.added / seconds}  # fmt: skip


def index_all(
    subjects, examples, images: Path | None, speed: dict, settings: BenchSettings, progress
) -> dict:
    """PhotoIndex.add throughput per subject on `images`, or on test images written to a scratch folder,
    beside the model-only throughput at the same batch size."""
    index = {}
    with tempfile.TemporaryDirectory(prefix="siglip2-bench-images-") as scratch:
        folder = images or Path(scratch)
        if images is None:
            export_images(examples, folder, settings.index_images)
        for subject in progress(subjects, "PhotoIndex.add"):
            figures = index_throughput(subject.encoder, folder, settings.batch_size)
            model_only = speed[subject.name]["image"]["batch_per_s"]
            index[subject.name] = {
                **figures,
                "model_only_per_s": model_only,
                "ratio": figures["per_s"] / model_only,
            }
    return index
