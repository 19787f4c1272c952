"""`data demo`: build the offline demo corpus (the data stage)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import Parser, progress


def add_commands(commands) -> None:
    data = commands.add_parser(
        "data",
        help="build datasets (demo: the offline multilingual corpus)",
        description="Build datasets. `data demo` makes the offline demo corpus: real multilingual image-text "
        "pairs from Debian packages (Tux Paint stamps, Noto emoji + PyPI emoji names, Open Clip Art, "
        "Fashion-MNIST), as WebDataset shards with a generated data card. Packages that are not installed "
        "are fetched with `apt-get download` and unpacked into the cache (no root needed). A second run "
        "reuses everything already built.",
    )
    kinds = data.add_subparsers(dest="kind", metavar="KIND", parser_class=Parser, required=True)
    demo = kinds.add_parser("demo", help="build the offline demo corpus")
    demo.add_argument(
        "--out", type=Path, default=Path("artifacts/data"), help="output folder (default: artifacts/data)"
    )
    demo.set_defaults(run=run_data_demo)


def run_data_demo(args: argparse.Namespace) -> int:
    from siglip2_sdk.data.build import build_corpus

    report = build_corpus(args.out, progress=progress)
    stats = report.stats
    for name, reason in report.unavailable.items():
        print(f"source {name} skipped: {reason}", file=sys.stderr)
    done = "built" if report.assembled else "already up to date, nothing to do"
    print(
        f"corpus {done}: {args.out} — {stats['pairs']:,} pairs "
        f"({', '.join(f'{k} {v:,}' for k, v in stats['splits'].items())}), "
        f"{len(stats['languages'])} languages; data card: {args.out / 'README.md'}"
    )
    return 0
