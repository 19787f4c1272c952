"""What every command module shares: the parser class (exit status 2 and a hint on a usage error), how
a subcommand is added, and the progress bar long work shows."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

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


@contextlib.contextmanager
def library_logs_to(path: Path) -> Iterator[None]:
    """While the block runs, what the lowering libraries (export's NOISY_LOGGERS: torchao's optional
    CUDA kernels, torch's pytree registrations, ...) and transformers log goes to the file at `path`
    (its folder made if missing; opened on the first record) instead of the terminal: a command's user
    did nothing to cause it."""
    from siglip2_sdk.export.lowering import NOISY_LOGGERS  # lazily: it imports torch

    handler = (
        logging.FileHandler(path, delay=True) if _writable_folder(path.parent) else logging.NullHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in (*NOISY_LOGGERS, "transformers")]
    saved = [(logger.handlers[:], logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.handlers, logger.propagate = [handler], False
    try:
        yield
    finally:
        for logger, (handlers, propagate) in zip(loggers, saved, strict=True):
            logger.handlers, logger.propagate = handlers, propagate
        handler.close()


def _writable_folder(folder: Path) -> bool:
    """The folder, made if missing; False where a file is in the way (the command reports that)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return folder.is_dir()
