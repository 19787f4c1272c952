"""ACID ablation on the demo corpus: the same small student trained with `none`, `acid` and
`acid + kd` at equal steps, against the demo teacher. Prints and writes what it measures.

    python benchmarks/distill_ablation.py [--steps 600] [--batch-size 128] [--out artifacts/ablation]

Needs the demo corpus (`siglip2-sdk data demo`); trains the demo teacher first if there is none.
Writes benchmarks/results/distill_ablation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from siglip2_sdk.core.shards import iter_examples, split_shards
from siglip2_sdk.distill import recipes
from siglip2_sdk.distill.evaluate import evaluate
from siglip2_sdk.encoder import Encoder

RUNS = {  # name -> distill settings that differ
    "none": dict(select="none"),
    "acid": dict(select="acid"),
    "acid + kd": dict(select="acid", kd_weight=1.0),
}
RESULTS = Path(__file__).parent / "results"


def progress(iterable, description, total=None):
    return track(iterable, description=description, total=total)


def summarize(results: dict) -> dict:
    pooled = results["retrieval"]["all"]
    english = results["retrieval"].get("en", pooled)
    zero_shot = results["zero_shot"]
    return {
        "t2i_R@1_all": pooled["text_to_image"]["R@1"],
        "i2t_R@1_all": pooled["image_to_text"]["R@1"],
        "t2i_R@1_en": english["text_to_image"]["R@1"],
        "zero_shot_top1_mean": statistics.mean(r["top1"] for r in zero_shot.values()),
        "zero_shot_top1": {name: r["top1"] for name, r in zero_shot.items()},
    }


def machine() -> str:
    """CPU model and core count (what the step times depend on)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = (
        [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        if cpuinfo.is_file()
        else []
    )
    model = names[0] if names else platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, {platform.system()}, torch {torch.__version__}"


def step_time(run_dir: Path) -> float:
    """Median seconds per step, past the first 10 (warm-up, first epoch's file opening)."""
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    times = [line["step_time"] for line in lines if "step_time" in line][10:]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("artifacts/data"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/ablation"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--filter-ratio", type=float, default=0.5)
    parser.add_argument("--student", default="demo-student")
    args = parser.parse_args()

    train = str(args.data / "train-*.tar")
    teacher_dir = recipes.resolve_teacher("demo", train, str(args.data / "val-*.tar"), progress, print)
    splits = {split: list(iter_examples(split_shards(args.data, split))) for split in ("val", "test")}
    models = {"teacher": teacher_dir}
    step_times = {}
    for name, settings in RUNS.items():
        run_dir = args.out / name.replace(" + ", "-")
        if not (run_dir / "final" / "config.json").is_file():
            recipes.distill(
                "demo",
                train,
                run_dir,
                resume=True,
                progress=progress,
                log=print,
                student=args.student,
                steps=args.steps,
                batch_size=args.batch_size,
                filter_ratio=args.filter_ratio,
                warmup_steps=max(1, args.steps // 10),
                save_every=max(1, args.steps // 4),
                **settings,
            )
        models[name] = run_dir / "final"
        step_times[name] = step_time(run_dir)

    measured = {}
    for name, folder in models.items():
        encoder = Encoder.load(folder)
        measured[name] = {split: summarize(evaluate(encoder, examples)) for split, examples in splits.items()}
        if name in step_times:
            measured[name]["step_time_s"] = step_times[name]

    report = {
        "machine": machine(),
        "settings": {**vars(args), "data": str(args.data), "out": str(args.out)},
        "examples": {split: len(examples) for split, examples in splits.items()},
        "models": measured,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distill_ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "distill_ablation.md").write_text(markdown(report))
    print_table(report)


def markdown(report: dict) -> str:
    lines = [
        "# ACID ablation on the demo corpus",
        "",
        f"Student `{report['settings']['student']}`, {report['settings']['steps']} steps of "
        f"{report['settings']['batch_size']} (filter ratio {report['settings']['filter_ratio']}); "
        f"teacher: the demo teacher. Machine: {report['machine']}. Generated by "
        "`python benchmarks/distill_ablation.py`.",
        "",
        "| model | val t→i R@1 (all langs) | test t→i R@1 (all langs) | test t→i R@1 (en) | test i→t R@1 | "
        "test zero-shot top-1 (mean) | s/step |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in report["models"].items():
        val, test = m["val"], m["test"]
        step = f"{m['step_time_s']:.2f}" if "step_time_s" in m else "-"
        lines.append(
            f"| {name} | {100 * val['t2i_R@1_all']:.1f} | {100 * test['t2i_R@1_all']:.1f} | "
            f"{100 * test['t2i_R@1_en']:.1f} | {100 * test['i2t_R@1_all']:.1f} | "
            f"{100 * test['zero_shot_top1_mean']:.1f} | {step} |"
        )
    return "\n".join(lines) + "\n"


def print_table(report: dict) -> None:
    table = Table(title="ACID ablation (R@1 and top-1 in %)")
    for column in ("model", "val t→i", "test t→i", "test t→i en", "test i→t", "zero-shot", "s/step"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, m in report["models"].items():
        val, test = m["val"], m["test"]
        table.add_row(
            name,
            f"{100 * val['t2i_R@1_all']:.1f}",
            f"{100 * test['t2i_R@1_all']:.1f}",
            f"{100 * test['t2i_R@1_en']:.1f}",
            f"{100 * test['i2t_R@1_all']:.1f}",
            f"{100 * test['zero_shot_top1_mean']:.1f}",
            f"{m['step_time_s']:.2f}" if "step_time_s" in m else "-",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
