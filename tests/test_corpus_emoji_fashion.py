"""The emoji and Fashion-MNIST corpus sources: names, groups, drops, the idx reader, real packages."""

import gzip
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siglip2_sdk.core.assets import cache_dir
from siglip2_sdk.data import fashion_mnist, noto_emoji
from siglip2_sdk.data.fashion_mnist import balanced_indices, read_fashion_mnist, read_idx
from siglip2_sdk.data.noto_emoji import clean_name, drop_reason, read_groups, source_id, square

EMOJI_TEST = """\
# group: Smileys & Emotion

# subgroup: face-smiling
1F600                                      ; fully-qualified     # 😀 E1.0 grinning face

# subgroup: face-affection
263A FE0F                                  ; fully-qualified     # ☺️ E0.6 smiling face
263A                                       ; unqualified         # ☺ E0.6 smiling face

# group: Component

# subgroup: skin-tone
1F3FB                                      ; component           # 🏻 E1.0 light skin tone
"""


def package_root(package: str, marker: Path) -> Path | None:
    """Where a package's files are here: installed, in our cache, or unpacked under /tmp/debs."""
    for root in (Path("/"), cache_dir() / "debs" / package, Path("/tmp/debs") / f"x_{package}"):
        if (root / marker).is_file():
            return root
    return None


EMOJI_ROOT = package_root("fonts-noto-color-emoji", noto_emoji.FONT)
FASHION_ROOT = package_root("dataset-fashion-mnist", fashion_mnist.DATA / "t10k-labels-idx1-ubyte.gz")
needs_emoji_font = pytest.mark.skipif(
    EMOJI_ROOT is None, reason="fonts-noto-color-emoji is not unpacked here"
)
needs_fashion = pytest.mark.skipif(FASHION_ROOT is None, reason="dataset-fashion-mnist is not unpacked here")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def rgba(width: int, height: int, alpha: int) -> Image.Image:
    return Image.new("RGBA", (width, height), (200, 30, 30, alpha))


def test_clean_name_turns_snake_case_into_words():
    assert clean_name(":grinning_face:") == "grinning face"
    assert clean_name(":A_button_(blood_type):") == "A button (blood type)"
    assert clean_name(":手を振る_中間の肌色:") == "手を振る 中間の肌色"


def test_source_id_lists_every_code_point():
    assert source_id("😀") == "1f600"
    assert source_id("👨\u200d👩\u200d👧") == "1f468-200d-1f469-200d-1f467"


def test_groups_come_from_fully_qualified_lines_only(tmp_path):
    path = tmp_path / "emoji-test.txt"
    path.write_text(EMOJI_TEST, encoding="utf-8")
    assert read_groups(path) == {
        "😀": {"group": "Smileys & Emotion", "subgroup": "face-smiling"},
        "☺️": {"group": "Smileys & Emotion", "subgroup": "face-affection"},
    }


def test_emoji_names_are_fully_qualified_in_every_language():
    pytest.importorskip("emoji", reason="emoji names need the data extra")
    names = noto_emoji.emoji_names()
    assert names["😀"]["en"] == "grinning face"
    assert names["😀"]["de"] == "grinsendes gesicht"
    assert len(names["😀"]) >= 10
    assert "🏻" not in names  # a skin tone alone is a component, no emoji
    assert "☺" not in names  # unqualified
    assert list(names) == sorted(names)


def test_transparent_render_is_blank():
    assert drop_reason(Image.new("RGBA", (136, 128), (255, 0, 0, 0)), advance=136, em=136) == "blank"


def test_render_two_emoji_wide_is_several_pictures():
    assert drop_reason(rgba(120, 120, 255), advance=272, em=136) == "several pictures"


def test_wide_ink_within_one_advance_is_kept():
    assert drop_reason(rgba(120, 30, 128), advance=136, em=136) is None  # ➖ is this shape


