"""`teacher-embed`, `distill` and `pretrain`: the distillation stage. The training flags are
`TrainConfig`'s fields (distill/config.py, torch-free, says what each means), so a new training
setting is a new field there, and `--config FILE` takes a run's settings as data (JSON: field names to
values).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.distill.config import CHOICES, HELP, all_fields, caller_fields

from .common import add_command, progress

DEMO_TRAIN = "artifacts/data/train-*.tar"
TRAINING = {
    "distill": dict(
        help="distill a compact student from a SigLIP 2 teacher with ACID (optionally ACED)",
        description="Train a student (default: B/32) from a teacher: each step scores a super-batch of "
        "batch-size/(1 - filter-ratio) examples by learnability (student loss - teacher loss) and trains "
        "on the selected sub-batch (acid: JEST joint sampling; topk; none: IID). --kd-weight adds ACED's "
        "explicit distillation. The teacher's embeddings are computed once into a cache. Under torchrun "
        "(gloo on CPU, NCCL on GPUs) the run matches a one-process run. The student lands in OUT/final "
        "(Hugging Face SiglipModel format).",
    ),
    "pretrain": dict(
        help="train a SigLIP 2-architecture model from scratch (how the demo teacher is made)",
        description="Plain sigmoid-loss training from scratch, no teacher and no selection: the recipe "
        "that makes the demo teacher. The model lands in OUT/final.",
    ),
}
# What the command line sets apart from TrainConfig's own default, type and help.
FLAG_OVERRIDES = {
    "data": dict(default=DEMO_TRAIN, help=f"WebDataset shards (default: {DEMO_TRAIN})"),
    "out": dict(type=Path, required=True),
    "teacher_cache": dict(type=Path),
}
PRETRAIN_DEFAULTS = {"student": dict(default="demo-teacher", help="model preset (default: demo-teacher)")}
TYPES = {"int": int, "float": float, "float | None": float, "str": str, "str | None": str}


def add_commands(commands) -> None:
    """The stage's subcommands; the training flags are read from TrainConfig."""
    teacher_embed = add_command(commands, "teacher-embed", run_teacher_embed)
    teacher_embed.add_argument(
        "--teacher", required=True, help="g16, so400m14, so400m16, an HF id, a folder, or demo"
    )
    teacher_embed.add_argument(
        "--data", default=DEMO_TRAIN, help=f"WebDataset shards (default: {DEMO_TRAIN})"
    )
    teacher_embed.add_argument(
        "--out", type=Path, default=None, help="cache folder (default: in the siglip2-sdk cache)"
    )
    teacher_embed.add_argument("--batch-size", type=int, default=64)

    for name, texts in TRAINING.items():
        parser = commands.add_parser(name, **texts)
        add_training_flags(parser, name)
        parser.set_defaults(run=run_training)


def add_training_flags(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "distill":
        parser.add_argument(
            "--teacher", required=True, help="g16, so400m14, so400m16, an HF id, a checkpoint folder, or demo"
        )
    for field in caller_fields(command):
        options: dict = {"default": field.default, "help": HELP.get(field.name)}
        if field.type in ("bool", "bool | None"):
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = TYPES[field.type]
        if field.name in CHOICES:
            options["choices"] = CHOICES[field.name]
        options |= FLAG_OVERRIDES.get(field.name, {})
        if command == "pretrain":
            options |= PRETRAIN_DEFAULTS.get(field.name, {})
        if options.get("required"):
            options.pop("default")
        parser.add_argument(f"--{field.name.replace('_', '-')}", **options)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a run's settings as JSON (field names as in OUT/config.json, which it may be), read as if "
        "given first on the command line (the flags typed win); fields the recipe sets are ignored",
    )


def with_config_file(argv: list[str], at: int, parser: argparse.ArgumentParser) -> list[str]:
    """`argv` with the settings of its `--config FILE` spelled out as flags at `at` (right after the
    command), so the flags the user typed come later and win."""
    files = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"]
    files += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    if not files:
        return argv
    path = Path(files[-1])
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise Siglip2Error(f"cannot read --config '{path}': {exc}") from None
    if not isinstance(settings, dict):
        raise Siglip2Error(f"--config '{path}' must hold a JSON object of settings, e.g. {{\"steps\": 100}}")
    known = {action.dest: action for action in parser._actions if action.option_strings}
    unknown = sorted(name for name in settings if name.replace("-", "_") not in {*known, *all_fields()})
    if unknown:
        raise Siglip2Error(f"--config '{path}': no such setting {', '.join(unknown)}")
    flags = []
    for name, value in settings.items():
        action = known.get(name.replace("-", "_"))
        if action is None or value is None:  # a field the recipe sets itself (a run's tokenizer)
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            flags.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:  # store_true
            flags += [flag] if value else []
        else:
            flags += [flag, str(value)]
    return [*argv[:at], *flags, *argv[at:]]


def run_teacher_embed(args: argparse.Namespace) -> int:
    """compute a teacher's embeddings of a dataset once (the distillation cache)

    Run the teacher once over the data and store its image and caption embeddings (fp16, every caption
    language) with its t and b. Resumable: a killed run continues where it stopped. Under torchrun each
    rank embeds its own shards.
    """
    from siglip2_sdk.distill.recipes import ensure_teacher_cache, resolve_teacher

    teacher = resolve_teacher(args.teacher, args.data, None, progress, print)
    cache = ensure_teacher_cache(teacher, args.teacher, args.data, args.out, args.batch_size, progress, print)
    print(f"teacher cache: {cache}")
    return 0


def run_training(args: argparse.Namespace) -> int:
    from siglip2_sdk.distill import recipes

    settings = {field.name: getattr(args, field.name) for field in caller_fields(args.command)}
    places = {
        name: settings.pop(name) for name in ("data", "out", "eval_data", "teacher_cache") if name in settings
    }
    common = dict(eval_data=places["eval_data"], resume=args.resume, progress=progress, log=print)
    if args.command == "pretrain":
        final = recipes.pretrain(places["data"], places["out"], **common, **settings)
    else:
        final = recipes.distill(
            args.teacher, places["data"], places["out"], teacher_cache_dir=places["teacher_cache"], **common,
            **settings,
        )  # fmt: skip
    print(f"model: {final}")
    return 0
