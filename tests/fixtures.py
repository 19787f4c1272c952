"""Small things several test files build: a tiny tokenizer, a tiny checkpoint, a fake corpus."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers

from siglip2_sdk.core.bundle import Manifest, TextPreprocessing, describe_file, write_manifest
from siglip2_sdk.core.preprocess import ImagePreprocessing
from siglip2_sdk.data.source import Pair, Source

WORDS = ["<pad>", "<eos>", "<bos>", "<unk>", "a", "red", "green", "blue", "circle", "square", "photo", "of"]


def write_tiny_tokenizer(path: Path) -> Path:
    """A word-level tokenizer.json with the Gemma special ids (pad 0, eos 1), small enough for `tiny`."""
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))
    return path


def solid_image(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.fromarray(np.full((size[1], size[0], 3), color, dtype=np.uint8))


def write_shard(path: Path, examples) -> Path:
    """A WebDataset tar of `examples`, each (PIL image, its .json metadata), keyed 0000, 0001, ..."""
    with tarfile.open(path, "w") as tar:
        for i, (image, meta) in enumerate(examples):
            png = io.BytesIO()
            image.save(png, format="PNG")
            files = {f"{i:04d}.png": png.getvalue(), f"{i:04d}.json": json.dumps(meta).encode()}
            for name, payload in files.items():
                member = tarfile.TarInfo(name)
                member.size = len(payload)
                tar.addfile(member, io.BytesIO(payload))
    return path


def make_bundle(folder, **overrides) -> Manifest:
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in {
        "image.onnx": b"image tower",
        "text.onnx": b"text tower",
        "tokenizer.json": b"{}",
    }.items():
        (folder / name).write_bytes(payload)
    fields = dict(
        model_id="tiny-student",
        runtime="onnxruntime",
        precision="int8",
        quantization="dynamic int8, per-channel weights",
        embed_dim=32,
        image=ImagePreprocessing(size=(32, 32)),
        text=TextPreprocessing(length=16),
        logit_scale=10.0,
        logit_bias=-10.0,
        files={
            "image_model": describe_file(folder, "image.onnx"),
            "text_model": describe_file(folder, "text.onnx"),
            "tokenizer": describe_file(folder, "tokenizer.json"),
        },
        parity={"image_cosine_min": 0.999},
    )
    manifest = Manifest(**{**fields, **overrides})
    write_manifest(folder, manifest)
    return manifest


def shapes(root):
    for i in range(60):
        yield Pair(
            source_id=f"shape-{i}",
            image=solid_image((i * 4, 255 - i * 4, 7)),
            captions={"en": f"shape {i}", "de": f"form {i}"},
            labels={"kind": "warm" if i < 30 else "cool"},
        )
    yield Pair("shape-copy", solid_image((0, 255, 7)), {"en": "a copy of shape 0"})  # same pixels as shape-0


def transparent_big(root):
    image = Image.new("RGBA", (600, 300), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 300, 300))
    yield Pair("big", image, {"en": "a blue square on white"})


SOURCES = [
    Source("shapes", "fake-shapes", "CC0-1.0", shapes),
    Source("big", "fake-big", "MIT", transparent_big),
    Source("gone", "fake-missing", "MIT", shapes),
]


def build_fake_corpus(root: Path) -> Path:
    """The first two fake SOURCES built as a corpus under root/corpus (no Debian package involved)."""
    from siglip2_sdk.data import build
    from siglip2_sdk.data.debian import PackageRoot

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build, "locate_package", lambda package: PackageRoot(package, "1", root))
        build.build_corpus(root / "corpus", SOURCES[:2])
    return root / "corpus"


def tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A `tiny` random-init checkpoint with the tiny tokenizer, saved in HF format under folder/ckpt."""
    from siglip2_sdk.core.checkpoint import save_checkpoint
    from siglip2_sdk.core.config import preset
    from siglip2_sdk.core.model import build_model

    tokenizer = write_tiny_tokenizer(folder / "tokenizer.json")
    return save_checkpoint(build_model(preset("tiny"), seed=seed), folder / "ckpt", tokenizer_file=tokenizer)


def noisy_setup(message: str) -> dict:
    """A worker setup that prints as the exporters' libraries do: natively to fds 1 and 2, with print,
    as a warning and as a log record."""
    os.write(1, f"{message} on fd 1\n".encode())
    os.write(2, f"{message} on fd 2\n".encode())
    print(f"{message} from print")
    warnings.warn(f"{message} as a warning", stacklevel=1)
    logging.getLogger("absl").warning("%s from absl", message)
    return {}


def with_small_weights(model, std: float = 0.02, seed: int = 0):
    """`model` with every matrix and embedding drawn at `std`, the scale of a trained model's weights.
    A random model at the training init (Xavier) has no structure for int8 activation quantizers to
    keep: the width-32 `tiny` falls to image cosine 0.78 under ONNX dynamic int8, where the trained
    demo student keeps 0.999 (export/onnx.py). Tests of the lowering itself use these instead."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0.0, std, generator=generator)
    return model
