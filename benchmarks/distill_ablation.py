"""ACID ablation on the demo corpus: the demo student trained with and without selection and the KD
term, several seeds each, compared at equal steps and at equal wall-clock time.

    python benchmarks/distill_ablation.py [--seeds 0 1 2] [--steps N] [--out artifacts/ablation]

Rows: `none` (IID), `none + kd`, `acid`, `acid + kd` (what `make demo` trains) and `topk`, each with
the demo recipe's other settings (cli/demo.py's STUDENT). Selection scores a super-batch twice the
sub-batch, so its steps cost more: at equal wall-clock a row whose step is cheaper than `acid + kd`'s
gets proportionally more steps (measured from its equal-steps runs). Needs the demo corpus
(`siglip2-sdk data demo`); trains the demo teacher first if there is none. Every run is kept under
--out and reused. Writes benchmarks/results/distill_ablation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from siglip2_sdk.bench import machine_summary
from siglip2_sdk.cli.common import progress
from siglip2_sdk.cli.demo import STUDENT, student_origin
from siglip2_sdk.core.evaluate import evaluate, headline
from siglip2_sdk.core.shards import iter_examples, split_shards
from siglip2_sdk.distill import recipes
from siglip2_sdk.encoder import Encoder

ROWS = {  # name -> the settings that differ from the demo student's
    "none": dict(select="none", kd_weight=0.0),
    "none + kd": dict(select="none", kd_weight=1.0),
    "acid": dict(select="acid", kd_weight=0.0),
    "acid + kd": dict(select="acid", kd_weight=1.0),
    "topk": dict(select="topk", kd_weight=0.0),
}
REFERENCE = "acid + kd"  # the demo's recipe: its wall-clock is the equal-time budget
METRICS = {  # column -> how to read it from core.evaluate's results
    "t→i R@1 all": lambda r: headline(r)["t2i_R@1"],
    "t→i R@1 en": lambda r: r["retrieval"]["en"]["text_to_image"]["R@1"],
    "i→t R@1 all": lambda r: headline(r)["i2t_R@1"],
    "zero-shot top-1": lambda r: headline(r)["zero_shot_top1"],
}
RESULTS = Path(__file__).parent / "results"


def step_time(run_dir: Path) -> float:
    """Median seconds per step, past the first epoch's (decoding every image once) when there are
    such steps, else past the first step."""
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "step_time" in line]
    later = [line["step_time"] for line in steps if line.get("epoch", 0) > 0]
    return statistics.median(later or [line["step_time"] for line in steps[1:]] or [steps[0]["step_time"]])


def train_run(data: Path, run_dir: Path, settings: dict) -> Path:
    """One student (reused when already there)."""
    recipes.distill(
        "demo", str(data / "train-*.tar"), run_dir, resume=True, progress=progress, log=print, **settings
    )
    return run_dir / "final"


def measure(final: Path, examples: list) -> dict:
    results = evaluate(Encoder.load(final), examples)
    return {column: read(results) for column, read in METRICS.items()}


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("artifacts/data"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=STUDENT["steps"])
    args = parser.parse_args()

    base = {**STUDENT, "steps": args.steps, "save_every": 0}
    examples = list(iter_examples(split_shards(args.data, "test")))
    teacher = recipes.resolve_teacher("demo", str(args.data / "train-*.tar"), None, progress, print)
    runs: dict[str, dict[str, list]] = {}  # comparison -> row -> per-seed results
    seconds: dict[str, float] = {}
    for comparison in ("equal steps", "equal time"):
        runs[comparison] = {}
        for row, differs in ROWS.items():
            steps = args.steps
            if comparison == "equal time":
                steps = round(args.steps * seconds[REFERENCE] / seconds[row])
                if abs(steps - args.steps) <= args.steps // 20:  # within 5%: the equal-steps runs
                    runs[comparison][row] = runs["equal steps"][row]
                    continue
            per_seed = []
            for seed in args.seeds:
                run_dir = args.out / f"{row.replace(' + ', '-')}-steps{steps}-seed{seed}"
                final = train_run(args.data, run_dir, {**base, **differs, "steps": steps, "seed": seed})
                per_seed.append({"steps": steps, "step_s": step_time(run_dir), **measure(final, examples)})
            runs[comparison][row] = per_seed
            if comparison == "equal steps":
                seconds[row] = statistics.median(run["step_s"] for run in per_seed)

    report = {
        "machine": f"{machine_summary()}, torch {torch.__version__}",
        "settings": {**base, "seeds": args.seeds},
        "test_examples": len(examples),
        "teacher": {"path": str(teacher), **measure(teacher, examples)},
        "runs": runs,
        "summary": {
            comparison: {
                row: {column: mean_std([run[column] for run in per_seed]) for column in METRICS}
                | {"steps": per_seed[0]["steps"], "step_s": statistics.median(r["step_s"] for r in per_seed)}
                for row, per_seed in rows.items()
            }
            for comparison, rows in runs.items()
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distill_ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "distill_ablation.md").write_text(markdown(report))
    print_tables(report)


def _cell(stat: dict) -> str:
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def markdown(report: dict) -> str:
    settings = report["settings"]
    teacher = report["teacher"]
    lines = [
        "# ACID ablation on the demo corpus",
        "",
        f"Student: {student_origin(settings)}, batch {settings['batch_size']}, filter ratio "
        f"{settings['filter_ratio']} for the selecting rows, seeds {settings['seeds']} (mean ± std, in %), "
        f"on the {report['test_examples']:,} test examples. Teacher: the demo teacher (t→i R@1 all "
        f"{100 * teacher['t→i R@1 all']:.1f}, en {100 * teacher['t→i R@1 en']:.1f}, i→t "
        f"{100 * teacher['i→t R@1 all']:.1f}, zero-shot {100 * teacher['zero-shot top-1']:.1f}). "
        f"Machine: {report['machine']}. Generated by `python benchmarks/distill_ablation.py`.",
    ]
    for comparison, rows in report["summary"].items():
        lines += ["", f"## {comparison.capitalize()}", ""]
        lines += ["| row | steps | s/step | " + " | ".join(METRICS) + " |"]
        lines += ["| --- " * (len(METRICS) + 3) + "|"]
        for row, stats in rows.items():
            cells = " | ".join(_cell(stats[column]) for column in METRICS)
            lines.append(f"| {row} | {stats['steps']} | {stats['step_s']:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def print_tables(report: dict) -> None:
    for comparison, rows in report["summary"].items():
        table = Table(title=f"ACID ablation, {comparison} (% mean ± std over seeds)")
        for column in ("row", "steps", "s/step", *METRICS):
            table.add_column(column, justify="left" if column == "row" else "right")
        for row, stats in rows.items():
            cells = (_cell(stats[column]) for column in METRICS)
            table.add_row(row, str(stats["steps"]), f"{stats['step_s']:.2f}", *cells)
        Console().print(table)


if __name__ == "__main__":
    main()
