"""What every command module shares: the parser class (exit status 2 and a hint on a usage error), how
a subcommand is added, and the progress bar long work shows."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import logging
import os
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


@contextlib.contextmanager
def native_output_to(path: Path) -> Iterator[None]:
    """While the block runs, what is written to file descriptors 1 and 2 goes to the end of the file at
    `path` (its folder made if missing), while sys.stdout and sys.stderr keep writing where they did:
    native libraries (ExecuTorch's cpuinfo, LiteRT's delegate line, absl) and worker processes started
    in the block write to the fds directly, the command's own progress and messages through Python."""
    if not _writable_folder(path.parent):
        yield  # the command reports the folder it cannot write
        return
    streams = sys.stdout, sys.stderr
    for stream in streams:
        stream.flush()
    saved = os.dup(1), os.dup(2)
    # The terminal's ends, for Python's streams while the fds point at the file.
    terminal = tuple(
        io.TextIOWrapper(
            io.FileIO(os.dup(fd), "w"),
            encoding=stream.encoding or "utf-8",
            errors="replace",
            line_buffering=True,
        )
        for fd, stream in zip(saved, streams, strict=True)
    )
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    sys.stdout, sys.stderr = terminal
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams
        for stream in terminal:
            stream.close()
        for fd, descriptor in enumerate(saved, start=1):
            os.dup2(descriptor, fd)
            os.close(descriptor)


@contextlib.contextmanager
def libraries_output_to(path: Path) -> Iterator[None]:
    """While the block runs, everything the libraries say goes to the file at `path`: what they log
    (`library_logs_to`) and what native code prints (`native_output_to`)."""
    with library_logs_to(path), native_output_to(path):
        yield


def _writable_folder(folder: Path) -> bool:
    """The folder, made if missing; False where a file is in the way (the command reports that)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return folder.is_dir()
