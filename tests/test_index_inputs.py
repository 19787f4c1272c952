"""PhotoIndex.add and search on the inputs a real photo library and real users produce: damaged and
hostile files, unusual but valid encodings, files that change under the indexer, odd queries. Bad
files are recorded as failed with a readable reason and indexing goes on; unusual valid ones are
indexed as the picture a viewer shows. (tests/test_index.py covers empty, truncated and non-image
files, links, odd names and kills.)"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siglip2_sdk import Encoder, PhotoIndex
from siglip2_sdk.core.errors import Siglip2Error

from fixtures import tiny_checkpoint


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return Encoder.load(tiny_checkpoint(tmp_path_factory.mktemp("inputs"), seed=3))


def pattern(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A blocky random picture: distinct enough per seed for the tiny model, and survives JPEG."""
    blocks = np.random.default_rng(seed).integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks.repeat(8, axis=0).repeat(8, axis=1))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def library(root: Path, files: dict[str, bytes], distractors: int = 4) -> Path:
    """A folder with the given files and a few ordinary photos around them."""
    photos = root / "photos"
    photos.mkdir()
    for i in range(distractors):
        pattern(100 + i).save(photos / f"ordinary-{i}.png")
    for name, content in files.items():
        (photos / name).write_bytes(content)
    return photos


def failures_by_name(report) -> dict[str, str]:
    return {Path(path).name: reason for path, reason in report.failed}


def test_png_corrupted_mid_file_is_recorded_and_the_rest_indexed(encoder, tmp_path):
    content = encoded(pattern(1), "PNG")
    middle = len(content) // 2
    photos = library(tmp_path, {"damaged.png": content[:middle] + bytes(64) + content[middle + 64 :]})
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        report = index.add(photos)
        assert report.added == 4
        assert "corrupt" in failures_by_name(report)["damaged.png"]
        assert index.failures() == [(str(photos.absolute() / "damaged.png"), report.failed[0][1])]


def test_jpeg_with_corrupt_tables_is_recorded_but_corrupt_scan_data_is_indexed_as_viewers_show_it(
    encoder, tmp_path
):
    content = encoded(pattern(2), "JPEG", quality=90)
    huffman = content.index(b"\xff\xc4") + 4  # a Huffman table, mid-header
    bad_tables = content[:huffman] + bytes(30) + content[huffman + 30 :]
    scan = content.index(b"\xff\xda")  # the entropy-coded pixels follow
    middle = (scan + len(content)) // 2
    bad_pixels = content[:middle] + bytes(32) + content[middle + 32 :]  # libjpeg conceals this, like viewers
    photos = library(tmp_path, {"bad-tables.jpg": bad_tables, "bad-pixels.jpg": bad_pixels})
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        report = index.add(photos)
        assert list(failures_by_name(report)) == ["bad-tables.jpg"]
        assert "corrupt" in failures_by_name(report)["bad-tables.jpg"]
        assert report.added == 5


