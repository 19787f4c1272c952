"""`index` and `search`: photo search from the command line, on the SDK's `PhotoIndex`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from siglip2_sdk.core.errors import Siglip2Error

from .common import add_command, progress


def add_commands(commands) -> None:
    index = add_command(commands, "index", run_index)
    index.add_argument("photos", nargs="*", type=Path, help="folders and/or image files")
    index.add_argument("--bundle", required=True, help="bundle folder (or a checkpoint, run on torch)")
    index.add_argument("--runtime", default=None, help="runtime (default: the bundle's own)")
    index.add_argument("--index", type=Path, required=True, help="index folder (created if missing)")
    index.add_argument("--batch-size", type=int, default=32)
    index.add_argument(
        "--forget-missing",
        action="store_true",
        help="also forget every indexed file that no longer exists, wherever it was (a renamed or removed "
        "folder); adding a folder already forgets the files gone from under it",
    )

    search = add_command(commands, "search", run_search)
    search.add_argument("query", nargs="?", default=None, help="text query (omit with --image)")
    search.add_argument("--image", type=Path, default=None, help="search by this image instead of text")
    search.add_argument("--index", type=Path, required=True, help="index folder made by `siglip2-sdk index`")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")
    search.add_argument("--html", type=Path, default=None, help="also write a contact sheet of the hits here")


def run_index(args: argparse.Namespace) -> int:
    """index a folder of photos for offline search

    Embed every image under PHOTOS into an index folder (SQLite catalog + vectors). Incremental:
    unchanged files are skipped, changed ones re-embedded, deleted ones forgotten, identical files share
    one vector. A crash loses at most the batch in flight; bad files are recorded with their reason and
    indexing goes on. --forget-missing (PHOTOS optional then) drops files gone from anywhere.
    """
    from siglip2_sdk.encoder import Encoder
    from siglip2_sdk.index import PhotoIndex

    if args.batch_size < 1:
        raise Siglip2Error(f"--batch-size must be at least 1, got {args.batch_size}")
    if not args.photos and not args.forget_missing:
        raise Siglip2Error("give the photos to index (folders or files), or --forget-missing")
    encoder = Encoder.load(args.bundle, runtime=args.runtime)
    with PhotoIndex.open(args.index, encoder) as index:
        report = index.add(
            args.photos, batch_size=args.batch_size, progress=lambda it: progress(it, "indexing")
        )
        if args.forget_missing:
            report.removed += index.forget_missing()
        total = len(index)
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(
        f"{args.index}: {report.added} added, {report.skipped} unchanged, {report.removed} removed, "
        f"{len(report.failed)} failed; {total} photos indexed"
    )
    return 0


# What the demo writes beside its test photos: {file name: {language: caption}}.
CAPTIONS_FILE = "captions.json"


def caption_of(by_language: dict[str, str]) -> str:
    """The caption a person reads for a photo: its English one, else its first."""
    return str(by_language.get("en") or next(iter(by_language.values()), ""))


def printable(text: str) -> str:
    """`text` with the odd bytes of a file name that is not UTF-8 escaped, rather than a crash."""
    return text.encode("utf-8", "backslashreplace").decode()


def _read_captions(file: Path) -> dict:
    try:
        captions = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none there, or a file of the same name that is not ours
    return captions if isinstance(captions, dict) else {}


def captions_beside(paths) -> dict[str, str]:
    """Each photo's caption (by path), for the photos that have a `captions.json` beside them."""
    folders: dict[Path, dict] = {}
    found = {}
    for path in paths:
        folder = Path(path).parent
        if folder not in folders:
            folders[folder] = _read_captions(folder / CAPTIONS_FILE)
        by_language = folders[folder].get(Path(path).name)
        if isinstance(by_language, dict) and by_language:
            found[path] = caption_of(by_language)
    return found


def contact_sheet(title: str, searches, captions: dict[str, str]) -> str:
    """A self-contained HTML page of hits for a person to look at: one section per (heading, hits),
    each hit a thumbnail linking to its file, its score and its caption (else its file name)."""
    import html

    def figure(hit) -> str:
        path = Path(hit.path)
        uri, name = html.escape(path.as_uri()), html.escape(printable(path.name))
        label = html.escape(printable(captions.get(hit.path, path.name)))
        return (
            f'<figure><a href="{uri}"><img src="{uri}" alt="{label}" title="{name}" loading="lazy"></a>'
            f"<figcaption>{hit.score:.3f} {label}</figcaption></figure>"
        )

    def section(heading: str, hits) -> str:
        figures = "\n".join(figure(hit) for hit in hits)
        return f"<section>{f'<h2>{html.escape(heading)}</h2>' if heading else ''}\n{figures}\n</section>"

    style = (
        "body{font-family:sans-serif} figure{display:inline-block;margin:6px;width:200px;vertical-align:top} "
        "img{width:200px;height:200px;object-fit:contain;background:#eee} figcaption{font-size:12px}"
    )
    sections = "\n".join(section(heading, hits) for heading, hits in searches)
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
        f"<h1>{html.escape(title)}</h1>\n{sections}\n"
    )


def run_search(args: argparse.Namespace) -> int:
    """search an index by text (or by an example image)

    Print the photos closest to a text query, with cosine scores.
    """
    from siglip2_sdk.encoder import Encoder
    from siglip2_sdk.index import PhotoIndex

    if (args.query is None) == (args.image is None):
        raise Siglip2Error("give either a text query or --image PATH")
    if args.html and not args.html.parent.is_dir():
        raise Siglip2Error(f"--html {args.html}: the folder '{args.html.parent}' does not exist; create it")
    model, runtime = PhotoIndex.encoder_location(args.index)
    with PhotoIndex.open(args.index, Encoder.load(model, runtime=runtime)) as index:
        hits = index.search(args.query if args.image is None else args.image, k=args.k)
    captions = captions_beside(hit.path for hit in hits)
    if args.html:
        page = contact_sheet(str(args.query or args.image), [("", hits)], captions)
        try:
            args.html.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise Siglip2Error(f"cannot write --html {args.html}: {exc.strerror}") from None
    if args.json:
        print(json.dumps([{"path": hit.path, "score": hit.score} for hit in hits], indent=2))
        return 0
    table = Table(title=f"{escape(str(args.query or args.image))} ({len(hits)} results)")
    table.add_column("score", justify="right")
    table.add_column("path")
    if captions:
        table.add_column("caption")
    for hit in hits:
        caption = [escape(printable(captions.get(hit.path, "")))] if captions else []
        table.add_row(f"{hit.score:.3f}", escape(printable(hit.path)), *caption)
    Console().print(table)
    return 0
