"""What a caller of `distill` / `pretrain` chooses, in one place: what each `TrainConfig` field means,
the defaults that depend on where the student starts, and the checks. The CLI builds its training
flags from `TrainConfig`'s fields and this table; Python callers get the same rule and checks from
`training_settings`.
"""

from __future__ import annotations

import dataclasses

from siglip2_sdk.core.errors import Siglip2Error

from .train import TrainConfig

# Fields a recipe fills in itself (the tokenizer comes with the student or the teacher).
RECIPE_FIELDS = ("tokenizer",)
# Fields only distillation reads: pretraining has no teacher and no selection.
DISTILL_ONLY = ("init", "teacher_cache", "select", "filter_ratio", "score", "chunks", "kd_weight")
# Starting from a trained checkpoint is fine-tuning, as SigLIP 2 made its B/32 with ACID: a small
# learning rate and no weight decay, unless the caller says otherwise.
FROM_CHECKPOINT = {"lr": 1e-5, "weight_decay": 0.0}
CHOICES = {"select": ("acid", "topk", "none"), "score": ("learnability", "easy-reference")}


def _short(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-") if value else "0"


def _starting_default(name: str) -> str:
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)
    return f"{_short(default)}, {_short(FROM_CHECKPOINT[name])} with --init"


HELP = {
    "student": "student preset when not --init (default: b32)",
    "init": "start the student from this checkpoint instead",
    "teacher_cache": "teacher cache folder",
    "filter_ratio": "share of each super-batch dropped",
    "chunks": "JEST chunks the acid selection draws the sub-batch in (default: 16)",
    "kd_weight": "ACED distillation weight (0: ACID only)",
    "eval_data": "shards for periodic evaluation (default: none)",
    "out": "run folder; the model lands in OUT/final",
    "batch_size": "examples trained on per step",
    "lr": f"peak learning rate (default: {_starting_default('lr')})",
    "weight_decay": f"(default: {_starting_default('weight_decay')})",
    "accumulate": "micro-batches per step",
    "captions": "caption languages: en, all, sample, or en,de,...",
    "shuffle": "examples in the shuffle buffer (default: 2000)",
    "eval_every": "steps between evaluations (0: at the end)",
    "eval_limit": "examples of --eval-data evaluated (default: 1000)",
    "save_every": "steps between resumable checkpoints",
    "threads": "image decoding threads per process",
    "prefetch": "read the next super-batch during the step (default: on GPUs only)",
    "jpeg_draft": "decode large JPEGs at reduced scale (faster; pixels differ slightly)",
    "decoded_images_mb": "decoded images kept for the next epochs, per process (default: 512)",
    "kept_shards_mb": "shards kept in memory for all epochs, per process (default: 1024)",
}


def caller_fields(command: str) -> list[dataclasses.Field]:
    """The `TrainConfig` fields a caller of `command` ("distill" or "pretrain") sets."""
    skip = RECIPE_FIELDS + (DISTILL_ONLY if command == "pretrain" else ())
    return [f for f in dataclasses.fields(TrainConfig) if f.name not in skip]


def all_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def training_settings(**given) -> dict:
    """`given` completed and checked: an lr or weight decay left out (or None) takes the fine-tuning
    value when `init` is set, else TrainConfig's default."""
    settings = dict(given)
    starting = settings.get("init") is not None
    for name, value in FROM_CHECKPOINT.items():
        if settings.get(name) is None:
            settings.pop(name, None)
            if starting:
                settings[name] = value
    check(settings)
    return settings


def check(settings: dict) -> None:
    """Refuse values no run can use, naming the flag."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    value = {name: settings.get(name, defaults[name]) for name in defaults}
    for name in ("steps", "batch_size", "accumulate"):
        if value[name] < 1:
            raise Siglip2Error(f"--{name.replace('_', '-')} must be at least 1, got {value[name]}")
    if "filter_ratio" in settings and not 0.0 <= settings["filter_ratio"] < 1.0:
        raise Siglip2Error(f"--filter-ratio must be in [0, 1), got {settings['filter_ratio']}")
    if value["accumulate"] > value["batch_size"]:
        raise Siglip2Error(
            f"--accumulate {value['accumulate']} is larger than --batch-size {value['batch_size']}"
        )
