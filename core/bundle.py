"""The bundle manifest: the one contract between export (writes bundles) and the runtimes, the SDK
and the Android app (read them). Torch-free.

A bundle is a folder: `manifest.json` beside the image-tower and text-tower model files and the
tokenizer. The manifest carries every preprocessing fact a reader needs, so nothing about the model
has to be known in advance, and the sha256 of every file, so a damaged or swapped file is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import BundleError
from .fileio import atomic_write_text, sha256_file
from .preprocess import ImagePreprocessing

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
RUNTIMES = ("torch", "onnxruntime", "litert", "executorch")
FILE_ROLES = ("image_model", "text_model", "tokenizer")


@dataclass(frozen=True)
class TextPreprocessing:
    """big_vision text semantics: lowercase, EOS appended (kept when truncating), right-pad to length."""

    length: int = 64
    pad_id: int = 0
    eos_id: int = 1
    lowercase: bool = True


@dataclass(frozen=True)
class BundleFile:
    path: str  # relative to the bundle folder, POSIX separators
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    model_id: str
    runtime: str
    precision: str  # "fp32" | "fp16" | "int8"
    quantization: str  # the scheme in words, e.g. "none" or "dynamic int8, per-channel weights"
    embed_dim: int
    image: ImagePreprocessing
    text: TextPreprocessing
    logit_scale: float  # t itself (= exp(t')), ready to multiply
    logit_bias: float
    files: dict[str, BundleFile]
    # A fixed batch size per tower (e.g. TFLite), or None where the batch axis is dynamic.
    batch_size: dict[str, int | None] = field(default_factory=lambda: {"image": None, "text": None})
    # The largest batch a dynamic-batch tower accepts (None: no bound); readers feed bigger ones in chunks.
    max_batch: dict[str, int | None] = field(default_factory=lambda: {"image": None, "text": None})
    parity: dict = field(default_factory=dict)  # figures measured at export against the float model
    status: str = "ok"  # "failed" when the parity gate refused the bundle
    # A pruned token table ({"kept", "of", "from", "unk_id"}); empty: the full vocabulary. The text
    # file still takes the tokenizer's original ids (it remaps them), so readers need nothing from it.
    vocabulary: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    created_by: str = ""
    # sha256 of the source checkpoint's tensors (core.digest.weights_digest): the model's identity,
    # shared by every bundle exported from it. Empty in bundles exported before it was recorded.
    weights_digest: str = ""
    # Per tower, the XNNPACK partitions the file runs in; every op between them runs on the runtime's
    # own CPU kernels. ExecuTorch: lowered into the file; LiteRT: what the interpreter's default
    # delegate made of the file at export (it decides at load). Empty where there is no delegate
    # (onnxruntime), and in bundles exported before it was recorded.
    delegate_partitions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image"] = self.image.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        d = dict(d)
        d["image"] = ImagePreprocessing.from_dict(d["image"])
        d["text"] = TextPreprocessing(**d["text"])
        d["files"] = {role: BundleFile(**entry) for role, entry in d["files"].items()}
        return cls(**d)


def describe_file(bundle_dir: Path, relative: str) -> BundleFile:
    """A manifest entry for a file already written inside the bundle folder."""
    path = bundle_dir / relative
    return BundleFile(
        path=PurePosixPath(relative).as_posix(), sha256=sha256_file(path), bytes=path.stat().st_size
    )


def write_manifest(bundle_dir: str | os.PathLike, manifest: Manifest) -> Path:
    """Write manifest.json atomically (a reader never sees half a manifest)."""
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
    return atomic_write_text(Path(bundle_dir) / MANIFEST_NAME, text)


def read_manifest(bundle_dir: str | os.PathLike) -> Manifest:
    """Parse and validate manifest.json; raises BundleError naming what is wrong."""
    folder = Path(bundle_dir)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"'{folder}' is not a bundle: it has no {MANIFEST_NAME}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"'{path}' is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BundleError(f"'{path}' must hold a JSON object")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"'{path}' has bundle format {version!r}; this siglip2-sdk reads format {FORMAT_VERSION}: "
            "re-export the bundle with this version"
        )
    try:
        manifest = Manifest.from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"'{path}' is malformed: {type(exc).__name__}: {exc}") from None
    _check_fields(manifest, path)
    return manifest


def _whole(value, at_least: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= at_least


def _check_fields(manifest: Manifest, path: Path) -> None:
    # Values that stay valid JSON after a hand edit but not valid numbers ("48", 2.5, true) are named
    # here, rather than failing as a traceback deep in a reader.
    numbers = {
        "embed_dim": manifest.embed_dim,
        "text.length": manifest.text.length,
        "text.pad_id": manifest.text.pad_id,
        "text.eos_id": manifest.text.eos_id,
        **{f"image.size[{i}]": side for i, side in enumerate(manifest.image.size)},
    }
    for name, value in numbers.items():
        if not _whole(value, 0 if name.endswith("_id") else 1):
            raise BundleError(f"'{path}': {name} must be a positive whole number, got {value!r}")
    if not isinstance(manifest.weights_digest, str):
        raise BundleError(f"'{path}': weights_digest must be a string, got {manifest.weights_digest!r}")
    if manifest.runtime not in RUNTIMES:
        raise BundleError(f"'{path}': unknown runtime {manifest.runtime!r} (known: {', '.join(RUNTIMES)})")
    missing = [role for role in FILE_ROLES if role not in manifest.files]
    if missing:
        raise BundleError(f"'{path}': no file listed for {', '.join(missing)}")
    for role, entry in manifest.files.items():
        relative = PurePosixPath(entry.path)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise BundleError(f"'{path}': file for {role} ({entry.path!r}) must be a path inside the bundle")


def verify_bundle(bundle_dir: str | os.PathLike, *, allow_failed: bool = False) -> Manifest:
    """Read the manifest and check every file against its size and sha256. A bundle whose parity
    gate failed is refused unless `allow_failed` (for inspecting it)."""
    folder = Path(bundle_dir)
    manifest = read_manifest(folder)
    for role, entry in manifest.files.items():
        file = folder / entry.path
        if not file.is_file():
            raise BundleError(f"bundle '{folder}': {role} file '{entry.path}' is missing")
        size = file.stat().st_size
        if size != entry.bytes or sha256_file(file) != entry.sha256:
            raise BundleError(
                f"bundle '{folder}': {role} file '{entry.path}' does not match the manifest "
                f"({size} bytes, expected {entry.bytes}; sha256 differs): the bundle is damaged, re-export it"
            )
    if manifest.status != "ok" and not allow_failed:
        raise BundleError(
            f"bundle '{folder}' is marked {manifest.status!r} (its export parity check did not pass): "
            "re-export it, or lower the thresholds knowingly"
        )
    return manifest
