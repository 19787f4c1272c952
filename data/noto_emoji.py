"""Emoji drawn with Noto Color Emoji, named in 14 languages by PyPI `emoji`, labelled by Unicode group.

The font comes from Debian `fonts-noto-color-emoji`, the names from the `emoji` package. The
group/subgroup labels come from Unicode's emoji-test.txt, which Debian ships in `unicode-data`: it
is read from the same root when there (unpack both packages into one root), else labels stay empty.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

from siglip2_sdk.data.debian import SourceUnavailable
from siglip2_sdk.data.source import Pair, Source

FONT = Path("usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("usr/share/unicode/emoji/emoji-test.txt")
GROUPS_PACKAGE = "unicode-data"  # the Debian package that ships EMOJI_TEST
FONT_SIZE = 109  # the size of the font's bitmap strike; FreeType refuses any other for CBDT fonts


def clean_name(name: str) -> str:
    """`:grinning_face:` -> `grinning face`: the `emoji` package's names as plain words."""
    return " ".join(name.strip(":").replace("_", " ").split())


def emoji_names() -> dict[str, dict[str, str]]:
    """Every fully-qualified emoji -> {language: name}, in code-point order.

    Fully-qualified leaves out components on their own (skin tones, hair): `emoji` marks those
    "component", and lone regional indicators are not in its data at all.
    """
    try:
        import emoji
    except ImportError:
        raise SourceUnavailable("emoji names come from PyPI emoji: pip install 'siglip2-sdk[data]'") from None
    emoji.config.load_language()  # names other than English load on request
    fully_qualified = emoji.STATUS["fully_qualified"]
    return {
        text: {lang: clean_name(data[lang]) for lang in emoji.LANGUAGES if lang in data}
        for text, data in sorted(emoji.EMOJI_DATA.items())
        if data["status"] == fully_qualified
    }


def read_groups(path: Path) -> dict[str, dict[str, str]]:
    """Fully-qualified emoji -> {"group": ..., "subgroup": ...} from Unicode's emoji-test.txt."""
    groups: dict[str, dict[str, str]] = {}
    group = subgroup = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.partition(":")[2].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.partition(":")[2].strip()
        elif not line.startswith("#"):
            points, _, status = line.partition("#")[0].partition(";")
            if status.strip() == "fully-qualified":
                text = "".join(chr(int(point, 16)) for point in points.split())
                groups[text] = {"group": group, "subgroup": subgroup}
    return groups


def source_id(text: str) -> str:
    """The emoji's code points as noto-emoji names its files: `1f468-200d-1f469-200d-1f467`."""
    return "-".join(f"{ord(char):x}" for char in text)


def load_font(path: Path) -> ImageFont.FreeTypeFont:
    if not path.is_file():
        raise SourceUnavailable(f"emoji font '{path}' is missing: unpack fonts-noto-color-emoji there")
    if not features.check("raqm"):
        # Without a shaper every ZWJ sequence draws as separate pictures and would be dropped.
        raise SourceUnavailable(
            "emoji sequences need Pillow with libraqm: pip install a Pillow wheel from PyPI"
        )
    return ImageFont.truetype(str(path), FONT_SIZE, layout_engine=ImageFont.Layout.RAQM)


def render(text: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    """The emoji as the font draws it, on a transparent RGBA canvas one line high."""
    _, _, right, bottom = font.getbbox(text, mode="RGBA")
    canvas = Image.new("RGBA", (max(math.ceil(right), 1), max(math.ceil(bottom), 1)))
    ImageDraw.Draw(canvas).text((0, 0), text, font=font, embedded_color=True)
    return canvas


def drop_reason(drawn: Image.Image, advance: float, em: float) -> str | None:
    """Why a rendered emoji is no picture of it: "blank", "several pictures", or None to keep it.

    The font has no glyph for emoji newer than itself (a blank box), and no ligature for some
    sequences, so the shaper lays out each part side by side (`advance`, the text's width, is then
    two or more emoji widths `em`). The shape of the ink cannot tell: ➖ is 3.5 times wider than
    tall, 🍴 has a 17 px gap, and 🫹🏿 draws a blank box beside a square skin-tone swatch.
    """
    if drawn.getchannel("A").getbbox() is None:
        return "blank"
    if advance > 1.5 * em:
        return "several pictures"
    return None


def square(drawn: Image.Image) -> Image.Image:
    """The glyph cropped to its ink and centred on a transparent square."""
    glyph = drawn.crop(drawn.getchannel("A").getbbox())
    side = max(glyph.size)
    out = Image.new("RGBA", (side, side))
    out.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return out


def read_emoji(root: Path, groups_root: Path | None = None) -> Iterator[Pair]:
    """One pair per fully-qualified emoji the font draws as one picture, in code-point order.
    Group/subgroup labels come from `unicode-data`'s emoji-test.txt (under `groups_root`, else `root`)."""
    font = load_font(root / FONT)
    groups_file = (groups_root or root) / EMOJI_TEST
    groups = read_groups(groups_file) if groups_file.is_file() else {}
    em = font.getlength("\N{GRINNING FACE}")
    for text, names in emoji_names().items():
        drawn = render(text, font)
        if drop_reason(drawn, font.getlength(text), em) is None:
            yield Pair(source_id(text), square(drawn), names, dict(groups.get(text, {})))


SOURCE = Source(
    name="emoji",
    debian_package="fonts-noto-color-emoji",
    license="OFL-1.1 (Noto Color Emoji); names BSD-3-Clause (PyPI emoji); groups Unicode-DFS-2016",
    read=read_emoji,
    extra_packages=(GROUPS_PACKAGE,),
)
