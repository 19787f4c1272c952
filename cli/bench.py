"""`bench`: speed, size, memory and accuracy of bundles, on the bench package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_command, libraries_output_to, progress


def add_commands(commands) -> None:
    bench = add_command(commands, "bench", run_bench)
    bench.add_argument("bundles", nargs="*", type=Path, metavar="BUNDLE", help="bundle folders to measure")
    bench.add_argument(
        "--checkpoint", required=True, help="the float checkpoint the bundles come from (reference, baseline)"
    )
    bench.add_argument("--baseline", choices=["transformers", "none"], default="transformers")
    bench.add_argument("--data", default="artifacts/data/test-*.tar", help="test shards (accuracy, inputs)")
    bench.add_argument(
        "--images", type=Path, default=None, help="photo folder for PhotoIndex.add (default: test images)"
    )
    bench.add_argument("--threads", type=int, default=None, help="threads (default: physical cores)")
    bench.add_argument("--batch-size", type=int, default=None, help="throughput batch (default: 32)")
    bench.add_argument("--runs", type=int, default=None, help="timed batch-1 calls per tower (default: 30)")
    bench.add_argument("--batch-runs", type=int, default=None, help="timed batches per tower (default: 5)")
    bench.add_argument("--warmup", type=int, default=None, help="untimed calls per tower first (default: 2)")
    bench.add_argument(
        "--accuracy",
        choices=["full", "cosine", "none"],
        default=None,
        help="full: cosine, zero-shot and retrieval; cosine: embedding cosine only (default: full)",
    )
    bench.add_argument("--examples", type=int, default=None, help="test examples for accuracy (default: all)")
    bench.add_argument(
        "--index-images", type=int, default=None, help="test images for PhotoIndex.add (default: 256)"
    )
    bench.add_argument(
        "--processes",
        type=int,
        default=None,
        help="measure peak memory and accuracy this many models at a time, each in its own process on "
        "one thread; timing stays in one process (default: 1)",
    )
    bench.add_argument("--out", type=Path, default=Path("artifacts/bench"), help="report folder")


def run_bench(args: argparse.Namespace) -> int:
    """speed, size, memory and accuracy of bundles against transformers and the float model

    Measure bundles in one run: image and text tower latency at batch 1 (median, p90) and throughput at
    --batch-size, interleaved across models; load time and peak RSS (a fresh process per model); size;
    achieved GFLOP/s against the CPU's peak; per tower, the FLOPs computed in int8 and the delegate
    partitions; embedding cosine, zero-shot accuracy and text->image R@1 against the float checkpoint
    on the test split; PhotoIndex.add end to end. Writes report.json, report.md and PNG plots into
    --out, and what the runtimes' libraries log into --out/libraries.log.
    """
    from siglip2_sdk.bench import BenchSettings
    from siglip2_sdk.bench import run_bench as measure

    given = {
        name: getattr(args, name)
        for name in ("threads", "batch_size", "runs", "batch_runs", "warmup", "accuracy", "examples",
                     "index_images", "processes")
    }  # fmt: skip
    processes = given.pop("processes")
    if processes is not None:
        given |= {"probe_processes": processes, "accuracy_processes": processes}
    settings = BenchSettings(**{name: value for name, value in given.items() if value is not None})
    with libraries_output_to(args.out / "libraries.log"):
        measure(
            args.bundles,
            args.checkpoint,
            data=args.data,
            out=args.out,
            images=args.images,
            settings=settings,
            baseline=args.baseline,
            progress=progress,
            log=lambda line: print(line, file=sys.stderr),
        )
    print((args.out / "report.md").read_text())
    print(f"report: {args.out / 'report.json'}, {args.out / 'report.md'}, plots: {args.out}/*.png")
    return 0
