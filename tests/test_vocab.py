"""Vocabulary pruning at export: kept ids from data or languages, a pruned text tower that takes the
original ids, and pruned bundles through the parity gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import models, normalizers, pre_tokenizers, trainers

from siglip2_sdk import Encoder
from siglip2_sdk.cli import main
from siglip2_sdk.core.checkpoint import load_checkpoint, save_checkpoint
from siglip2_sdk.core.config import preset
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.model import TextEncoder, build_model
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.core.vocabulary import ids_in_captions, kept_vocabulary, script_of
from siglip2_sdk.export.vocab import PrunedTextEncoder
from siglip2_sdk.export.writer import export_bundle, parity_data_from_shards

import fixtures
from fixtures import solid_image

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # Gemma's ids 0..3
BYTES = [f"<0x{b:02X}>" for b in range(256)]
CAPTIONS = [
    {"en": "a red bicycle in the park", "de": "ein rotes Fahrrad im Park", "zh": "红色的自行车在公园里"},
    {"en": "The cat sleeps on a green sofa", "de": "die Katze schläft auf dem Sofa", "zh": "猫在沙发上睡觉"},
    {"en": "2 dogs play with a ball!", "de": "2 Hunde spielen mit einem Ball!", "zh": "2只狗在玩球!"},
    {"en": "a blue car near the park", "ru": "синяя машина у парка"},
    {"en": "three red apples", "de": "drei rote Äpfel", "zh": "三个红苹果"},
    {"en": "a green bicycle", "ru": "зелёный велосипед"},
]
EN_TEXTS = ["a red bicycle", "the green park", "2 dogs play!", "a cat on a sofa"]


def write_bpe_tokenizer(path):
    """A Gemma-like tokenizer.json: BPE with byte fallback, specials at 0..3, the 256 byte tokens next,
    spaces as "▁", trained on the multilingual CAPTIONS (upper case kept, as in Gemma's vocabulary)."""
    sentences = [text for captions in CAPTIONS for text in captions.values()]
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=SPECIALS, show_progress=False)
    draft = RawTokenizer(models.BPE(unk_token="<unk>"))
    draft.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    draft.train_from_iterator(sentences * 4, trainer)
    trained = json.loads(draft.to_str())["model"]
    vocab = {token: i for i, token in enumerate(SPECIALS + BYTES)}
    for token in sorted(trained["vocab"], key=trained["vocab"].get):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(merge) for merge in trained["merges"]]
    tokenizer = RawTokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.add_special_tokens(SPECIALS)
    tokenizer.save(str(path))
    return path


def write_shard(path, captions=CAPTIONS):
    examples = (
        (solid_image((40 * i, 200 - 30 * i, 90)), {"captions": by_language})
        for i, by_language in enumerate(captions)
    )
    return fixtures.write_shard(path, examples)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    tokenizer = write_bpe_tokenizer(folder / "tokenizer.json")
    # Trained-scale weights: lowered towers are compared at float32 rounding (see with_small_weights).
    model = fixtures.with_small_weights(build_model(preset("tiny"), seed=3))
    return save_checkpoint(model, folder / "ckpt", tokenizer_file=tokenizer)


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_checkpoint(checkpoint).eval()


@pytest.fixture(scope="module")
def tokenizer(checkpoint, model):
    return Tokenizer.for_text_tower(checkpoint / "tokenizer.json", model.config.text)


@pytest.fixture(scope="module")
def vocab(checkpoint):
    return json.loads((checkpoint / "tokenizer.json").read_text())["model"]["vocab"]


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    return write_shard(tmp_path_factory.mktemp("shards") / "test-000000.tar")


def kept_for(model, checkpoint, **sources):
    return kept_vocabulary(checkpoint / "tokenizer.json", model.config.text, **sources)


def kept_tokens(kept, vocab) -> set[str]:
    ids = set(kept.ids.tolist())
    return {token for token, i in vocab.items() if i in ids}


def test_pruned_tower_matches_the_full_tower_on_kept_text(model, checkpoint, tokenizer):
    kept = kept_for(model, checkpoint, languages=["en"])
    ids = torch.from_numpy(tokenizer(EN_TEXTS))
    assert set(ids.unique().tolist()) <= set(kept.ids.tolist())
    with torch.no_grad():
        pruned, full = PrunedTextEncoder(model, kept).eval()(ids), TextEncoder(model).eval()(ids)
    torch.testing.assert_close(pruned, full, atol=1e-5, rtol=0)
    assert PrunedTextEncoder(model, kept).text_model.embeddings.token_embedding.num_embeddings == len(
        kept.ids
    )


