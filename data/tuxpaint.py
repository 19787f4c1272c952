"""Tux Paint stamps (Debian `tuxpaint-stamps-default`): photo cut-outs and clip art captioned in up to 77
locales.

A stamp is `stamps/<category>/.../NAME.png` (or `.svg`) with `NAME.txt` beside it: the first line is the
English caption, then `LOCALE.utf8=caption` lines. Images without their own `.txt` (the `_mirror`
variants) are not stamps.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from siglip2_sdk.data.debian import SourceUnavailable
from siglip2_sdk.data.source import Pair, Source, folder_labels
from siglip2_sdk.data.svg import render_svg_files

STAMPS_DIR = "usr/share/tuxpaint/stamps"
SVG_MAX_SIDE = 512

_LOCALE_LINE = re.compile(r"([A-Za-z]{2,3}(?:_[A-Za-z]{2})?(?:@[A-Za-z]+)?)\.utf-?8=(.*)", re.IGNORECASE)
_SCRIPTS = {"latin": "Latn", "cyrillic": "Cyrl", "devanagari": "Deva"}  # glibc @modifiers that name a script

log = logging.getLogger(__name__)


def language_tag(locale: str) -> str:
    """BCP-47-style tag for a POSIX locale name, so every source keys captions the same way.

    The codeset goes, `_` becomes `-`, the language is lower case, a region upper case, a script
    modifier becomes its ISO 15924 subtag and any other modifier a variant; tags already in BCP-47
    form come back unchanged: "de.utf8" -> "de", "pt_BR.UTF-8" -> "pt-BR", "sr@latin" -> "sr-Latn",
    "ca@valencia.utf8" -> "ca-valencia", "zh-Hant-TW" -> "zh-Hant-TW".
    """
    name, _, modifier = locale.partition("@")
    subtags = [s for s in re.split(r"[-_]", name.split(".")[0]) if s]
    if modifier := modifier.split(".")[0]:
        subtags.append(_SCRIPTS.get(modifier.lower(), modifier))
    language, rest = subtags[0].lower(), []
    for subtag in subtags[1:]:
        if len(subtag) == 4 and subtag.isalpha():
            rest.append((0, subtag.title()))  # script
        elif (len(subtag) == 2 and subtag.isalpha()) or (len(subtag) == 3 and subtag.isdigit()):
            rest.append((1, subtag.upper()))  # region
        else:
            rest.append((2, subtag.lower()))  # variant
    return "-".join([language] + [subtag for _, subtag in sorted(rest, key=lambda item: item[0])])


def read_captions(text: str) -> dict[str, str]:
    """Captions by language tag from a stamp's .txt; empty captions, malformed lines and `en-*` captions
    identical to the English one are dropped."""
    captions: dict[str, str] = {}
    for number, line in enumerate(text.lstrip("\ufeff").splitlines()):
        if match := _LOCALE_LINE.fullmatch(line.strip()):
            if match[2].strip():
                captions.setdefault(language_tag(match[1]), match[2].strip())
        elif number == 0 and line.strip():
            captions["en"] = line.strip()
    english = captions.get("en")
    return {tag: text for tag, text in captions.items() if not (tag.startswith("en-") and text == english)}


def _open_png(path: Path) -> Image.Image | str:
    try:
        with Image.open(path) as image:
            return image.copy()
    except (OSError, SyntaxError, ValueError) as error:  # PIL's ways of saying "not a readable PNG"
        return f"unreadable image ({type(error).__name__})"


def read_stamps(root: Path) -> Iterator[Pair]:
    """One pair per stamp with a caption file, in sorted path order: the PNG when there is one, else the
    SVG rendered with its long side at `SVG_MAX_SIDE` px."""
    stamps_dir = root / STAMPS_DIR
    if not stamps_dir.is_dir():
        raise SourceUnavailable(f"no stamps in '{stamps_dir}': is tuxpaint-stamps-default unpacked there?")
    skipped: Counter[str] = Counter()
    stamps = []  # (image path, captions)
    images = {path.with_name(path.stem) for path in stamps_dir.rglob("*") if path.suffix in (".png", ".svg")}
    for base in sorted(images):
        png, svg, txt = (base.with_name(base.name + suffix) for suffix in (".png", ".svg", ".txt"))
        try:
            captions = read_captions(txt.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            skipped["no caption file"] += 1
            continue
        if not captions:
            skipped["empty caption file"] += 1
            continue
        stamps.append((png if png.is_file() else svg, captions))
    rendered = render_svg_files([path for path, _ in stamps if path.suffix == ".svg"], SVG_MAX_SIDE)
    for path, captions in stamps:
        image = next(rendered) if path.suffix == ".svg" else _open_png(path)
        if isinstance(image, str):
            skipped[image] += 1
            continue
        relative = path.relative_to(stamps_dir)
        labels = folder_labels(relative)
        yield Pair(source_id=relative.as_posix(), image=image, captions=captions, labels=labels)
    log.info("tuxpaint: skipped %d stamps: %s", sum(skipped.values()), dict(skipped))


SOURCE = Source(
    name="tuxpaint",
    debian_package="tuxpaint-stamps-default",
    license="GPL-2.0-or-later (Tux Paint stamps by Bill Kendrick and contributors)",
    read=read_stamps,
    reader_version=2,  # 2: cairo reset before each SVG stamp with text (see svg._reset_cairo)
)
