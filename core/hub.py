"""Where a checkpoint lives: a local folder, the Hugging Face cache, or the hub. Torch-free."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError

# Teacher and student aliases of the CLI, resolved to the real SigLIP 2 checkpoints.
ALIASES = {
    "g16": "google/siglip2-giant-opt-patch16-256",
    "so400m14": "google/siglip2-so400m-patch14-384",
    "so400m16": "google/siglip2-so400m-patch16-256",
    "b32": "google/siglip2-base-patch32-256",
}

# Everything a SiglipModel checkpoint needs, and no pickled weights (never unpickle).
CHECKPOINT_PATTERNS = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocabulary.json",  # the kept token ids of a model trained on a compact vocabulary (core/vocabulary.py)
]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve_checkpoint(
    path_or_id: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, download: bool | None = None
) -> Path:
    """The local folder holding a checkpoint named by a path, an HF repo id or an alias.

    Looks in this order: a local folder, the Hugging Face cache, the hub (when `download`, which
    defaults to "unless HF_HUB_OFFLINE is set"). Raises `CheckpointError` naming what was tried.
    """
    name = os.fspath(path_or_id)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"'{path}' has no config.json: pass a folder with a Hugging Face SiglipModel checkpoint"
            )
        return path
    if path.exists():
        raise CheckpointError(f"'{path}' is a file: pass the checkpoint folder that holds config.json")

    repo_id = ALIASES.get(name, name)
    looks_like_repo = repo_id.count("/") == 1 and not repo_id.startswith((".", "/", "~"))
    if not looks_like_repo:
        raise CheckpointError(
            f"no checkpoint folder '{name}', and it is not a Hugging Face repo id "
            f"(owner/name) or an alias ({', '.join(ALIASES)})"
        )

    # Imported here: the hub client is only needed when a checkpoint comes from the hub.
    from huggingface_hub import snapshot_download

    what = f"'{name}'" + (f" (alias of {repo_id})" if repo_id != name else "")
    try:
        return Path(
            snapshot_download(
                repo_id, allow_patterns=CHECKPOINT_PATTERNS, cache_dir=cache_dir, local_files_only=True
            )
        )
    except Exception:  # any miss in the cache: not there, partial, or unreadable
        pass
    if download is None:
        download = not _offline()
    how_to = (
        f"download it where there is a network (`hf download {repo_id}`) and pass the folder, "
        "or copy the Hugging Face cache here"
    )
    if not download:
        raise CheckpointError(
            f"checkpoint {what} is not a local folder and not in the Hugging Face cache, "
            f"and downloads are off (offline): {how_to}"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=CHECKPOINT_PATTERNS, cache_dir=cache_dir))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {what} is not a local folder, not in the Hugging Face cache, and the hub "
            f"download failed ({reason[:160]}): {how_to}"
        ) from None
