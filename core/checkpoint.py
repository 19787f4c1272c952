"""Hugging Face `SiglipModel` checkpoints in and out: config.json + safetensors (sharded too), with
the tokenizer and preprocessor config beside them. Weights are only ever read with safetensors.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .checkpoint_config import read_config, read_image_preprocessing
from .config import to_hf_config
from .errors import CheckpointError
from .hub import resolve_checkpoint
from .model import SiglipModel
from .preprocess import ImagePreprocessing
from .vocabulary import TABLE, VOCABULARY_FILE, full_table, read_vocabulary, write_vocabulary

# transformers keeps the MAP head's attention as one packed nn.MultiheadAttention; we keep q/k/v apart.
_MAP_ATTENTION = "vision_model.head.attention."
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def hf_to_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map transformers' SiglipModel weight names onto ours: identity except the packed MAP attention."""
    state = {}
    for name, tensor in hf_state.items():
        if name.endswith("position_ids"):  # a buffer that older transformers versions saved
            continue
        if name.startswith(_MAP_ATTENTION + "in_proj_"):
            kind = name.rsplit("_", 1)[1]  # "weight" or "bias"
            for proj, part in zip("qkv", tensor.chunk(3, dim=0), strict=True):
                state[f"{_MAP_ATTENTION}{proj}_proj.{kind}"] = part
        else:
            state[name] = tensor
    return state


def state_dict_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `hf_to_state_dict`."""
    hf_state = {}
    for name, tensor in state.items():
        if name.startswith(_MAP_ATTENTION) and name[len(_MAP_ATTENTION)] in "qkv":
            continue
        hf_state[name] = tensor
    for kind in ("weight", "bias"):
        parts = [state[f"{_MAP_ATTENTION}{proj}_proj.{kind}"] for proj in "qkv"]
        hf_state[f"{_MAP_ATTENTION}in_proj_{kind}"] = torch.cat(parts, dim=0)
    return {name: tensor.contiguous() for name, tensor in hf_state.items()}


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"'{index}' is not a valid safetensors index: {exc}") from None
        files = [folder / shard for shard in shards]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"'{folder}' is missing shards named in its index: {', '.join(missing)}")
        return files
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
    hint = f" (found {', '.join(pickled)}: pickled weights are never loaded)" if pickled else ""
    raise CheckpointError(f"'{folder}' has no model.safetensors{hint}")


def _read_safetensors(files: list[Path], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    state = {}
    for file in files:
        try:
            with safe_open(file, framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                    state[name] = f.get_tensor(name).to(dtype)
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise CheckpointError(f"cannot read weights '{file}': {exc}") from None
    return state


def load_checkpoint(path_or_id: str | os.PathLike, *, dtype: torch.dtype = torch.float32) -> SiglipModel:
    """A SigLIP 2 model from a Hugging Face SiglipModel checkpoint (folder, HF id or alias).

    The model carries `config`, `image_preprocessing` and `source_dir` (where its tokenizer is).
    """
    folder = resolve_checkpoint(path_or_id)
    config = read_config(folder)
    state = hf_to_state_dict(_read_safetensors(_weight_files(folder), dtype))
    with torch.device("meta"):  # no time or memory spent on random init of weights we replace
        model = SiglipModel(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"'{folder}' does not match its config.json: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"'{folder}': weights do not fit config.json: {exc}") from None
    model.image_preprocessing = read_image_preprocessing(folder, config)
    model.vocabulary = read_vocabulary(folder)
    if model.vocabulary is not None and model.vocabulary.of != config.text.vocab_size:
        raise CheckpointError(
            f"'{folder}': {VOCABULARY_FILE} is for a {model.vocabulary.of:,}-token vocabulary, the model "
            f"has {config.text.vocab_size:,}"
        )
    model.source_dir = folder
    return model.eval()


def save_checkpoint(
    model: SiglipModel,
    out_dir: str | os.PathLike,
    *,
    tokenizer_file: str | os.PathLike | None = None,
    image_preprocessing: ImagePreprocessing | None = None,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write `model` as a Hugging Face SiglipModel checkpoint that transformers loads.

    The tokenizer comes from `tokenizer_file`, else from the folder the model was loaded from.
    `write_extra(folder)` may add files (e.g. training state). The folder appears whole or not at
    all: it is written beside its destination, then renamed.
    """
    out = Path(out_dir).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a checkpoint is an ordinary shared folder
    try:
        _write_checkpoint(model, staging, tokenizer_file, image_preprocessing)
        if write_extra is not None:
            write_extra(staging)
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _write_checkpoint(
    model: SiglipModel,
    folder: Path,
    tokenizer_file: str | os.PathLike | None,
    image_preprocessing: ImagePreprocessing | None,
) -> None:
    (folder / "config.json").write_text(json.dumps(to_hf_config(model.config), indent=2) + "\n")
    state = {name: t.detach().cpu() for name, t in model.state_dict().items()}
    # A compact text tower is written with the full table, so transformers loads it as it is.
    state[f"text_model.{TABLE}"] = full_table(model.text_model).cpu()
    if model.vocabulary is not None:
        write_vocabulary(model.vocabulary, folder)
    save_file(state_dict_to_hf(state), folder / "model.safetensors", metadata={"format": "pt"})

    preprocessing = image_preprocessing or getattr(model, "image_preprocessing", None)
    if preprocessing is None:
        size = model.config.vision.image_size
        preprocessing = ImagePreprocessing(size=(size, size))
    (folder / "preprocessor_config.json").write_text(
        json.dumps(preprocessing.to_hf_config(), indent=2) + "\n"
    )

    source_dir = getattr(model, "source_dir", None)
    if tokenizer_file is not None:
        shutil.copyfile(tokenizer_file, folder / "tokenizer.json")
        (folder / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(model), indent=2) + "\n")
    elif source_dir is not None and (Path(source_dir) / "tokenizer.json").is_file():
        for name in _TOKENIZER_FILES:
            if (Path(source_dir) / name).is_file():
                shutil.copyfile(Path(source_dir) / name, folder / name)


def _tokenizer_config(model: SiglipModel) -> dict:
    """tokenizer_config.json for the Gemma tokenizer with SigLIP 2's text settings: right padding to
    the context length (transformers' Siglip2 default is left padding, which SigLIP 2 never used)."""
    return {
        "tokenizer_class": "GemmaTokenizer",
        "padding_side": "right",
        "model_max_length": model.config.text.context_length,
        "pad_token": "<pad>",
        "eos_token": "<eos>",
        "bos_token": "<bos>",
        "unk_token": "<unk>",
        "add_bos_token": False,
        "add_eos_token": True,
        "do_lower_case": True,
    }


def _replace_dir(new: Path, dest: Path) -> None:
    """Swap `new` into `dest`; an existing `dest` is kept until the new one is in place."""
    if not dest.exists():
        new.rename(dest)
        return
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
