"""The WebDataset training loader: shapes, caption-language policies, splitting across ranks."""

from __future__ import annotations

import random

import pytest
import torch

from siglip2_sdk.core.preprocess import ImagePreprocessing
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.distill.data import (
    DecodedImages,
    KeptShards,
    batches,
    caption_policy,
    choose_captions,
    super_batches,
    training_pairs,
)

from fixtures import build_fake_corpus, write_tiny_tokenizer

CAPTIONS = {"en": "a red circle", "de": "ein roter kreis", "fr": "un cercle rouge"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader")
    build_fake_corpus(out)
    return out / "corpus"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return Tokenizer.from_file(write_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "t.json"), length=16)


def load(corpus, tokenizer, **kwargs):
    spec = ImagePreprocessing(size=(32, 32))
    return list(
        training_pairs(str(corpus / "train-*.tar"), image_preprocessing=spec, tokenizer=tokenizer, **kwargs)
    )


def test_policies_choose_the_right_captions():
    rng = random.Random(0)
    assert choose_captions(CAPTIONS, "en", rng) == [("en", "a red circle")]
    assert [lang for lang, _ in choose_captions(CAPTIONS, "all", rng)] == ["de", "en", "fr"]
    assert choose_captions(CAPTIONS, ("fr", "de"), rng) == [
        ("fr", "un cercle rouge"),
        ("de", "ein roter kreis"),
    ]
    ((language, caption),) = choose_captions(CAPTIONS, "sample", rng)
    assert CAPTIONS[language] == caption
    assert choose_captions({"de": "nur deutsch"}, "en", rng) == []
    assert caption_policy("en, de") == ("en", "de")


def test_english_half_policy_gives_english_half_the_time_and_keeps_every_language():
    rng = random.Random(0)
    drawn = [choose_captions(CAPTIONS, "en+sample", rng)[0][0] for _ in range(2000)]
    assert 0.45 < drawn.count("en") / len(drawn) < 0.55
    assert 0.2 < drawn.count("de") / len(drawn) < 0.3 and 0.2 < drawn.count("fr") / len(drawn) < 0.3
    assert choose_captions({"en": "only english"}, "en+sample", rng) == [("en", "only english")]
    assert choose_captions({"de": "nur deutsch"}, "en+sample", rng) == [("de", "nur deutsch")]
    assert choose_captions({}, "en+sample", rng) == []
    assert caption_policy("en+sample") == "en+sample"


def test_labels_become_captions_at_their_share(corpus, tokenizer):
    """--label-captions: that share of examples is captioned by one of its labels' names (the fake
    corpus labels every image "warm" or "cool"), the rest by the caption policy as before."""
    from siglip2_sdk.core.shards import label_captions

    assert label_captions({"category": "signs_and_symbols", "empty": "", "n": 3}) == {
        "label:category": "signs and symbols"
    }
    plain = [(key, language) for *_, key, language in load(corpus, tokenizer, policy="en", shuffle=0)]
    unlabelled = load(corpus, tokenizer, policy="en", shuffle=0, label_share=0.0)
    assert [(key, language) for *_, key, language in unlabelled] == plain
    labelled = load(corpus, tokenizer, policy="en", shuffle=0, label_share=1.0)
    assert {language for *_, language in labelled} == {"label:kind"}
    assert {tuple(ids.tolist()) for _, ids, *_ in labelled} == {
        tuple(tokenizer(word)[0].tolist()) for word in ("warm", "cool")
    }
    half = [language for *_, language in load(corpus, tokenizer, policy="en", shuffle=0, label_share=0.5)]
    assert 0.25 < half.count("label:kind") / len(half) < 0.75 and "en" in half


def test_pairs_are_preprocessed_and_tokenized(corpus, tokenizer):
    pairs = load(corpus, tokenizer, policy="en", shuffle=0)
    pixels, ids, key, language = pairs[0]
    assert pixels.shape == (3, 32, 32) and pixels.min() >= -1.0 and pixels.max() <= 1.0
    assert ids.shape == (16,) and ids.dtype.is_floating_point is False
    assert isinstance(key, str) and language == "en"


