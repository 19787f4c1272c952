"""What a `distill` / `pretrain` run depends on, in one place: `TrainConfig`'s fields and their defaults,
what each means, the defaults that depend on where the student starts, and the checks. Torch-free, so
the CLI builds its training flags from the fields and this table without importing torch; whoever
makes a `TrainConfig` (the CLI, a recipe, a Python caller) gets the same rule and checks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from siglip2_sdk.core.errors import Siglip2Error

# Where the student starts sets the learning rate and weight decay a caller leaves out. From scratch:
FROM_SCRATCH = {"lr": 1e-3, "weight_decay": 1e-4}
# Starting from a trained checkpoint is fine-tuning, as SigLIP 2 made its B/32 with ACID: a small
# learning rate and no weight decay, unless the caller says otherwise.
FROM_CHECKPOINT = {"lr": 1e-5, "weight_decay": 0.0}
CHOICES = {
    "select": ("acid", "topk", "none"),
    "score": ("learnability", "easy-reference"),
    "same_captions": ("negative", "ignore"),
}


@dataclass
class TrainConfig:
    """Everything a run depends on; written as `DIR/config.json`, so a run is reproducible from it.
    Checked when made (`Siglip2Error`); an lr or weight decay left None follows `init`."""

    data: str  # shards: folder, glob or brace pattern
    out: str
    tokenizer: str  # tokenizer.json the student uses
    student: str = "b32"  # preset, ignored when `init` is given
    init: str | None = None  # checkpoint to start from
    init_layers: str | None = None  # "0,2": the layers of `init` each tower keeps (None: all)
    teacher_cache: str | None = None  # None: plain sigmoid training (pretrain / select none, no KD)
    vocab_from: str | None = None  # train a compact token table: the ids of these shards' captions
    languages: str | None = None  # ... and/or of these languages' scripts ("en,de"); see core/vocabulary.py
    steps: int = 1000
    batch_size: int = 256
    select: str = "acid"
    filter_ratio: float = 0.5
    score: str = "learnability"
    chunks: int = 16
    kd_weight: float = 0.0
    lr: float | None = None  # None: FROM_SCRATCH's, or FROM_CHECKPOINT's with `init`
    weight_decay: float | None = None  # as lr
    warmup_steps: int = 100
    grad_clip: float = 1.0
    accumulate: int = 1
    captions: str = "sample"
    same_captions: str = "negative"  # an image against another's identical caption: negative | ignore
    label_captions: float = 0.0  # share of examples captioned by one of their labels' names instead
    shuffle: int = 2000
    seed: int = 0
    eval_data: str | None = None  # shards for periodic evaluation (val split)
    eval_every: int = 0  # 0: only at the end
    eval_limit: int = 1000
    save_every: int = 0  # 0: only the final checkpoint
    threads: int = 4  # image decoding threads per process
    prefetch: bool | None = None  # read the next super-batch during the step; None: on GPUs only
    jpeg_draft: bool = False  # decode large JPEGs at reduced scale (faster; pixels differ slightly)
    decoded_images_mb: float = 512  # decoded images kept for the next epochs (per process)
    kept_shards_mb: float = 1024  # shards kept in memory, read once for all epochs (per process)

    def __post_init__(self):
        for name, value in completed(vars(self)).items():
            setattr(self, name, value)

    @property
    def super_batch(self) -> int:
        if self.select == "none":
            return self.batch_size
        return math.ceil(self.batch_size / (1.0 - self.filter_ratio))


# Fields a recipe fills in itself (the tokenizer comes with the student or the teacher).
RECIPE_FIELDS = ("tokenizer",)
# Fields only distillation reads: pretraining has no teacher and no selection.
DISTILL_ONLY = (
    "init",
    "init_layers",
    "teacher_cache",
    "select",
    "filter_ratio",
    "score",
    "chunks",
    "kd_weight",
)


def _short(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-") if value else "0"


def _starting_default(name: str) -> str:
    return f"{_short(FROM_SCRATCH[name])}, {_short(FROM_CHECKPOINT[name])} with --init"


HELP = {
    "student": "student preset when not --init (default: b32)",
    "init": "start the student from this checkpoint instead ('teacher': the teacher's own weights)",
    "init_layers": "with --init: keep only these layers of each tower, e.g. 0,2 (a shallower student "
    "that starts from the teacher's own weights, as DistilBERT did; default: all)",
    "teacher_cache": "teacher cache folder",
    "vocab_from": "train only the token-table rows of the ids in these shards' captions (or a .txt, one "
    "caption per line); other ids read as <unk>. Faster steps and a far smaller text tower; the "
    "checkpoint keeps the full table (dropped rows copy <unk>'s) and lists the kept ids in "
    "vocabulary.json, which export prunes to (default: a student started from a checkpoint keeps that "
    "checkpoint's vocabulary, else the full one)",
    "languages": "with or instead of --vocab-from: also keep every token written in these languages' "
    "scripts, e.g. en,de,fr",
    "filter_ratio": "share of each super-batch dropped",
    "chunks": "JEST chunks the acid selection draws the sub-batch in (default: 16)",
    "kd_weight": "ACED distillation weight (0: ACID only)",
    "eval_data": "shards for periodic evaluation (default: none)",
    "out": "run folder; the model lands in OUT/final",
    "batch_size": "examples trained on per step",
    "lr": f"peak learning rate (default: {_starting_default('lr')})",
    "weight_decay": f"(default: {_starting_default('weight_decay')})",
    "accumulate": "micro-batches per step",
    "captions": "caption languages: en, all, sample, en+sample (English half the time), or en,de,...",
    "same_captions": "an image against another image's identical caption: negative (SigLIP's loss) "
    "or ignore (neither positive nor negative; for data whose captions repeat, e.g. class names)",
    "label_captions": "share of examples whose caption is one of their labels' names instead (image-label "
    "data as captions, as UniCL; for shards whose JSON has `labels`; default: 0)",
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
    """`given` (some of `TrainConfig`'s fields) completed and checked as `TrainConfig` does, for a
    recipe to refuse bad settings before it spends time on the teacher or the tokenizer."""
    unknown = set(given) - all_fields()
    if unknown:
        raise Siglip2Error(f"unknown training settings: {', '.join(sorted(unknown))}")
    return completed(given)


def completed(settings: dict) -> dict:
    """`settings` with an lr or weight decay left out (or None) taken from where the student starts
    (`init`: FROM_CHECKPOINT, else FROM_SCRATCH), then checked."""
    starting = FROM_CHECKPOINT if settings.get("init") is not None else FROM_SCRATCH
    settings = {**settings, **{k: v for k, v in starting.items() if settings.get(k) is None}}
    check(settings)
    return settings


def check(settings: dict) -> None:
    """Refuse values no run can use, naming the flag."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    value = {**defaults, **settings}
    for name in ("steps", "batch_size", "accumulate"):
        if value[name] < 1:
            raise Siglip2Error(f"--{name.replace('_', '-')} must be at least 1, got {value[name]}")
    if not 0.0 <= value["label_captions"] <= 1.0:
        raise Siglip2Error(f"--label-captions must be in [0, 1], got {value['label_captions']}")
    if not 0.0 <= value["filter_ratio"] < 1.0:
        raise Siglip2Error(f"--filter-ratio must be in [0, 1), got {value['filter_ratio']}")
    if value["accumulate"] > value["batch_size"]:
        raise Siglip2Error(
            f"--accumulate {value['accumulate']} is larger than --batch-size {value['batch_size']}"
        )
    if value["init_layers"] is not None:
        if value["init"] is None:
            raise Siglip2Error("--init-layers needs --init (the checkpoint whose layers it keeps)")
        layers = value["init_layers"].split(",")
        if not all(layer.strip().isdigit() for layer in layers):
            raise Siglip2Error(f"--init-layers takes layer numbers like 0,2; got {value['init_layers']!r}")
    for name, choices in CHOICES.items():
        if value[name] not in choices:
            raise Siglip2Error(f"--{name} must be one of {', '.join(choices)}, got {value[name]!r}")