def test_dropped_ids_read_as_unk(model, checkpoint, tokenizer):
    kept = kept_for(model, checkpoint, languages=["en"])
    ids = torch.from_numpy(tokenizer(["红色的 bicycle"]))
    dropped = ~torch.isin(ids, torch.from_numpy(kept.ids))
    assert dropped.any()
    as_unk = torch.where(dropped, torch.tensor(kept.unk_id), ids)
    with torch.no_grad():
        torch.testing.assert_close(
            PrunedTextEncoder(model, kept)(ids), TextEncoder(model)(as_unk), atol=1e-5, rtol=0
        )


def test_special_and_byte_tokens_are_always_kept(model, checkpoint, vocab):
    tokens = kept_tokens(kept_for(model, checkpoint, languages=["zh"]), vocab)
    assert set(SPECIALS) | set(BYTES) <= tokens


def test_kept_from_shards_are_the_ids_that_occur(model, checkpoint, tokenizer, shard):
    kept = set(kept_for(model, checkpoint, data=str(shard)).ids.tolist())
    every_caption = [text for captions in CAPTIONS for text in captions.values()]
    occurring = {int(i) for i in np.unique(tokenizer(every_caption))}
    assert kept == occurring | set(range(len(SPECIALS) + len(BYTES)))


def test_kept_from_a_text_file_are_the_ids_of_its_lines(model, checkpoint, tokenizer, tmp_path):
    lines = ["a red cat", "猫在沙发上"]
    (tmp_path / "captions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    kept = set(kept_for(model, checkpoint, data=str(tmp_path / "captions.txt")).ids.tolist())
    assert kept - set(range(len(SPECIALS) + len(BYTES))) == ids_in_captions(tokenizer, lines) - set(
        range(len(SPECIALS) + len(BYTES))
    )


def test_english_keeps_latin_and_drops_han(model, checkpoint, vocab):
    tokens = kept_tokens(kept_for(model, checkpoint, languages=["en"]), vocab)
    assert {"▁red", "▁bicycle", "▁park"} <= tokens
    assert not any("猫" in token or "红" in token for token in tokens)
    assert not any(any(script_of(char) == "Cyrillic" for char in token) for token in tokens)


def test_chinese_keeps_han_and_common_characters(model, checkpoint, vocab):
    tokens = kept_tokens(kept_for(model, checkpoint, languages=["zh"]), vocab)
    assert {"猫", "红"} <= tokens and "!" in tokens and "2" in tokens
    assert "▁red" not in tokens


def test_tokens_with_upper_case_are_dropped_since_text_is_lowercased(model, checkpoint, vocab):
    assert any(token != token.lower() and token not in BYTES for token in vocab)  # Gemma has them too
    tokens = kept_tokens(kept_for(model, checkpoint, languages=["en", "de"]), vocab)
    assert all(token == token.lower() for token in tokens - set(BYTES))


def test_languages_and_data_combine_as_a_union(model, checkpoint, shard):
    both = kept_for(model, checkpoint, data=str(shard), languages=["ru"])
    alone = [
        set(kept_for(model, checkpoint, **s).ids.tolist())
        for s in ({"data": str(shard)}, {"languages": ["ru"]})
    ]
    assert set(both.ids.tolist()) == alone[0] | alone[1]
    assert both.suffix == "-vocab-ru-test-000000" and "languages ru" in both.source


def test_an_unknown_language_names_the_known_ones(model, checkpoint):
    with pytest.raises(Siglip2Error, match=r"unknown language 'xx'.*known: .*\ben\b.*\bzh\b"):
        kept_for(model, checkpoint, languages=["en", "xx"])


def test_every_demo_corpus_language_is_known():
    from siglip2_sdk.core.vocabulary import scripts_of_languages

    demo = (
        "ach af ak am an ar ast be bg ca ca-valencia cs cy da de el en en-AU en-GB eo es eu fa ff fi fr ga "
    )
    demo += "gd gl gu he hi hr hu hy id is it iu ja ka kab km ko ku lt lv mk ml ms nb nl nn nso oc pl pt "
    demo += "pt-BR ro ru shs sk sl son sq sr sr-Latn sv sw ta th tr uk vec vi zh zh-CN zh-TW zu"
    assert len(demo.split()) == 79
    assert scripts_of_languages(demo.split()) >= {"Latin", "Han", "Arabic", "Cyrillic", "Hangul"}


def test_parity_captions_come_from_the_kept_languages(shard):
    data = parity_data_from_shards(str(shard), 10, languages=["de", "zh"])
    # The languages take turns; examples with neither (3 and 5) are skipped.
    assert data.texts == [CAPTIONS[0]["de"], CAPTIONS[1]["zh"], CAPTIONS[2]["de"], CAPTIONS[4]["zh"]]
    with pytest.raises(Siglip2Error, match="fewer than 2 captioned examples in ko"):
        parity_data_from_shards(str(shard), 10, languages=["ko"])


def test_pruned_onnx_bundle_passes_the_gate_with_a_smaller_text_file(model, checkpoint, shard, tmp_path):
    from siglip2_sdk.export import onnx

    kept = kept_for(model, checkpoint, languages=["en"])
    parity = parity_data_from_shards(str(shard), 10, languages=["en"])
    result = export_bundle(model, "tiny", "onnx", "fp32", tmp_path, parity, vocabulary=kept)
    assert result.manifest.status == "ok" and result.manifest.parity["text_cosine_min"] > 0.99999
    assert result.folder.name == "tiny-onnxruntime-fp32-vocab-en"
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["vocabulary"] == {"kept": len(kept.ids), "of": 1000, "from": "languages en", "unk_id": 3}
    full = tmp_path / "full-text.onnx"
    onnx._export(TextEncoder(model).eval(), torch.zeros(2, 16, dtype=torch.int64), "input_ids", "t", full)
    saved = (1000 - len(kept.ids)) * model.config.text.width * 4
    # The dropped rows, less the remap table (one int32 per original id) and graph overhead.
    assert full.stat().st_size - (result.folder / "text.onnx").stat().st_size > 0.8 * saved
    encoder = Encoder.load(result.folder)
    np.testing.assert_allclose(
        encoder.embed_texts(EN_TEXTS), Encoder.load(checkpoint).embed_texts(EN_TEXTS), atol=1e-5
    )


def test_cli_refuses_an_unknown_language_in_one_line(checkpoint, shard, tmp_path, capsys):
    args = ["export", str(checkpoint), "--to", "onnx", "--out", str(tmp_path), "--parity-data", str(shard)]
    assert main([*args, "--languages", "en,klingon"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown language 'klingon'" in err and len(err.splitlines()) == 1


def test_cli_refuses_missing_vocabulary_data_in_one_line(checkpoint, shard, tmp_path, capsys):
    args = ["export", str(checkpoint), "--to", "onnx", "--out", str(tmp_path), "--parity-data", str(shard)]
    assert main([*args, "--vocab-from", str(tmp_path / "nothing-*.tar")]) == 2
    assert main([*args, "--vocab-from", str(tmp_path / "captions.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no .tar shards match" in err[0] and "does not exist" in err[1]
    assert not list(tmp_path.iterdir())  # failed before anything was exported


@pytest.mark.slow
def test_pruned_tower_lowers_to_executorch_and_litert(model, checkpoint, tokenizer, tmp_path):
    import litert_torch
    from executorch.runtime import Runtime

    from siglip2_sdk.export.executorch import _lower
    from siglip2_sdk.export.lowering import INT8_LINEARS

    pruned = PrunedTextEncoder(model, kept_for(model, checkpoint, languages=["en"])).eval()
    ids = torch.from_numpy(tokenizer(EN_TEXTS))
    with torch.no_grad():
        expected = pruned(ids).numpy()
        for int8_linears, tolerance in (((), 1e-5), (INT8_LINEARS["text"], 0.02)):  # fp32, then int8
            _lower(pruned, ids, tmp_path / "text.pte", int8_linears=int8_linears)
            method = Runtime.get().load_program(str(tmp_path / "text.pte")).load_method("forward")
            np.testing.assert_allclose(method.execute([ids])[0].numpy(), expected, atol=tolerance)
        # TFLite takes int32 token ids; the remap gather accepts either.
        edge = litert_torch.convert(pruned, (ids.int(),))
        np.testing.assert_allclose(np.asarray(edge(ids.int())), expected, atol=1e-5)