def png_claiming(width: int, height: int) -> bytes:
    """A valid small PNG whose header claims another size: what a decompression bomb looks like until
    its pixels are inflated."""
    content = bytearray(encoded(Image.new("L", (8, 8)), "PNG"))
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(content[24:29])
    content[12:29] = header
    content[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(content)


@pytest.mark.parametrize("size", [(13_000, 12_000), (100_000, 100_000)], ids=["our-limit", "pillows-limit"])
def test_a_decompression_bomb_is_refused_before_its_pixels_are_decoded(encoder, tmp_path, size):
    photos = library(tmp_path, {"bomb.png": png_claiming(*size)})
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        report = index.add(photos)
        assert report.added == 4
        assert "image too large" in failures_by_name(report)["bomb.png"]


def assert_found_first(index: PhotoIndex, query: Image.Image, name: str) -> None:
    best = index.search(query, k=1)[0]
    assert Path(best.path).name == name and best.score > 0.98


def test_sixteen_bit_png_is_indexed_as_its_eight_bit_picture(encoder, tmp_path):
    grey = np.asarray(pattern(3).convert("L"), dtype=np.uint16) * 257  # 0..255 -> 0..65535
    sixteen_bit = Image.fromarray(grey.astype(np.uint16))
    assert sixteen_bit.mode.startswith("I;16")
    photos = library(tmp_path, {"scan.png": encoded(sixteen_bit, "PNG")})
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        assert index.add(photos).failed == []
        assert_found_first(index, pattern(3).convert("L").convert("RGB"), "scan.png")


def test_cmyk_jpeg_is_indexed_in_rgb(encoder, tmp_path):
    original = pattern(4)
    photos = library(tmp_path, {"print.jpg": encoded(original.convert("CMYK"), "JPEG", quality=95)})
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        assert index.add(photos).failed == []
        assert_found_first(index, original, "print.jpg")


def test_palette_png_with_a_transparent_colour_is_indexed_on_white(encoder, tmp_path):
    palette = pattern(5).quantize(colors=16)
    palette.info["transparency"] = 0  # palette entry 0 is see-through
    on_white = np.asarray(palette.convert("RGB")).copy()
    on_white[np.asarray(palette) == 0] = 255
    photos = library(tmp_path, {"sticker.png": encoded(palette, "PNG", transparency=0)})
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        assert index.add(photos).failed == []
        assert_found_first(index, Image.fromarray(on_white), "sticker.png")


def test_exif_rotated_jpeg_is_found_by_the_upright_picture(encoder, tmp_path):
    upright = pattern(6, size=(64, 32))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways writes it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    photos = library(
        tmp_path,
        {
            "portrait.jpg": encoded(stored, "JPEG", quality=95, exif=exif),
            "sideways.jpg": encoded(stored, "JPEG", quality=95),  # the same pixels, no orientation tag
        },
    )
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        assert index.add(photos).failed == []
        hits = index.search(upright, k=6)
        names = [Path(hit.path).name for hit in hits]
        assert names[0] == "portrait.jpg" and names.index("sideways.jpg") > 0


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="runs as root, and root reads a file whatever its mode: chmod 000 cannot make it unreadable",
)
def test_an_unreadable_file_is_recorded_and_the_rest_indexed(encoder, tmp_path):
    photos = library(tmp_path, {"private.png": encoded(pattern(7), "PNG")})
    (photos / "private.png").chmod(0)
    try:
        with PhotoIndex.open(tmp_path / "index", encoder) as index:
            report = index.add(photos)
            assert report.added == 4 and "ermission denied" in failures_by_name(report)["private.png"]
    finally:
        (photos / "private.png").chmod(0o644)


def test_a_read_refused_by_the_system_is_recorded_and_the_rest_indexed(encoder, tmp_path, monkeypatch):
    """The unreadable-file path for every user, root included: the read fails as it would on EACCES."""
    photos = library(tmp_path, {"private.png": encoded(pattern(7), "PNG")})
    real_open = os.open

    def refuse_private(path, *args, **kwargs):
        if os.fspath(path).endswith("private.png"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_private)
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        report = index.add(photos)
        assert report.added == 4
        assert failures_by_name(report)["private.png"] == "cannot read: Permission denied"


def test_a_file_replaced_between_reading_and_embedding_is_embedded_again_by_the_next_add(
    encoder, tmp_path, monkeypatch
):
    photos = library(tmp_path, {"live.png": encoded(pattern(8), "PNG")})
    live = photos / "live.png"
    real_embed_and_commit = PhotoIndex._embed_and_commit

    def camera_rewrites_the_file_first(self, pending, report):
        pattern(9).save(live)  # the bytes already read are embedded; the new ones are on disk
        os.utime(live, ns=(7, 7))
        real_embed_and_commit(self, pending, report)

    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        monkeypatch.setattr(PhotoIndex, "_embed_and_commit", camera_rewrites_the_file_first)
        assert index.add(photos).added == 5
        monkeypatch.setattr(PhotoIndex, "_embed_and_commit", real_embed_and_commit)
        assert_found_first(index, pattern(8), "live.png")  # what was read is what was stored
        again = index.add(photos)
        assert (again.added, again.skipped) == (1, 4)
        assert_found_first(index, pattern(9), "live.png")
        assert index.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 5  # the old vector is gone


@pytest.mark.parametrize("query", ["", "\t\n", "\u3000\u00a0"])
def test_an_empty_or_blank_query_is_a_clear_error(encoder, tmp_path, query):
    photos = library(tmp_path, {})
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        index.add(photos)
        with pytest.raises(Siglip2Error, match="query is empty"):
            index.search(query)


@pytest.mark.parametrize(
    "query",
    [
        "a red circle on a blue square " * 2000,
        "赤い自転車 красный велосипед دراجة حمراء 🚲 a red bicycle",
        "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ — עברית ✓ \u200b zero\u200dwidth",
    ],
    ids=["very-long", "mixed-script", "odd-unicode"],
)
def test_long_and_mixed_script_queries_return_ranked_hits(encoder, tmp_path, query):
    photos = library(tmp_path, {})
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        index.add(photos)
        hits = index.search(query, k=3)
        assert len(hits) == 3 and all(np.isfinite(hit.score) for hit in hits)
        assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