def test_all_languages_policy_yields_one_pair_per_caption(corpus, tokenizer):
    english = load(corpus, tokenizer, policy="en", shuffle=0)
    everything = load(corpus, tokenizer, policy="all", shuffle=0)
    assert {lang for *_, lang in everything} == {"en", "de"}
    assert len(everything) > len(english)


def test_same_seed_same_order_and_other_seed_other_order(corpus, tokenizer):
    first = [k for _, _, k, _ in load(corpus, tokenizer, seed=1)]
    assert first == [k for _, _, k, _ in load(corpus, tokenizer, seed=1)]
    assert first != [k for _, _, k, _ in load(corpus, tokenizer, seed=2)]


def test_ranks_read_disjoint_shards_that_cover_the_data(corpus, tokenizer, monkeypatch):
    # Small shards so that two ranks each get some.
    spec = ImagePreprocessing(size=(32, 32))
    shards = sorted(str(p) for p in corpus.glob("*.tar"))
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        keys = [
            k
            for _, _, k, _ in training_pairs(shards, image_preprocessing=spec, tokenizer=tokenizer, shuffle=0)
        ]
        seen.append(set(keys))
    assert seen[0].isdisjoint(seen[1])
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    everything = {
        k for _, _, k, _ in training_pairs(shards, image_preprocessing=spec, tokenizer=tokenizer, shuffle=0)
    }
    assert seen[0] | seen[1] == everything


def test_batches(corpus, tokenizer):
    spec = ImagePreprocessing(size=(32, 32))
    dataset = training_pairs(
        str(corpus / "train-*.tar"), image_preprocessing=spec, tokenizer=tokenizer, shuffle=0
    )
    pixels, ids, keys, languages = next(iter(batches(dataset, batch_size=8)))
    assert pixels.shape == (8, 3, 32, 32) and ids.shape == (8, 16) and len(keys) == len(languages) == 8


def stream(corpus, tokenizer, **kwargs):
    spec = ImagePreprocessing(size=(32, 32))
    return list(
        super_batches(str(corpus / "*.tar"), size=8, image_preprocessing=spec, tokenizer=tokenizer, **kwargs)
    )


