"""Tux Paint and Openclipart readers: captions, language tags, labels and skips on tiny fake package
trees; a slow check on the real packages when they are present."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from xml.etree.ElementTree import ParseError

import pytest
from PIL import Image

from siglip2_sdk.core.assets import cache_dir
from siglip2_sdk.data import openclipart, tuxpaint
from siglip2_sdk.data.debian import SourceUnavailable
from siglip2_sdk.data.openclipart import clipart_caption, read_metadata
from siglip2_sdk.data.svg import inline_entities, render_svg
from siglip2_sdk.data.tuxpaint import language_tag, read_captions

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"><circle r="{h}" fill="{fill}"/></svg>'
DRAWING = SVG.format(w=100, h=50, fill="red")
BLANK = SVG.format(w=10, h=10, fill="white")
ILLUSTRATOR = """<?xml version="1.0"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.0//EN" "svg10.dtd" [
  <!ENTITY ns_svg "http://www.w3.org/2000/svg">
]>
<svg xmlns="&ns_svg;" width="20" height="10"><circle cx="5" cy="5" r="4" fill="blue"/></svg>"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE svg [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><title>&secret;</title>
<circle r="5" fill="red"/></svg>"""


def clipart_svg(title: str, keywords: list[str], creator: str = "Someone") -> str:
    items = "".join(f"<rdf:li>{keyword}</rdf:li>" for keyword in keywords)
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">
  <metadata><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
      xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://web.resource.org/cc/">
    <cc:Work rdf:about=""><dc:title>{title}</dc:title>
      <dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>
      <dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator>
    </cc:Work></rdf:RDF></metadata>
  <circle r="10" fill="green"/></svg>"""


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def png(path: Path, size: tuple[int, int] = (30, 20)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", size, (200, 0, 0, 255)).save(path)
    return path


@pytest.mark.parametrize(
    ("locale", "tag"),
    [
        ("de.utf8", "de"),
        ("en_GB.utf8", "en-GB"),
        ("pt_BR.UTF-8", "pt-BR"),
        ("zh_CN.utf8", "zh-CN"),
        ("ca@valencia.utf8", "ca-valencia"),
        ("sr@latin.utf8", "sr-Latn"),
        ("sr_RS@latin", "sr-Latn-RS"),
        ("zh-Hant-TW", "zh-Hant-TW"),
        ("es_419", "es-419"),
        ("EN", "en"),
    ],
)
def test_language_tag_turns_locales_into_bcp47(locale, tag):
    assert language_tag(locale) == tag


def test_read_captions_keeps_translations_and_drops_junk():
    text = (
        "\ufeffA frog.\n"
        "de.utf8=Ein Frosch.\n"
        "en_GB.utf8=A frog.\n"
        "en_AU.utf8=A froggy.\n"
        "pt_BR.utf8= Um sapo. \n"
        "fr.utf8=\n"
        "this line is not a caption\n"
        "ca@valencia.utf8=Una granota.\n"
    )
    assert read_captions(text) == {
        "en": "A frog.",
        "de": "Ein Frosch.",
        "en-AU": "A froggy.",
        "pt-BR": "Um sapo.",
        "ca-valencia": "Una granota.",
    }


@pytest.fixture
def stamps_root(tmp_path: Path) -> Path:
    stamps = tmp_path / tuxpaint.STAMPS_DIR
    png(stamps / "animals/amphibians/frog.png")
    write(stamps / "animals/amphibians/frog.txt", "A frog.\nde.utf8=Ein Frosch.\nzh_CN.utf8=青蛙。\n")
    png(stamps / "animals/amphibians/frog_mirror.png")  # a variant without its own caption file
    write(stamps / "food/apple.svg", DRAWING)
    write(stamps / "food/apple.txt", "An apple.\nfr.utf8=Une pomme.\n")
    png(stamps / "food/pear.png", (7, 9))
    write(stamps / "food/pear.svg", DRAWING)
    write(stamps / "food/pear.txt", "A pear.\n")
    write(stamps / "symbols/broken.svg", "<svg this is not xml")
    write(stamps / "symbols/broken.txt", "Broken.\n")
    return tmp_path


def test_stamps_yield_one_pair_per_captioned_image(stamps_root):
    pairs = list(tuxpaint.SOURCE.read(stamps_root))
    assert [p.source_id for p in pairs] == ["animals/amphibians/frog.png", "food/apple.svg", "food/pear.png"]
    frog, apple, pear = pairs
    assert frog.captions == {"en": "A frog.", "de": "Ein Frosch.", "zh-CN": "青蛙。"}
    assert frog.labels == {"category": "animals", "subcategory": "amphibians"}
    assert apple.labels == {"category": "food"}
    assert apple.image.size == (tuxpaint.SVG_MAX_SIDE, tuxpaint.SVG_MAX_SIDE // 2)
    assert pear.image.size == (7, 9)  # the PNG wins over the SVG


def test_missing_package_tree_is_reported(tmp_path):
    with pytest.raises(SourceUnavailable, match="tuxpaint-stamps-default"):
        list(tuxpaint.SOURCE.read(tmp_path))
    with pytest.raises(SourceUnavailable, match="openclipart-svg"):
        list(openclipart.SOURCE.read(tmp_path))


def test_read_metadata_takes_title_and_keywords_but_not_the_creator():
    svg = clipart_svg("Provetta plasma sangue", ["unsorted", "Rollandin", "blood"], creator="Rollandin")
    assert read_metadata(svg.encode()) == ("Provetta plasma sangue", ["unsorted", "blood"])


def test_caption_is_title_then_clean_keywords():
    caption = clipart_caption(
        "Cherry Pie", ["food", "hash", "Food", "cherry_pie", "", "dessert"], "cherry_pie_01"
    )
    assert caption == "Cherry Pie: food, dessert"
    assert clipart_caption("Provetta plasma sangue", ["unsorted"], "provetta_plasma_sangue_a_01") == (
        "Provetta plasma sangue"
    )


def test_collection_titles_give_way_to_the_file_name():
    assert clipart_caption("Etiquette Icons", ["icons"], "ant") == "ant: icons"
    assert clipart_caption("Candy", [], "candy_02", title_uses=8) == "Candy"
    assert clipart_caption("gramastar", ["stars"], "star_05pt02step", title_uses=1375) == "star: stars"
    assert (
        clipart_caption("Clipart by Nicu Buculei - jigsaw_red_10", [], "jigsaw_blue_01", 48) == "jigsaw blue"
    )
    assert clipart_caption("gold-theme", ["icon"], "70a031") == "gold-theme: icon"


def test_illustrator_entities_are_inlined_and_others_rejected():
    assert b"<!ENTITY" not in inline_entities(ILLUSTRATOR.encode())
    assert b'xmlns="http://www.w3.org/2000/svg"' in inline_entities(ILLUSTRATOR.encode())
    with pytest.raises(ParseError, match="undefined entity"):
        read_metadata(EXTERNAL_ENTITY.encode())


@pytest.fixture
def clipart_root(tmp_path: Path) -> Path:
    svg = tmp_path / openclipart.SVG_DIR
    write(
        svg / "science/medicine/provetta_plasma_sangue_a_01.svg",
        clipart_svg("Provetta plasma sangue", ["unsorted"]),
    )
    write(svg / "food/cherry_pie.svg", clipart_svg("Cherry Pie", ["food", "dessert"]))
    write(svg / "office/illustrator_logo.svg", ILLUSTRATOR)
    write(svg / "special/blank.svg", BLANK)
    write(svg / "special/broken.svg", "<svg><unclosed></svg>")
    write(svg / "special/secret.svg", EXTERNAL_ENTITY)
    write(
        svg / "special/no_size.svg",
        '<svg xmlns="http://www.w3.org/2000/svg"><rect width="5" height="5"/></svg>',
    )
    (svg / "animals").mkdir()
    (svg / "animals/cherry_pie.svg").symlink_to("../food/cherry_pie.svg")
    return tmp_path


def _text_drawing(width: int) -> bytes:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="80"><text x="5" y="50" '
        'font-family="Bitstream Vera Sans" font-size="9">Hello</text></svg>'
    ).encode()


def test_text_renders_the_same_whatever_was_drawn_before():
    # Without a reset, cairo's caches made text drawn after other text differ from text drawn first,
    # so which drawings a pool worker had rendered before changed the corpus.
    drawing = _text_drawing(517)
    code = (
        "import sys; from siglip2_sdk.data.svg import render_svg; "
        "sys.stdout.buffer.write(render_svg(sys.stdin.buffer.read(), 256).tobytes())"
    )
    first_in_its_process = subprocess.run(
        [sys.executable, "-c", code], input=drawing, capture_output=True, check=True
    ).stdout
    for width in (200, 517):
        render_svg(_text_drawing(width), 256)
    assert render_svg(drawing, 256).tobytes() == first_in_its_process


def test_clipart_renders_captions_and_skips_the_unusable(clipart_root, caplog):
    with caplog.at_level("INFO"):
        pairs = list(openclipart.SOURCE.read(clipart_root))
    assert [p.source_id for p in pairs] == [
        "food/cherry_pie.svg",
        "office/illustrator_logo.svg",
        "science/medicine/provetta_plasma_sangue_a_01.svg",
    ]
    pie, logo, test_tube = pairs
    assert pie.captions == {"en": "Cherry Pie: food, dessert"}
    assert pie.labels == {"category": "food"}
    assert pie.image.size == (openclipart.MAX_SIDE, openclipart.MAX_SIDE // 2)
    assert logo.captions == {"en": "illustrator logo"}  # no metadata: the file name
    assert test_tube.captions == {"en": "Provetta plasma sangue"}
    assert test_tube.labels == {"category": "science", "subcategory": "medicine"}
    assert "skipped 4 drawings" in caplog.text


def test_clipart_renders_only_the_first_drawings_of_a_repeated_caption(tmp_path, caplog):
    svg = tmp_path / openclipart.SVG_DIR
    for number in range(openclipart.RENDER_PER_CAPTION + 3):
        write(svg / f"shapes/star_{number:02d}.svg", clipart_svg("Star", ["shapes"]))
    with caplog.at_level("INFO"):
        pairs = list(openclipart.SOURCE.read(tmp_path))
    assert [p.source_id for p in pairs] == [
        f"shapes/star_{number:02d}.svg" for number in range(openclipart.RENDER_PER_CAPTION)
    ]
    assert "'caption repeated': 3" in caplog.text


def real_package_root(package: str, folder: str) -> Path:
    for root in (Path("/"), cache_dir() / "debs" / package):
        if (root / folder).is_dir():
            return root
    pytest.skip(f"Debian package {package} is neither installed nor unpacked in {cache_dir() / 'debs'}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "folder", "min_pairs"),
    [(tuxpaint.SOURCE, tuxpaint.STAMPS_DIR, 900), (openclipart.SOURCE, openclipart.SVG_DIR, 5000)],
    ids=["tuxpaint", "openclipart"],
)
def test_real_package_yields_expected_counts(source, folder, min_pairs):
    root = real_package_root(source.debian_package, folder)
    languages: Counter[str] = Counter()
    ids = []
    for pair in source.read(root):
        assert pair.captions.get("en") and pair.labels["category"]
        languages.update(pair.captions.keys())
        ids.append(pair.source_id)
    assert len(ids) >= min_pairs and len(set(ids)) == len(ids)
    if source is tuxpaint.SOURCE:
        assert len(languages) >= 20
