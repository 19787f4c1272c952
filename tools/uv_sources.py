"""Print the `uv pip install` options that give uv the package sources pip is configured with.

`make setup` installs with uv (seconds where pip takes minutes), but uv reads neither pip.conf nor the
PIP_* variables, and a machine may only reach its packages through them (a local wheel folder, a
mirror). `pip config list` gives both; the environment wins, as in pip. uv's default is to take
a package only from the first index that has it; pip weighs every index alike, so uv is told to as well.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

OPTIONS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links"}


def pip_sources() -> dict[str, list[str]]:
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    from_files: dict[str, list[str]] = {}
    from_env: dict[str, list[str]] = {}
    for line in listed.splitlines():  # global.find-links='/opt/wheels', :env:.find-links='...'
        name, _, value = line.partition("=")
        key = name.rpartition(".")[2]
        if key in OPTIONS:
            # Files in the order pip reads them (a later one overrides); the environment beats them
            # all, whichever order this pip version lists it in.
            values = (shlex.split(value) or [""])[0].split()  # "'a b'" -> ["a", "b"]
            (from_env if name.startswith(":env:") else from_files)[key] = values
    return from_files | from_env


def main() -> None:
    args = ["--index-strategy", "unsafe-best-match"]
    for key, values in pip_sources().items():
        for value in values:
            args += [OPTIONS[key], value]
    print(shlex.join(args))


if __name__ == "__main__":
    main()