def test_two_ranks_hold_exactly_the_slices_of_the_one_process_stream(corpus, tokenizer):
    single = stream(corpus, tokenizer, seed=3)
    ranks = [stream(corpus, tokenizer, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) > 2
    for whole, first, second in zip(single, *ranks, strict=True):
        assert whole.keys == first.keys == second.keys
        assert torch.equal(torch.cat([first.pixels, second.pixels]), whole.pixels)
        assert torch.equal(torch.cat([first.input_ids, second.input_ids]), whole.input_ids)


def test_skip_resumes_the_same_stream(corpus, tokenizer):
    full = stream(corpus, tokenizer, seed=4)
    resumed = stream(corpus, tokenizer, seed=4, skip=2)
    assert [b.keys for b in resumed] == [b.keys for b in full[2:]]
    assert torch.equal(resumed[0].pixels, full[2].pixels)


def test_decoded_images_give_the_same_pixels_epoch_after_epoch(corpus, tokenizer):
    spec = ImagePreprocessing(size=(32, 32))
    decoded = DecodedImages(spec)
    epochs = [stream(corpus, tokenizer, seed=5 + epoch, decoded=decoded) for epoch in range(2)]
    assert decoded.held == 32 * 32 * 3 * len({key for e in epochs for batch in e for key in batch.keys})
    for epoch in range(2):  # the second epoch comes from the cache, in another order
        plain = stream(corpus, tokenizer, seed=5 + epoch)
        for cached, fresh in zip(epochs[epoch], plain, strict=True):
            assert cached.keys == fresh.keys
            assert torch.equal(cached.pixels, fresh.pixels)


def test_decoded_images_stop_keeping_at_their_budget(corpus, tokenizer):
    decoded = DecodedImages(ImagePreprocessing(size=(32, 32)), budget_mb=5 * 32 * 32 * 3 / 2**20)
    stream(corpus, tokenizer, seed=6, decoded=decoded)
    assert decoded.held == 5 * 32 * 32 * 3


def test_kept_shards_give_the_same_batches_epoch_after_epoch(corpus, tokenizer):
    kept = KeptShards(budget_mb=64)
    epochs = [stream(corpus, tokenizer, seed=7 + epoch, kept=kept) for epoch in range(3)]
    assert kept.held > 0
    for epoch, batches_from_memory in enumerate(epochs):  # epochs 2 and 3 never open a tar file
        plain = stream(corpus, tokenizer, seed=7 + epoch)
        assert len(batches_from_memory) == len(plain) > 2
        for kept_batch, fresh in zip(batches_from_memory, plain, strict=True):
            assert (kept_batch.keys, kept_batch.languages) == (fresh.keys, fresh.languages)
            assert torch.equal(kept_batch.input_ids, fresh.input_ids)
            assert torch.equal(kept_batch.pixels, fresh.pixels)


def test_kept_shards_keep_whole_shards_within_their_budget(corpus, tokenizer):
    everything = KeptShards(budget_mb=64)
    stream(corpus, tokenizer, seed=8, kept=everything)
    half = KeptShards(budget_mb=everything.held / 2 / 2**20)
    stream(corpus, tokenizer, seed=8, kept=half)
    assert 0 < half.held <= everything.held / 2  # some of the three shards, never part of one
    assert [b.keys for b in stream(corpus, tokenizer, seed=9, kept=half)] == [
        b.keys for b in stream(corpus, tokenizer, seed=9)
    ]


def test_trainer_and_teacher_cache_read_the_same_caption(tmp_path, tokenizer):
    """img2dataset writes a `.txt` and a JSON `caption`; when they differ, the teacher (which reads
    shards with core.shards) and the student's loader must still pair the image with one string."""
    import io
    import json
    import tarfile

    from siglip2_sdk.core.shards import iter_shard
    from siglip2_sdk.distill.data import _caption_items, _raw_samples

    from fixtures import solid_image

    shard = tmp_path / "00000.tar"
    with tarfile.open(shard, "w") as tar:
        jpeg = io.BytesIO()
        solid_image((200, 0, 0)).save(jpeg, format="JPEG")
        files = {
            "000000.jpg": jpeg.getvalue(),
            "000000.txt": b"a red square",
            "000000.json": json.dumps({"caption": "a photo of a red square", "url": "x"}).encode(),
        }
        for name, payload in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
    teacher_sees = next(iter_shard(shard)).captions
    samples = iter(_raw_samples(str(shard), shuffle=0, seed=0, split_by_rank=False))
    student_sees = {item.language: item.caption for item in _caption_items(samples, "all", seed=0)}
    assert student_sees == teacher_sees == {"en": "a red square"}


def test_model_input_on_the_device_matches_the_numpy_preprocessing(corpus, tokenizer):
    """Super-batches carry uint8 pixels; normalizing them where the model runs gives exactly the
    values core.preprocess gives (the same operations in the same order)."""
    from siglip2_sdk.core.preprocess import normalize
    from siglip2_sdk.distill.data import model_input

    spec = ImagePreprocessing(size=(32, 32))
    shards = str(corpus / "*.tar")
    batch = next(iter(super_batches(shards, size=8, image_preprocessing=spec, tokenizer=tokenizer)))
    assert batch.pixels.dtype == torch.uint8 and batch.pixels.shape == (8, 32, 32, 3)
    expected = torch.from_numpy(normalize(batch.pixels.numpy(), spec))
    assert torch.equal(model_input(batch.pixels, spec), expected)
