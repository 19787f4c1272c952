"""What every command module shares: the parser class (exit status 2 and a hint on a usage error) and
the progress bar long work shows."""

from __future__ import annotations

import argparse
import sys

USER_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse with our exit status for usage errors (argparse also uses 2) and a hint line."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def progress(iterable, description: str, total: int | None = None):
    """A progress bar on the terminal for `iterable` (what every stage's `progress=` callback gets)."""
    from rich.progress import track

    return track(iterable, description=description, total=total)
