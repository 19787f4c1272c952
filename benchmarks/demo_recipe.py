"""The demo teacher's recipe, one change at a time: each variant trained from scratch on the demo
corpus with the plain sigmoid loss and measured on the test split.

    python benchmarks/demo_recipe.py [--data artifacts/data] [--out artifacts/demo-recipe] [--only NAME...]

Every variant takes about as long as the demo teacher (7 to 8 minutes on 2 cores) and is kept under
--out, so a rerun measures only what is missing. Writes benchmarks/results/demo_recipe.json and prints
the table that benchmarks/results/demo_recipe.md discusses.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from siglip2_sdk.cli.common import progress
from siglip2_sdk.core import config as model_configs
from siglip2_sdk.core.checkpoint import load_checkpoint
from siglip2_sdk.core.evaluate import evaluate, headline
from siglip2_sdk.core.shards import iter_examples, split_shards
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.distill import recipes
from siglip2_sdk.distill.evaluation import ModelEmbedder

# The teacher's shape before 2026-12-06: 128 wide, 4 blocks a tower.
model_configs.PRESETS["demo-recipe-wide"] = model_configs._tower_pair(
    64, 16, 128, 4, 4, 512, dict(context_length=16)
)
WIDE = dict(towers="demo-recipe-wide", steps=600, same_captions="negative", label_captions=0.0)
FORMER = dict(WIDE, image_size=32, patch_size=8, captions="sample")
VARIANTS = {  # name -> (what changes against the demo teacher's recipe, shape and settings)
    "former": FORMER,
    "former, lr 2e-3": {**FORMER, "lr": 2e-3},
    "en+sample": {**FORMER, "captions": "en+sample"},
    "en+sample, 1200 x 128": {**FORMER, "captions": "en+sample", "steps": 1200, "batch_size": 128},
    "en+sample, 64 px / 16": WIDE,
    "en+sample, 64 px / 16, 1000 steps": {**WIDE, "steps": 1000},
    "identical captions ignored": {**WIDE, "steps": 1000, "same_captions": "ignore"},
    "96 wide, 3 blocks, 1300 steps": {"steps": 1300, "label_captions": 0.0},
    "96 wide, 3 blocks, 1600 steps": {"label_captions": 0.0},
    "labels as captions 25%": {"label_captions": 0.25},
    "labels as captions 10%": {"label_captions": 0.1},
    "labels as captions 5% (the recipe)": {},
}
RESULTS = Path(__file__).parent / "results"


def teacher_variant(name: str, change: dict, data: Path, out: Path) -> Path:
    """The demo teacher with `change` applied (image size and patch size reshape the preset)."""
    change = dict(change)
    shape = {key: change.pop(key) for key in ("image_size", "patch_size") if key in change}
    base = model_configs.PRESETS[change.pop("towers", "demo-teacher")]
    preset = f"demo-recipe-{len(model_configs.PRESETS)}"
    model_configs.PRESETS[preset] = base.replace(vision=shape) if shape else base
    settings = {**recipes.DEMO_TEACHER, "student": preset, **change}
    return recipes.pretrain(
        str(data / "train-*.tar"), out, eval_data=None, resume=True, progress=progress, log=print, **settings
    )


def measure(final: Path, examples: list) -> dict:
    model = load_checkpoint(final).eval()
    tokenizer = Tokenizer.for_text_tower(final / "tokenizer.json", model.config.text)
    results = evaluate(ModelEmbedder(model, tokenizer), examples)
    zero_shot = {name: r["top1"] for name, r in results["zero_shot"].items()}
    return {
        **headline(results),
        "t2i_R@1_en": results["retrieval"]["en"]["text_to_image"]["R@1"],
        "zero_shot_by_set": zero_shot,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("artifacts/data"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/demo-recipe"))
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    examples = list(iter_examples(split_shards(args.data, "test")))
    results_file = RESULTS / "demo_recipe.json"
    measured = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in args.only:
        started = time.perf_counter()
        # Named by the variant, so a run of --only some never resumes another variant's run.
        out = args.out / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        final = teacher_variant(name, VARIANTS[name], args.data, out)
        measured[name] = {**measure(final, examples), "seconds": time.perf_counter() - started}
        RESULTS.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(measured, indent=2) + "\n")
    table = Table(title="demo teacher variants on the test split (%)")
    for column in ("variant", "t→i R@1 en", "t→i R@1 all", "i→t R@1 all", "zero-shot"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name in args.only:
        m = measured[name]
        cells = (m["t2i_R@1_en"], m["t2i_R@1"], m["i2t_R@1"], m["zero_shot_top1"])
        table.add_row(name, *(f"{100 * value:.1f}" for value in cells))
    Console().print(table)


if __name__ == "__main__":
    main()
