"""The SigLIP 2 text contract (big_vision): lowercase, Gemma pieces, no BOS, sticky EOS, right-pad 0.

Expected ids are written as SentencePiece pieces and looked up in the vocabulary, never taken from
our own `encode`. Gemma has no dummy prefix: the first word has no "▁"; a space becomes "▁" glued
to the word after it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tokenizers

from siglip2_sdk.core import assets
from siglip2_sdk.core.errors import TokenizerError
from siglip2_sdk.core.tokenizer import Tokenizer

LENGTH = 64
PAD, EOS, BOS = 0, 1, 2  # Gemma's fixed special ids


@pytest.fixture(scope="module")
def gemma_path() -> Path:
    return assets.fetch_gemma_tokenizer()


@pytest.fixture(scope="module")
def tok(gemma_path: Path) -> Tokenizer:
    return Tokenizer.from_file(gemma_path)


@pytest.fixture(scope="module")
def raw(gemma_path: Path) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer.from_file(str(gemma_path))


def ids_of(raw: tokenizers.Tokenizer, pieces: list[str]) -> list[int]:
    ids = [raw.token_to_id(p) for p in pieces]
    assert None not in ids, (
        f"not in the vocabulary: {[p for p, i in zip(pieces, ids, strict=True) if i is None]}"
    )
    return ids


def row(ids: list[int]) -> list[int]:
    return [*ids, EOS] + [PAD] * (LENGTH - len(ids) - 1)


GOLDEN = {
    "latin_uppercase_is_lowered": ("A Photo of a Cat", ["a", "▁photo", "▁of", "▁a", "▁cat"]),
    "cjk": ("一只猫的照片", ["一只", "猫", "的照片"]),
    "arabic": ("صورة قطة", ["صورة", "▁ق", "طة"]),
    "devanagari": ("एक बिल्ली की तस्वीर", ["एक", "▁ब", "िल्ली", "▁की", "▁त", "स्व", "ीर"]),
    # Common emoji are whole pieces; the space before an emoji is a lone "▁".
    "emoji_whole_pieces": ("🐱 cat 🚲", ["🐱", "▁cat", "▁", "🚲"]),
    # Emoji newer than the vocabulary (moose, Unicode 15) fall back to their UTF-8 bytes F0 9F AB 8E.
    "emoji_byte_fallback": ("🫎", ["<0xF0>", "<0x9F>", "<0xAB>", "<0x8E>"]),
    # Text that looks like a control token is plain text, as in SentencePiece.
    "control_token_text_is_plain": ("<EOS> <bos>", ["<", "eos", ">", "▁<", "bos", ">"]),
}


@pytest.mark.parametrize("case", GOLDEN)
def test_golden_ids(tok: Tokenizer, raw: tokenizers.Tokenizer, case: str) -> None:
    text, pieces = GOLDEN[case]
    assert tok(text)[0].tolist() == row(ids_of(raw, pieces))


def test_byte_fallback_pieces_are_utf8_bytes() -> None:
    assert "🫎".encode() == bytes([0xF0, 0x9F, 0xAB, 0x8E])


def test_lowercase_off_keeps_case(gemma_path: Path, raw: tokenizers.Tokenizer) -> None:
    cased = Tokenizer.from_file(gemma_path, lowercase=False)
    assert cased("A Photo")[0].tolist() == row(ids_of(raw, ["A", "▁Photo"]))


def test_special_ids_are_gemmas(tok: Tokenizer) -> None:
    assert (tok.pad_id, tok.eos_id, tok.length, tok.vocab_size) == (PAD, EOS, LENGTH, 256_000)


def test_empty_string_is_eos_then_padding(tok: Tokenizer) -> None:
    assert tok("")[0].tolist() == [EOS] + [PAD] * (LENGTH - 1)


def test_pads_on_the_right_with_zeros(tok: Tokenizer) -> None:
    ids = tok("a photo of a cat")[0]
    assert ids[:6].all() and ids[5] == EOS
    assert not ids[6:].any()


def test_truncation_keeps_eos(tok: Tokenizer, raw: tokenizers.Tokenizer) -> None:
    ids = tok("a" + " a" * 99)[0].tolist()  # 100 pieces
    assert ids == [*ids_of(raw, ["a"] + ["▁a"] * (LENGTH - 2)), EOS]
    assert PAD not in ids


def test_exact_fit_63_pieces_then_eos(tok: Tokenizer, raw: tokenizers.Tokenizer) -> None:
    ids = tok("a" + " a" * 62)[0].tolist()  # 63 pieces
    assert ids == [*ids_of(raw, ["a"] + ["▁a"] * 62), EOS]


def test_one_piece_too_many_drops_the_last_piece(tok: Tokenizer, raw: tokenizers.Tokenizer) -> None:
    ids = tok("a" + " a" * 62 + " cat")[0].tolist()  # 64 pieces
    assert ids == [*ids_of(raw, ["a"] + ["▁a"] * 62), EOS]


def test_encode_neither_truncates_nor_pads(tok: Tokenizer, raw: tokenizers.Tokenizer) -> None:
    assert tok.encode("a" + " a" * 99) == [*ids_of(raw, ["a"] + ["▁a"] * 99), EOS]
    assert tok.encode("") == [EOS]


def test_batch_shape_and_dtype(tok: Tokenizer) -> None:
    batch = tok(["a cat", "", "一只猫的照片"])
    assert batch.shape == (3, LENGTH) and batch.dtype == np.int64
    assert tok("a cat").shape == (1, LENGTH)
    assert tok([]).shape == (0, LENGTH)


def test_batch_rows_match_single_texts(tok: Tokenizer) -> None:
    texts = [text for text, _ in GOLDEN.values()]
    assert np.array_equal(tok(texts), np.concatenate([tok(t) for t in texts]))


def test_no_bos_anywhere(tok: Tokenizer) -> None:
    texts = [text for text, _ in GOLDEN.values()] + ["", "a" + " a" * 99]
    assert BOS not in tok(texts)


def test_non_string_item_names_its_index(tok: Tokenizer) -> None:
    with pytest.raises(TokenizerError, match="index 1 is int"):
        tok(["a cat", 3])


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(TokenizerError, match=str(missing)):
        Tokenizer.from_file(missing)


def test_corrupt_file_names_the_path(tmp_path: Path) -> None:
    corrupt = tmp_path / "tokenizer.json"
    corrupt.write_text("{not json")
    with pytest.raises(TokenizerError, match=str(corrupt)):
        Tokenizer.from_file(corrupt)


def test_file_without_eos_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    tokenizers.Tokenizer(tokenizers.models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")).save(str(path))
    with pytest.raises(TokenizerError, match=f"{path}' has no token '<eos>'"):
        Tokenizer.from_file(path)


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SIGLIP2_SDK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert assets.cache_dir() == tmp_path / "xdg" / "siglip2-sdk"
    monkeypatch.setenv("SIGLIP2_SDK_CACHE", str(tmp_path / "mine"))
    assert assets.cache_dir() == tmp_path / "mine"


def test_cached_copy_with_right_hash_is_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gemma_path: Path
) -> None:
    monkeypatch.setenv("SIGLIP2_SDK_CACHE", str(tmp_path))
    assert assets.find_gemma_tokenizer() is None
    copy = tmp_path / assets.GEMMA_TOKENIZER.cache_path
    copy.parent.mkdir(parents=True)
    shutil.copyfile(gemma_path, copy)
    assert assets.find_gemma_tokenizer() == copy


def test_tampered_cached_copy_is_not_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gemma_path: Path
) -> None:
    monkeypatch.setenv("SIGLIP2_SDK_CACHE", str(tmp_path))
    copy = tmp_path / assets.GEMMA_TOKENIZER.cache_path
    copy.parent.mkdir(parents=True)
    data = bytearray(gemma_path.read_bytes())
    data[-2] ^= 0x01  # same size, one bit off
    copy.write_bytes(data)
    assert assets.find_gemma_tokenizer() is None
