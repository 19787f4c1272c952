"""Open Clip Art Library drawings (Debian `openclipart-svg`): each SVG rendered to PNG, captioned from its
RDF metadata (`dc:title` plus `dc:subject` keywords).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from defusedxml import ElementTree

from siglip2_sdk.data.debian import SourceUnavailable
from siglip2_sdk.data.source import Pair, Source, folder_labels
from siglip2_sdk.data.svg import MAX_FILE_BYTES, inline_entities, render_svg_files

SVG_DIR = "usr/share/openclipart/svg"
MAX_SIDE = 256
# A title on this many drawings or more names a collection ("gramastar", "Lemon SVG theme"), not the picture.
COLLECTION_MIN_FILES = 11
# Tagging artefacts, not content (compared lower-case, with "_" read as a space).
JUNK_KEYWORDS = {"", "unsorted", "hash", "magick", "lemon theme icon", "openclipart", "clipart", "svg"}
MAX_KEYWORDS = 6
# Assembly keeps 5 drawings per caption (1,375 are captioned "star: stars, shapes, geometry"); the reader
# renders the first 10 of each caption in path order, leaving room for duplicates and blank drawings,
# instead of rendering ~1,700 drawings that assembly would drop (a minute of the demo's first run).
MAX_PER_CAPTION = 5
RENDER_PER_CAPTION = 2 * MAX_PER_CAPTION

_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_COLLECTION_PREFIX = re.compile(r"^clipart by [^-]+ - ", re.IGNORECASE)  # "Clipart by Nicu Buculei - pear"
# How cairosvg resolves the root's width/height at 96 dpi with no parent viewport.

log = logging.getLogger(__name__)


def read_metadata(data: bytes) -> tuple[str, list[str]]:
    """The work's `dc:title` and `dc:subject` keywords from an SVG's RDF metadata, whitespace collapsed;
    keywords that merely name the creator ("architetto francesco rollandin") are dropped."""
    root = ElementTree.fromstring(inline_entities(data))
    work = root.find(f".//{_RDF}RDF/*[{_DC}title]")
    if work is None:
        return "", []
    title = " ".join((work.findtext(f"{_DC}title") or "").split())
    creator = " ".join((work.findtext(f"{_DC}creator//{_DC}title") or "").split()).lower()
    keywords = [" ".join((li.text or "").split()) for li in work.iterfind(f"{_DC}subject//{_RDF}li")]
    return title, [keyword for keyword in keywords if keyword.lower() != creator]


def _words(text: str) -> set[str]:
    words = (word.rstrip("0123456789") for word in re.split(r"[^a-z0-9]+", text.lower()))
    return {word for word in words if len(word) > 2}


def _file_name_words(stem: str) -> str:
    """'aiga_air_transportation1' -> 'aiga air transportation'; numbering tokens ('01', '70a001') go."""
    tokens = (token.rstrip("0123456789") for token in re.split(r"[_\-\s]+", stem))
    return " ".join(token for token in tokens if token and not any(c.isdigit() for c in token))


def clipart_caption(title: str, keywords: list[str], stem: str, title_uses: int = 1) -> str:
    """English caption 'name: keyword, keyword'.

    The name is the title unless the title is a collection's (used by `COLLECTION_MIN_FILES` drawings or
    more, or sharing no word with the file name, as 'Etiquette Icons' on ant.svg): then the file name's
    words. Keywords drop tagging junk, duplicates and the name itself.
    """
    title = _COLLECTION_PREFIX.sub("", title).replace("_", " ")
    own_title = title_uses < COLLECTION_MIN_FILES and _words(title) & _words(stem)
    name = title if own_title else _file_name_words(stem) or title
    seen = JUNK_KEYWORDS | {name.lower()}
    kept: list[str] = []
    for keyword in (keyword.replace("_", " ") for keyword in keywords):
        if keyword.lower() not in seen:
            seen.add(keyword.lower())
            kept.append(keyword)
    listed = ", ".join(kept[:MAX_KEYWORDS])
    return f"{name}: {listed}" if name and listed else name or listed


def read_clipart(root: Path) -> Iterator[Pair]:
    """One pair per drawing in sorted path order; symlinked duplicates, unreadable, broken and blank
    drawings are skipped and counted in the log.

    Titles are kept under "en": nearly all files say `dc:language` "en", the Italian and French titles
    included, so the metadata cannot tell the language.
    """
    svg_dir = root / SVG_DIR
    if not svg_dir.is_dir():
        raise SourceUnavailable(f"no Openclipart drawings in '{svg_dir}': is openclipart-svg unpacked there?")
    skipped: Counter[str] = Counter()
    drawings = []  # (path, title, keywords)
    for path in sorted(svg_dir.rglob("*.svg")):
        if path.is_symlink():
            continue  # the same drawing filed under a second category
        if path.stat().st_size > MAX_FILE_BYTES:
            skipped["file too large"] += 1
            continue
        try:
            drawings.append((path, *read_metadata(path.read_bytes())))
        except Exception as error:  # hostile or broken XML: skip the drawing, not the source
            skipped[f"metadata ({type(error).__name__})"] += 1
    title_uses = Counter(title for _, title, _ in drawings)
    captioned, per_caption = [], Counter()
    for path, title, keywords in drawings:
        caption = clipart_caption(title, keywords, path.stem, title_uses[title])
        per_caption[caption] += 1
        if not caption:
            skipped["no caption"] += 1
        elif per_caption[caption] > RENDER_PER_CAPTION:
            skipped["caption repeated"] += 1
        else:
            captioned.append((path, caption))
    rendered = render_svg_files([path for path, _ in captioned], MAX_SIDE)
    for (path, caption), image in zip(captioned, rendered, strict=True):
        if isinstance(image, str):
            skipped[image] += 1
            continue
        relative = path.relative_to(svg_dir)
        labels = folder_labels(relative)
        yield Pair(source_id=relative.as_posix(), image=image, captions={"en": caption}, labels=labels)
    log.info("openclipart: skipped %d drawings: %s", sum(skipped.values()), dict(skipped))


SOURCE = Source(
    name="openclipart",
    debian_package="openclipart-svg",
    license="CC-PDDC (Open Clip Art Library public-domain dedication)",
    read=read_clipart,
    max_per_caption=MAX_PER_CAPTION,
    reader_version=3,  # 3: cairo reset before each drawing with text (see svg._reset_cairo); 2: drawings
    # past RENDER_PER_CAPTION of a caption are not rendered
)
