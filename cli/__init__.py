"""The `siglip2-sdk` command line: a client of every stage, one module per stage, each adding its
subcommands with their flags beside their handlers (info, data, evaluate, distill, export, search,
bench, demo).

Every command has `--help`; a user error (bad path, missing file, bad value) prints one line to
stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.version import __version__

from . import bench, data, demo, distill, evaluate, export, info, search
from .common import USER_ERROR, Parser

# In the order `siglip2-sdk --help` lists their commands.
STAGES = (info, data, evaluate, distill, export, search, bench, demo)


def build_parser() -> argparse.ArgumentParser:
    """The whole parser: every stage's commands with their flags."""
    parser = Parser(
        prog="siglip2-sdk",
        description="SigLIP 2 from the data center to the phone: distill a compact student from a large "
        "teacher, export it to ONNX / LiteRT / ExecuTorch, embed and search photos offline.",
    )
    parser.add_argument("--version", action="version", version=f"siglip2-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for stage in STAGES:
        stage.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    command = argv[at] if at is not None else None
    parser = build_parser()
    try:
        if command in distill.TRAINING:
            subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            argv = distill.with_config_file(argv, at + 1, subcommands.choices[command])
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return USER_ERROR
        return args.run(args)
    except Siglip2Error as exc:
        print(f"siglip2-sdk {command}: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"siglip2-sdk {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
