"""The models measured: bundles (through `Encoder`), and transformers' eager `SiglipModel` as the
baseline; the test examples they are measured on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from itertools import islice
from pathlib import Path

from siglip2_sdk.core.bundle import Manifest, read_manifest
from siglip2_sdk.core.checkpoint_config import read_config, read_image_preprocessing
from siglip2_sdk.core.config import ModelConfig
from siglip2_sdk.core.digest import weights_digest
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.hub import resolve_checkpoint
from siglip2_sdk.core.shards import Example, expand_shards, iter_examples
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.encoder import Encoder

BASELINE_NAME = "transformers-fp32-eager"


class TransformersBackend:
    """The baseline: transformers' SiglipModel, fp32, eager PyTorch (no compile), its default attention."""

    runtime = "transformers"

    def __init__(self, checkpoint_dir: Path, threads: int | None = None):
        import torch
        import torch.nn.functional as F
        from transformers import SiglipModel

        from siglip2_sdk.core.model import on_numpy

        if threads:
            torch.set_num_threads(threads)
        with _quiet_transformers():
            self.model = SiglipModel.from_pretrained(checkpoint_dir, dtype=torch.float32).eval()
        self.attention = self.model.config._attn_implementation
        vision, text, cpu = self.model.vision_model, self.model.text_model, torch.device("cpu")
        self.embed_pixels = on_numpy(lambda x: F.normalize(vision(pixel_values=x).pooler_output, dim=-1), cpu)
        self.embed_tokens = on_numpy(lambda x: F.normalize(text(input_ids=x).pooler_output, dim=-1), cpu)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' loading progress bar and its config advice (token ids its defaults check against a
    vocabulary size the text config overrides) would land in the bench's output; errors still raise."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def open_baseline(checkpoint: str, threads: int | None) -> Encoder:
    folder = resolve_checkpoint(checkpoint)
    config = read_config(folder)
    backend = TransformersBackend(folder, threads)
    return Encoder(
        backend,
        image_preprocessing=read_image_preprocessing(folder, config),
        tokenizer=Tokenizer.for_text_tower(folder / "tokenizer.json", config.text),
        model_id=BASELINE_NAME,
        dim=config.embed_dim,
        logit_scale=float(backend.model.logit_scale.detach().exp()),
        logit_bias=float(backend.model.logit_bias.detach()),
        source=folder.resolve(),
        weights_digest=lambda: weights_digest(folder),  # the index ties to it, like Encoder.load's
    )


def open_bundle(folder: Path, threads: int | None) -> Encoder:
    """`Encoder.load`, and for a bundle its export gate refused the same encoder all the same: how far
    off such a bundle is, and how fast, is worth measuring (the report shows its status)."""
    return Encoder.load(folder, threads=threads, allow_failed=True)


@dataclass
class Subject:
    """One model under measurement: a bundle, or the transformers baseline."""

    name: str
    kind: str  # "bundle" | "baseline"
    path: str
    runtime: str
    precision: str
    quantization: str
    status: str
    files_mb: dict[str, float]  # role -> MiB on disk
    export_parity: dict = field(default_factory=dict)
    encoder: Encoder | None = field(default=None, repr=False)

    def open(self, threads: int | None) -> Encoder:
        if self.kind == "baseline":
            return open_baseline(self.path, threads)
        return open_bundle(Path(self.path), threads)


def subject_fields(subject: Subject) -> dict:
    return {f.name: getattr(subject, f.name) for f in fields(subject) if f.name != "encoder"}


def bundle_subject(folder: Path, manifest: Manifest) -> Subject:
    return Subject(
        name=folder.name,
        kind="bundle",
        path=str(folder),
        runtime=manifest.runtime,
        precision=manifest.precision,
        quantization=manifest.quantization,
        status=manifest.status,
        files_mb={role: entry.bytes / 2**20 for role, entry in manifest.files.items()},
        export_parity={k: v for k, v in manifest.parity.items() if k != "thresholds"},
    )


def baseline_subject(checkpoint_dir: Path) -> Subject:
    weights = sorted(checkpoint_dir.glob("*.safetensors"))
    return Subject(
        name=BASELINE_NAME,
        kind="baseline",
        path=str(checkpoint_dir),
        runtime="transformers",
        precision="fp32",
        quantization="none",
        status="reference",
        files_mb={"weights": sum(w.stat().st_size for w in weights) / 2**20},
    )


def subjects_to_measure(
    bundles: Sequence[Path], checkpoint_dir: Path, config: ModelConfig, baseline: str
) -> list:
    subjects = [baseline_subject(checkpoint_dir)] if baseline == "transformers" else []
    seen = set()
    for folder in map(Path, bundles):
        manifest = read_manifest(folder)
        if folder.resolve() in seen:
            raise Siglip2Error(f"bundle '{folder}' is given twice")
        seen.add(folder.resolve())
        size = config.vision.image_size
        if manifest.embed_dim != config.embed_dim or tuple(manifest.image.size) != (size, size):
            raise Siglip2Error(
                f"bundle '{folder}' ({manifest.embed_dim}-d, {manifest.image.size} px) was not exported from "
                f"checkpoint '{checkpoint_dir}' ({config.embed_dim}-d, {size} px): pass its own --checkpoint"
            )
        subjects.append(bundle_subject(folder, manifest))
    if not subjects:
        raise Siglip2Error("nothing to measure: give at least one bundle, or --baseline transformers")
    return subjects


def read_examples(data: str, limit: int | None) -> list[Example]:
    """The first `limit` captioned examples of the shards (all with None)."""
    examples = [e for e in islice(iter_examples(expand_shards(data)), limit) if e.captions]
    if len(examples) < 2:
        raise Siglip2Error(f"'{data}' has fewer than 2 captioned examples to measure on")
    return examples


def caption_of(example: Example) -> str:
    """The example's English caption, else its first."""
    return example.captions.get("en") or next(iter(example.captions.values()))