def test_square_crops_to_ink_and_centres_it():
    drawn = Image.new("RGBA", (136, 128))
    drawn.paste(rgba(40, 20, 255), (10, 50))
    out = square(drawn)
    assert out.size == (40, 40)
    assert out.getchannel("A").getbbox() == (0, 10, 40, 30)


@needs_emoji_font
def test_real_emoji_render_as_one_square_picture():
    font = noto_emoji.load_font(EMOJI_ROOT / noto_emoji.FONT)
    em = font.getlength("😀")
    for text in ("😀", "👋🏽", "🇩🇪", "👨\u200d👩\u200d👧"):
        drawn = noto_emoji.render(text, font)
        assert drop_reason(drawn, font.getlength(text), em) is None, text
        image = square(drawn)
        assert image.width == image.height > 100


@needs_emoji_font
def test_real_sequence_without_ligature_is_several_pictures():
    font = noto_emoji.load_font(EMOJI_ROOT / noto_emoji.FONT)
    text = "🧑\u200d🩰"  # ballet dancer, Emoji 17: newer than the font, drawn as person + shoes
    assert drop_reason(noto_emoji.render(text, font), font.getlength(text), font.getlength("😀")) == (
        "several pictures"
    )


def test_idx_reader_round_trips(tmp_path):
    images = np.arange(3 * 2 * 4, dtype=np.uint8).reshape(3, 2, 4)
    write_idx(tmp_path / "x.gz", images)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), images)


def test_balanced_indices_take_first_of_each_class_in_file_order():
    labels = np.array([0, 1, 0, 0, 2, 1, 1])
    assert balanced_indices(labels, 2).tolist() == [0, 1, 2, 4, 5]


def test_fashion_reader_is_class_balanced(tmp_path, monkeypatch):
    folder = tmp_path / fashion_mnist.DATA
    folder.mkdir(parents=True)
    labels = np.arange(30) % 10
    for split in fashion_mnist.SPLITS:
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", np.zeros((30, 28, 28)) + labels[:, None, None])
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setattr(fashion_mnist, "PER_CLASS", 2)
    pairs = list(read_fashion_mnist(tmp_path))
    assert len(pairs) == 2 * 10 * 2
    assert Counter(p.labels["class"] for p in pairs) == {name: 4 for name, _ in fashion_mnist.CLASSES}
    first = pairs[0]
    assert (first.source_id, first.captions, first.image.mode, first.image.size) == (
        "t10k/00000",
        {"en": "a t-shirt or top"},
        "L",
        (28, 28),
    )
    assert pairs[19].image.getpixel((0, 0)) == 9  # an ankle boot's image, not another's


@pytest.mark.slow
@needs_emoji_font
def test_all_real_emoji_with_groups_from_the_same_root(tmp_path):
    pytest.importorskip("emoji", reason="emoji names need the data extra")
    (tmp_path / noto_emoji.FONT).parent.mkdir(parents=True)
    (tmp_path / noto_emoji.FONT).symlink_to(EMOJI_ROOT / noto_emoji.FONT)
    (tmp_path / noto_emoji.EMOJI_TEST).parent.mkdir(parents=True)
    (tmp_path / noto_emoji.EMOJI_TEST).write_text(EMOJI_TEST, encoding="utf-8")
    pairs = {p.source_id: p for p in noto_emoji.read_emoji(tmp_path)}
    assert len(pairs) >= 3000
    assert len(set.intersection(*(set(p.captions) for p in pairs.values()))) >= 10
    assert pairs["1f600"].labels == {"group": "Smileys & Emotion", "subgroup": "face-smiling"}
    assert pairs["1f603"].labels == {}  # not in the snippet


@pytest.mark.slow
@needs_fashion
def test_all_real_fashion_mnist():
    pairs = list(read_fashion_mnist(FASHION_ROOT))
    assert len(pairs) == 2000
    assert Counter(p.labels["class"] for p in pairs) == {name: 200 for name, _ in fashion_mnist.CLASSES}
