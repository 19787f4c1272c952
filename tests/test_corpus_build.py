"""The corpus builder on fake sources: shards, splits, dedupe, data card, idempotent rebuilds."""

from __future__ import annotations

import json

import pytest

from siglip2_sdk.core.shards import iter_examples, split_shards
from siglip2_sdk.data import build
from siglip2_sdk.data.debian import PackageRoot, SourceUnavailable
from siglip2_sdk.data.source import Pair, Source

from fixtures import SOURCES, solid_image


@pytest.fixture
def fake_packages(monkeypatch, tmp_path):
    def locate(package):
        if package == "fake-missing":
            raise SourceUnavailable("cannot fetch Debian package 'fake-missing': no such package")
        return PackageRoot(package, "1.0-1", tmp_path)

    monkeypatch.setattr(build, "locate_package", locate)


def test_build_writes_splits_without_overlap_or_duplicates(fake_packages, tmp_path):
    out = tmp_path / "corpus"
    report = build.build_corpus(out, SOURCES)
    assert report.unavailable == {"gone": "cannot fetch Debian package 'fake-missing': no such package"}
    keys = {}
    for split in ("train", "val", "test"):
        keys[split] = [e.key for e in iter_examples(split_shards(out, split))]
    all_keys = [k for ks in keys.values() for k in ks]
    assert len(all_keys) == len(set(all_keys)) == 61  # 60 shapes + the big one; the copy is dropped
    assert report.stats["sources"]["shapes"]["duplicates_dropped"] == 1
    assert all(keys.values()), "each split gets some of 61 examples"


def test_images_are_rgb_on_white_and_bounded(fake_packages, tmp_path):
    out = tmp_path / "corpus"
    build.build_corpus(out, SOURCES)
    examples = [e for s in ("train", "val", "test") for e in iter_examples(split_shards(out, s))]
    big = next(e for e in examples if e.meta["source_id"] == "big")
    from siglip2_sdk.core.preprocess import load_image

    image = load_image(big.image)
    assert image.size == (build.MAX_SIDE, build.MAX_SIDE // 2)
    assert image.getpixel((200, 64)) == (255, 255, 255)  # transparent became white
    assert big.meta["license"] == "MIT" and big.captions == {"en": "a blue square on white"}


def test_data_card_is_generated_with_licenses_and_languages(fake_packages, tmp_path):
    out = tmp_path / "corpus"
    build.build_corpus(out, SOURCES)
    card = (out / "README.md").read_text()
    assert "CC0-1.0" in card and "MIT" in card and "unavailable: cannot fetch" in card
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pairs"] == 61
    assert set(stats["languages"]) == {"en", "de"}
    assert stats["sources"]["shapes"]["version"] == "1.0-1"
    assert stats["label_sets"] == {"shapes/kind": 2}


def test_second_build_does_no_work(fake_packages, tmp_path):
    out = tmp_path / "corpus"
    build.build_corpus(out, SOURCES)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    again = build.build_corpus(out, SOURCES)
    assert not again.assembled and again.rendered == [] and sorted(again.cached) == ["big", "shapes"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == mtimes


def test_split_is_a_function_of_the_pixels(fake_packages, tmp_path):
    build.build_corpus(tmp_path / "a", SOURCES)
    build.build_corpus(tmp_path / "b", list(reversed(SOURCES)))
    for split in ("train", "val", "test"):
        a = sorted(e.key for e in iter_examples(split_shards(tmp_path / "a", split)))
        b = sorted(e.key for e in iter_examples(split_shards(tmp_path / "b", split)))
        assert a == b
    digest = [json.loads((tmp_path / name / "stats.json").read_text())["pairs_digest"] for name in "ab"]
    assert digest[0] == digest[1]


def test_pairs_digest_tells_corpora_apart_by_any_caption():
    from siglip2_sdk.data.build import Record
    from siglip2_sdk.data.card import pairs_digest

    def corpus(caption: str) -> dict:
        return {"train": [Record("k1", b"", {"captions": {"en": caption}})], "test": []}

    assert pairs_digest(corpus("a red apple")) == pairs_digest(corpus("a red apple"))
    assert pairs_digest(corpus("a red apple")) != pairs_digest(corpus("a green apple"))


def test_repeated_captions_are_capped_per_source(fake_packages, tmp_path):
    def stars(root):
        for i in range(10):
            yield Pair(f"star-{i}", solid_image((i * 20, 0, 0)), {"en": "star: stars, shapes"})

    report = build.build_corpus(
        tmp_path / "corpus", [Source("stars", "fake-stars", "CC0-1.0", stars, max_per_caption=3)]
    )
    assert report.stats["pairs"] == 3
    assert report.stats["sources"]["stars"]["caption_repeats_dropped"] == 7


def test_a_build_killed_while_swapping_shards_is_redone(fake_packages, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    build.build_corpus(out, SOURCES)
    # A change of assembly (here: a smaller shard size) reassembles; kill it mid-swap.
    monkeypatch.setattr(build, "SHARD_SIZE", 10)
    real_replace = type(out).replace
    calls = []

    def dies_on_third_replace(self, target):
        calls.append(self)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_replace(self, target)

    monkeypatch.setattr(type(out), "replace", dies_on_third_replace)
    with pytest.raises(KeyboardInterrupt):
        build.build_corpus(out, SOURCES)
    monkeypatch.setattr(type(out), "replace", real_replace)
    assert not (out / "stats.json").exists()
    again = build.build_corpus(out, SOURCES)
    assert again.assembled and again.stats["pairs"] == 61
