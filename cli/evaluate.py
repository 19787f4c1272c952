"""`eval`: zero-shot and retrieval metrics of a checkpoint or a bundle on a corpus split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from siglip2_sdk.core.errors import Siglip2Error

from .common import add_command


def add_commands(commands) -> None:
    evaluate = add_command(commands, "eval", run_eval)
    evaluate.add_argument("model", help="checkpoint folder, HF id or alias, or bundle folder")
    evaluate.add_argument("--data", type=Path, default=Path("artifacts/data"), help="corpus folder")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--runtime", default=None, help="runtime to run a bundle on (default: its own)")
    evaluate.add_argument(
        "--languages", default=None, help="comma-separated caption languages (default: all)"
    )
    evaluate.add_argument("--limit", type=int, default=None, help="evaluate the first N examples only")
    evaluate.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the full results as JSON here")


def run_eval(args: argparse.Namespace) -> int:
    """zero-shot and retrieval metrics of a model on a corpus split

    Measure a checkpoint (or bundle) on a corpus split: zero-shot top-1/top-5 per label set and
    text->image / image->text Recall@1/5/10 per caption language and over all languages.
    """
    from itertools import islice

    from siglip2_sdk.core.evaluate import evaluate
    from siglip2_sdk.core.shards import iter_examples, split_shards
    from siglip2_sdk.encoder import Encoder

    if args.limit is not None and args.limit < 1:
        raise Siglip2Error(f"--limit must be at least 1, got {args.limit}")
    encoder = Encoder.load(args.model, runtime=args.runtime)
    examples = list(islice(iter_examples(split_shards(args.data, args.split)), args.limit))
    languages = args.languages.split(",") if args.languages else None
    with Console(stderr=True).status(f"embedding {len(examples):,} {args.split} examples"):
        results = evaluate(encoder, examples, languages=languages, batch_size=args.batch_size)
    results = {"model": encoder.model_id, "runtime": encoder.runtime, "split": args.split, **results}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print_eval(results)
    return 0


def print_eval(results: dict) -> None:
    console = Console()
    table = Table(title=f"retrieval: {results['model']} ({results['runtime']}), {results['split']} split")
    for column in ("language", "texts", "images", "t→i R@1", "R@5", "R@10", "i→t R@1", "R@5", "R@10"):
        table.add_column(column, justify="left" if column == "language" else "right")
    for language, r in results["retrieval"].items():
        t2i, i2t = r["text_to_image"], r["image_to_text"]
        table.add_row(
            language,
            str(r["texts"]),
            str(r["images"]),
            *(f"{100 * t2i[k]:.1f}" for k in ("R@1", "R@5", "R@10")),
            *(f"{100 * i2t[k]:.1f}" for k in ("R@1", "R@5", "R@10")),
        )
    console.print(table)
    zero_shot = Table(title="zero-shot classification")
    for column in ("label set", "classes", "images", "top-1", "top-5"):
        zero_shot.add_column(column, justify="left" if column == "label set" else "right")
    for name, r in results["zero_shot"].items():
        top5 = f"{100 * r['top5']:.1f}" if "top5" in r else "-"
        zero_shot.add_row(name, str(r["classes"]), str(r["n"]), f"{100 * r['top1']:.1f}", top5)
    console.print(zero_shot)
