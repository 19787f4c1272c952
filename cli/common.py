"""What every command module shares: the parser class (exit status 2 and a hint on a usage error), how
a subcommand is added, and the progress bar long work shows."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable

USER_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse with our exit status for usage errors (argparse also uses 2) and a hint line."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_command(commands, name: str, run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """The subcommand `name`, run by `run`, whose docstring is its help: the first line is what
    `siglip2-sdk --help` lists, the rest the description `siglip2-sdk NAME --help` shows."""
    first, _, rest = inspect.getdoc(run).partition("\n")
    parser = commands.add_parser(name, help=first, description=" ".join(rest.split()) or None)
    parser.set_defaults(run=run)
    return parser


def progress(iterable, description: str, total: int | None = None):
    """A progress bar on the terminal for `iterable` (what every stage's `progress=` callback gets)."""
    from rich.progress import track

    return track(iterable, description=description, total=total)
