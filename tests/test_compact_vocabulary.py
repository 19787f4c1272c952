"""Training on a compact vocabulary (`--vocab-from` / `--languages` for pretrain and distill): only
the kept rows of the token table train, the checkpoint is a full-vocabulary one transformers loads
with the same embeddings, and what is kept travels to the student and into bundles (resuming:
test_train.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train import config
from transformers import SiglipModel as HFSiglipModel

from siglip2_sdk.cli import main
from siglip2_sdk.core.checkpoint import load_checkpoint
from siglip2_sdk.core.errors import CheckpointError
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.core.vocabulary import TABLE, VOCABULARY_FILE, with_kept_rows
from siglip2_sdk.distill.train import train
from siglip2_sdk.export.writer import export_bundle, parity_data_from_shards

from fixtures import WORDS, build_fake_corpus, write_tiny_tokenizer


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The fake corpus and tiny tokenizer, no teacher: these runs are plain sigmoid training."""
    root = tmp_path_factory.mktemp("compact")
    build_fake_corpus(root)
    return root, write_tiny_tokenizer(root / "tokenizer.json"), None


def plain(workspace, out, **overrides):
    settings = dict(select="none", teacher_cache=None, steps=4, weight_decay=0.1, lr=1e-2)
    return config(workspace, out, **{**settings, **overrides})


def corpus(workspace) -> str:
    return str(workspace[0] / "corpus" / "*.tar")


def table(folder) -> torch.Tensor:
    return load_checkpoint(folder).state_dict()[f"text_model.{TABLE}"]


def test_a_compact_run_trains_the_kept_rows_as_a_full_run_does(workspace, tmp_path):
    """Dropped ids have no gradient, so the kept rows and every other weight train as in a run over the
    full table (weight decay aside, which only the full run spends on rows no caption reads)."""
    full = load_checkpoint(train(plain(workspace, tmp_path / "full"), log=lambda _: None)).state_dict()
    compact_dir = train(
        plain(workspace, tmp_path / "compact", vocab_from=corpus(workspace)), log=lambda _: None
    )
    compact = load_checkpoint(compact_dir)
    kept = torch.from_numpy(compact.vocabulary.ids)
    assert 4 < len(kept) < len(WORDS)  # the corpus' words and the specials, not all of the 1,000 ids
    weights = compact.state_dict()
    for name, value in weights.items():
        expected = full[name][kept] if name == f"text_model.{TABLE}" else full[name]
        got = value[kept] if name == f"text_model.{TABLE}" else value
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=name)
    # Every dropped row of the written table is a copy of <unk>'s.
    written = weights[f"text_model.{TABLE}"]
    dropped = np.setdiff1d(np.arange(len(written)), compact.vocabulary.ids)
    assert torch.equal(written[dropped], written[compact.vocabulary.unk_id].expand(len(dropped), -1))


def test_transformers_loads_the_checkpoint_with_the_same_embeddings(workspace, tmp_path):
    final = train(plain(workspace, tmp_path / "run", vocab_from=corpus(workspace)), log=lambda _: None)
    ours = load_checkpoint(final)
    listed = json.loads((final / VOCABULARY_FILE).read_text())
    assert listed["ids"] == ours.vocabulary.ids.tolist() and listed["of"] == 1000
    ids = torch.randint(0, 1000, (3, 16))  # mostly ids outside the kept set
    compact = with_kept_rows(ours.text_model, ours.vocabulary)
    reloaded = HFSiglipModel.from_pretrained(final).eval()
    with torch.no_grad():
        hf = reloaded.get_text_features(input_ids=ids)
        hf = getattr(hf, "pooler_output", hf)
        torch.testing.assert_close(hf, ours.text_model(ids))
        torch.testing.assert_close(compact(ids), ours.text_model(ids))
    assert len(compact.embeddings.token_embedding.weight) == len(ours.vocabulary.ids)


def test_info_says_what_a_checkpoint_was_trained_on(workspace, tmp_path, capsys):
    final = train(plain(workspace, tmp_path / "run", languages="en", steps=1), log=lambda _: None)
    kept = len(load_checkpoint(final).vocabulary.ids)
    assert main(["info", str(final)]) == 0
    assert f"{kept} of 1,000 token ids (languages en)" in capsys.readouterr().out


def test_a_student_started_from_a_compact_checkpoint_keeps_its_vocabulary(workspace, tmp_path):
    teacher = train(plain(workspace, tmp_path / "teacher", vocab_from=corpus(workspace)), log=lambda _: None)
    student = train(plain(workspace, tmp_path / "student", init=str(teacher), steps=2), log=lambda _: None)
    a, b = load_checkpoint(teacher), load_checkpoint(student)
    assert np.array_equal(a.vocabulary.ids, b.vocabulary.ids)
    dropped = np.setdiff1d(np.arange(1000), b.vocabulary.ids)
    unk = table(student)[b.vocabulary.unk_id]
    assert torch.equal(table(student)[dropped], unk.expand(len(dropped), -1))


def test_a_bundle_of_a_compact_checkpoint_is_pruned_to_its_vocabulary(workspace, tmp_path):
    final = train(plain(workspace, tmp_path / "run", vocab_from=corpus(workspace)), log=lambda _: None)
    model = load_checkpoint(final)
    parity = parity_data_from_shards(corpus(workspace), 16)
    result = export_bundle(model, "compact", "onnx", "fp32", tmp_path / "bundles", parity)
    manifest = result.manifest
    assert result.folder.name == "compact-onnxruntime-fp32"  # the model's own vocabulary: no suffix
    assert manifest.vocabulary["kept"] == len(model.vocabulary.ids) and manifest.vocabulary["of"] == 1000
    assert manifest.status == "ok" and manifest.parity["text_cosine_min"] > 0.99999
    ids = torch.randint(0, 1000, (4, 16), dtype=torch.int64).numpy()  # dropped ids too
    from siglip2_sdk import Encoder

    bundle = Encoder.load(result.folder)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.text_model(torch.from_numpy(ids)), dim=-1).numpy()
    np.testing.assert_allclose(bundle.backend.embed_tokens(ids), expected, atol=1e-5)


def test_a_damaged_vocabulary_file_is_a_checkpoint_error(workspace, tmp_path):
    final = train(plain(workspace, tmp_path / "run", languages="en", steps=1), log=lambda _: None)
    entry = json.loads((final / VOCABULARY_FILE).read_text())
    (final / VOCABULARY_FILE).write_text(json.dumps({**entry, "ids": [5, 3]}))
    with pytest.raises(CheckpointError, match="sorted"):
        load_checkpoint(final)


def test_pretrain_refuses_an_unknown_language_in_one_line(workspace, tmp_path, capsys):
    args = ["pretrain", "--data", corpus(workspace), "--out", str(tmp_path / "run"), "--student", "tiny"]
    assert main([*args, "--languages", "en,klingon"]) == 2
    assert "unknown language 'klingon'" in capsys.readouterr().err
    assert main([*args, "--vocab-from", str(tmp_path / "none-*.tar")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_tokenizer_gives_original_ids(workspace):
    """The kept set is a subset of the tokenizer's own ids: nothing is renumbered."""
    tokenizer = Tokenizer.from_file(workspace[1], length=16)
    assert tokenizer(["a red circle"])[0][:3].tolist() == [WORDS.index(w) for w in ("a", "red", "circle")]
