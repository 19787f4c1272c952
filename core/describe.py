"""What `siglip2-sdk info` shows: the facts of a checkpoint or a bundle, from config files only."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .bundle import MANIFEST_NAME, read_manifest, verify_bundle
from .checkpoint_config import read_config
from .config import parameter_count
from .errors import BundleError
from .hub import resolve_checkpoint
from .preprocess import ImagePreprocessing
from .vocabulary import VOCABULARY_FILE


def describe(path_or_id: str | os.PathLike) -> dict:
    """Plain JSON-able facts about a bundle folder or a checkpoint (folder, HF id, alias)."""
    folder = Path(path_or_id).expanduser()
    if (folder / MANIFEST_NAME).is_file():
        return describe_bundle(folder)
    return describe_checkpoint(resolve_checkpoint(path_or_id, download=False))


def describe_checkpoint(folder: Path) -> dict:
    config = read_config(folder)
    preprocessing_file = folder / "preprocessor_config.json"
    if preprocessing_file.is_file():
        preprocessing = ImagePreprocessing.from_hf_config(json.loads(preprocessing_file.read_text()))
    else:
        preprocessing = None
    weights = sorted(folder.glob("*.safetensors"))
    params = parameter_count(config)
    return {
        "kind": "checkpoint",
        "path": str(folder),
        "image tower": f"{config.vision.image_size}px, patch {config.vision.patch_size}, width "
        f"{config.vision.width}, {config.vision.depth} layers, {config.vision.heads} heads",
        "text tower": f"vocab {config.text.vocab_size}, context {config.text.context_length}, width "
        f"{config.text.width}, {config.text.depth} layers, {config.text.heads} heads",
        "embedding dim": config.embed_dim,
        "parameters": f"{params['total'] / 1e6:.1f}M (image {params['image'] / 1e6:.1f}M, "
        f"text {params['text'] / 1e6:.1f}M)",
        "image preprocessing": preprocessing.to_dict() if preprocessing else "none (SigLIP 2 default)",
        "tokenizer": "tokenizer.json" if (folder / "tokenizer.json").is_file() else "missing",
        "trained vocabulary": _trained_vocabulary(folder),
        "weights": [f"{w.name} ({w.stat().st_size / 2**20:.1f} MiB)" for w in weights] or "missing",
    }


def _trained_vocabulary(folder: Path) -> str:
    """What the checkpoint's vocabulary.json says was trained, read as JSON (KeptVocabulary would
    check every id; `info` only shows the counts)."""
    path = folder / VOCABULARY_FILE
    if not path.is_file():
        return "full"
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        return f"{entry['kept']:,} of {entry['of']:,} token ids ({entry['from']}); the others read as <unk>"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable vocabulary.json ({exc!r})"


def describe_bundle(folder: Path) -> dict:
    try:
        manifest = verify_bundle(folder, allow_failed=True)
        integrity = "all files match the manifest"
    except BundleError as exc:
        manifest = read_manifest(folder)  # still describe it, and say what is wrong
        integrity = str(exc)
    return {
        "kind": "bundle",
        "path": str(folder),
        "model id": manifest.model_id,
        "runtime": manifest.runtime,
        "precision": f"{manifest.precision} ({manifest.quantization})",
        "status": manifest.status,
        "integrity": integrity,
        "embedding dim": manifest.embed_dim,
        "image preprocessing": manifest.image.to_dict(),
        "text preprocessing": vars(manifest.text),
        "t, b": [manifest.logit_scale, manifest.logit_bias],
        "batch size": manifest.batch_size,
        "delegate partitions": manifest.delegate_partitions
        or "not recorded (decided by the runtime at load)",
        "parity": manifest.parity,
        "files": {role: f"{f.path} ({f.bytes / 2**20:.1f} MiB)" for role, f in manifest.files.items()},
    }
