"""Distillation on tiny models: the loop runs, resumes bit-for-bit, and the teacher cache survives a kill."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import SiglipModel as HFSiglipModel

from siglip2_sdk.core.checkpoint import load_checkpoint, save_checkpoint
from siglip2_sdk.core.config import preset
from siglip2_sdk.core.digest import weights_digest
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.model import build_model
from siglip2_sdk.core.preprocess import ImagePreprocessing
from siglip2_sdk.core.shards import expand_shards
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.distill import teacher_cache
from siglip2_sdk.distill.config import TrainConfig
from siglip2_sdk.distill.losses import sigmoid_loss
from siglip2_sdk.distill.processes import Processes
from siglip2_sdk.distill.train import keep_token_gradient, train

from fixtures import build_fake_corpus, write_tiny_tokenizer


def torchrun_command(port: int) -> list[str]:
    """Two CPU processes on this machine; each test its own port, so runs never meet."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
    ]


RUN = dict(capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


class Interrupt(Exception):
    pass


def stop_after_four(steps, *_):
    """A progress callback that interrupts training before its fifth step, as a kill would."""
    for step in steps:
        if step == 4:
            raise Interrupt
        yield step


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    build_fake_corpus(root)
    tokenizer_file = write_tiny_tokenizer(root / "tokenizer.json")
    teacher = build_model(preset("tiny"), seed=7)
    teacher.image_preprocessing = ImagePreprocessing(size=(32, 32))
    teacher_dir = save_checkpoint(teacher, root / "teacher", tokenizer_file=tokenizer_file)
    shards = expand_shards(root / "corpus")
    cache = root / "cache"
    info = teacher_cache.embed_dataset(
        load_checkpoint(teacher_dir),
        Tokenizer.from_file(tokenizer_file, length=16),
        ImagePreprocessing(size=(32, 32)),
        shards,
        cache,
        teacher_id="tiny-teacher",
        teacher_digest=weights_digest(teacher_dir),
    )
    teacher_cache.finish(cache, info)
    return root, tokenizer_file, cache


def config(workspace, out, **overrides) -> TrainConfig:
    root, tokenizer_file, cache = workspace
    fields = dict(
        data=str(root / "corpus" / "*.tar"),
        out=str(out),
        tokenizer=str(tokenizer_file),
        student="tiny",
        teacher_cache=str(cache),
        steps=4,
        batch_size=8,
        filter_ratio=0.5,
        select="acid",
        chunks=2,
        warmup_steps=1,
        shuffle=50,
        threads=1,
    )
    return TrainConfig(**{**fields, **overrides})


def test_kept_token_gradient_trains_like_the_dense_backward():
    """One CPU process adds the token table's gradient into one buffer kept for the run instead of a
    fresh vocab-sized tensor per step; the weights must come out as the dense backward's."""
    one_cpu = Processes(rank=0, world_size=1, device=torch.device("cpu"))
    dense, kept = build_model(preset("tiny"), seed=0), build_model(preset("tiny"), seed=0)
    assert keep_token_gradient(kept, one_cpu)
    table = kept.text_model.embeddings.token_embedding.weight
    buffer = table.grad
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (dense, kept)]
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        pixels = torch.randn(4, 3, 32, 32, generator=generator)
        input_ids = torch.randint(0, 1000, (4, 16), generator=generator)
        for model, optimizer in zip((dense, kept), optimizers, strict=True):
            image, text = model.encode_image(pixels), model.encode_text(input_ids)
            sigmoid_loss(image, text, model.logit_scale.exp(), model.logit_bias).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=model is dense)
    assert table.grad is buffer and not table.grad.is_sparse
    initial = build_model(preset("tiny"), seed=0).state_dict()
    trained, same = dense.state_dict(), kept.state_dict()
    assert max((trained[n] - initial[n]).abs().max().item() for n in trained) > 1e-3
    worst = max((trained[n] - same[n]).abs().max().item() for n in trained)
    assert worst < 1e-6, f"weights differ by up to {worst}"
    # Under DDP the reducer expects the dense gradient it was built for.
    two_cpus = Processes(rank=0, world_size=2, device=torch.device("cpu"))
    assert not keep_token_gradient(build_model(preset("tiny"), seed=0), two_cpus)


def test_distill_writes_a_checkpoint_transformers_loads(workspace, tmp_path):
    final = train(config(workspace, tmp_path / "run", kd_weight=0.5), log=lambda _: None)
    reloaded = HFSiglipModel.from_pretrained(final)
    ours = load_checkpoint(final)
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    ids = torch.randint(0, 12, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(input_ids=ids, pixel_values=pixels).image_embeds, ours.encode_image(pixels)
        )
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["kd_weight"] == 0.5


@pytest.mark.parametrize("vocabulary", [{}, {"languages": "en"}], ids=["full", "compact"])
def test_resume_after_an_interrupt_reproduces_the_uninterrupted_run(workspace, tmp_path, vocabulary):
    straight = train(config(workspace, tmp_path / "straight", steps=6, **vocabulary), log=lambda _: None)
    interrupted = config(workspace, tmp_path / "resumed", steps=6, save_every=2, **vocabulary)
    with pytest.raises(Interrupt):
        train(interrupted, progress=stop_after_four, log=lambda _: None)
    resumed = train(interrupted, resume=True, log=lambda _: None)
    a, b = load_checkpoint(straight).state_dict(), load_checkpoint(resumed).state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_labels_as_captions_train_with_the_teachers_embeddings_of_them(workspace, tmp_path):
    """--label-captions trains some examples on their labels' names; ACID and KD then need the
    teacher's embedding of that text, which the cache holds beside every language's."""
    from siglip2_sdk.distill.evaluation import ModelEmbedder

    root, tokenizer_file, cache = workspace
    teacher = teacher_cache.TeacherCache(cache)
    keys = sorted(key for key, language in teacher._text_row if language == "label:kind")
    _, cached = teacher.lookup(keys, ["label:kind"] * len(keys))
    # The fake corpus labels its shapes "warm" or "cool": each row is the teacher's embedding of one.
    tokenizer = Tokenizer.from_file(tokenizer_file, length=16)
    embedder = ModelEmbedder(load_checkpoint(root / "teacher"), tokenizer)
    names = torch.from_numpy(embedder.embed_texts(["warm", "cool"]))
    assert len(keys) >= 50
    assert torch.all((cached @ names.T).max(dim=1).values > 0.999)
    final = train(config(workspace, tmp_path / "run", label_captions=0.5, kd_weight=0.5), log=lambda _: None)
    assert (final / "model.safetensors").is_file()


def test_labels_as_captions_on_shards_without_labels_are_reported(workspace, tmp_path):
    for shard, hue in ((0, 0), (1, 200)):
        write_img2dataset_shard(tmp_path / f"{shard:05d}.tar", 12, hue)
    said = []
    settings = dict(select="none", teacher_cache=None, batch_size=20, steps=1, label_captions=0.5)
    train(config(workspace, tmp_path / "run", data=str(tmp_path / "*.tar"), **settings), log=said.append)
    assert any("--label-captions 0.5: no example" in line for line in said)
    said.clear()
    train(config(workspace, tmp_path / "labelled", **settings), log=said.append)
    assert not any("--label-captions" in line for line in said)


def test_reading_ahead_trains_the_same_weights(workspace, tmp_path):
    """--prefetch reads the next super-batch in a thread during the step: same batches, same model."""
    plain = train(config(workspace, tmp_path / "plain", prefetch=False), log=lambda _: None)
    ahead = train(config(workspace, tmp_path / "ahead", prefetch=True), log=lambda _: None)
    a, b = load_checkpoint(plain).state_dict(), load_checkpoint(ahead).state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_selection_none_trains_without_a_teacher(workspace, tmp_path):
    final = train(
        config(workspace, tmp_path / "plain", select="none", teacher_cache=None), log=lambda _: None
    )
    assert (final / "model.safetensors").is_file()


def test_teacher_cache_survives_a_kill_and_has_every_key_once(workspace, tmp_path):
    root, tokenizer_file, _ = workspace
    shards = expand_shards(root / "corpus")
    teacher = load_checkpoint(root / "teacher")
    tokenizer = Tokenizer.from_file(tokenizer_file, length=16)
    spec = ImagePreprocessing(size=(32, 32))

    def killed_after_one(items, _):
        for number, item in enumerate(items):
            if number == 1:
                raise Interrupt
            yield item

    out = tmp_path / "cache"
    with pytest.raises(Interrupt):
        teacher_cache.embed_dataset(
            teacher, tokenizer, spec, shards, out, teacher_id="t", teacher_digest="d",
            progress=killed_after_one,
        )  # fmt: skip
    assert len(list(out.glob("part-*.safetensors"))) == 1 and not (out / "manifest.json").exists()
    info = teacher_cache.embed_dataset(
        teacher, tokenizer, spec, shards, out, teacher_id="t", teacher_digest="d"
    )
    teacher_cache.finish(out, info)
    cache = teacher_cache.TeacherCache(out)
    complete = teacher_cache.TeacherCache(root / "cache")
    assert len(cache) == len(complete) == 61
    keys = list(complete._image_row)
    image, _ = cache.lookup(keys[:5], ["en"] * 5)
    expected, _ = complete.lookup(keys[:5], ["en"] * 5)
    torch.testing.assert_close(image, expected)


def cli_args(workspace, out, extra=()) -> list[str]:
    root, _, cache = workspace
    return [
        "distill", "--teacher", str(root / "teacher"), "--teacher-cache", str(cache), "--student", "tiny",
        "--data", str(root / "corpus" / "*.tar"), "--out", str(out), "--steps", "3", "--batch-size", "8",
        "--warmup-steps", "1", "--threads", "1", "--kd-weight", "0.5", *extra,
    ]  # fmt: skip


def test_two_process_torchrun_matches_one_process(workspace, tmp_path):
    one = subprocess.run([sys.executable, "-m", "siglip2_sdk", *cli_args(workspace, tmp_path / "one")], **RUN)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = torchrun_command(port=29531)
    two = subprocess.run([*torchrun, "-m", "siglip2_sdk", *cli_args(workspace, tmp_path / "two")], **RUN)
    assert two.returncode == 0, two.stderr[-2000:]
    a = load_checkpoint(tmp_path / "one" / "final").state_dict()
    b = load_checkpoint(tmp_path / "two" / "final").state_dict()
    # A key projection's bias adds the same q.b_k to every logit of a softmax row, so its true
    # gradient is zero and what it gets is float32 rounding noise, which Adam scales to lr-sized
    # steps of either sign: those weights differ by whatever the summation order gives (up to 2e-4
    # on some CPUs), so they are left out. Every other weight has a gradient to follow.
    compared = [name for name in a if not name.endswith("k_proj.bias")]
    worst = max((a[name] - b[name]).abs().max().item() for name in compared)
    assert worst < 1e-4, f"weights differ by up to {worst}"
    initial = build_model(preset("tiny"), seed=0).state_dict()
    assert (
        max((a[name] - initial[name]).abs().max().item() for name in a) > 1e-3
    )  # training moved the weights


def test_teacher_embed_command_builds_a_complete_cache(workspace, tmp_path):
    from siglip2_sdk.cli import main

    root, _, _ = workspace
    args = ["teacher-embed", "--teacher", str(root / "teacher"), "--data", str(root / "corpus" / "*.tar")]
    assert main([*args, "--out", str(tmp_path / "cache")]) == 0
    cache = teacher_cache.TeacherCache(tmp_path / "cache")
    assert len(cache) == 61 and cache.info.teacher == str(root / "teacher")
    # Asked again: the manifest says it is complete, so nothing is recomputed.
    before = (tmp_path / "cache" / "part-000000.safetensors").stat().st_mtime_ns
    assert main([*args, "--out", str(tmp_path / "cache")]) == 0
    assert (tmp_path / "cache" / "part-000000.safetensors").stat().st_mtime_ns == before


def write_img2dataset_shard(path, count: int, hue: int) -> None:
    """`000000.jpg` + `000000.txt`, ... as img2dataset writes them: keys restart in every shard."""
    import io
    import tarfile

    from fixtures import solid_image

    with tarfile.open(path, "w") as tar:
        for i in range(count):
            jpeg = io.BytesIO()
            solid_image((hue, 10 * i, 255 - 10 * i)).save(jpeg, format="JPEG")
            for ext, payload in (("jpg", jpeg.getvalue()), ("txt", f"a red circle {i}".encode())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def test_user_shards_whose_keys_restart_per_shard(workspace, tmp_path):
    root, tokenizer_file, _ = workspace
    for shard, hue in ((0, 0), (1, 200)):
        write_img2dataset_shard(tmp_path / f"{shard:05d}.tar", 12, hue)
    pattern = str(tmp_path / "{00000..00001}.tar")
    cache = tmp_path / "cache"
    info = teacher_cache.embed_dataset(
        load_checkpoint(root / "teacher"),
        Tokenizer.from_file(tokenizer_file, length=16),
        ImagePreprocessing(size=(32, 32)),
        expand_shards(pattern),
        cache,
        teacher_id="t",
        teacher_digest="d",
    )
    teacher_cache.finish(cache, info)
    assert len(teacher_cache.TeacherCache(cache)) == 24
    run = config(workspace, tmp_path / "run", data=pattern, teacher_cache=str(cache), steps=2)
    assert (train(run, log=lambda _: None) / "model.safetensors").is_file()


def test_teacher_embed_under_torchrun_splits_shards_and_matches_one_process(workspace, tmp_path):
    root, _, _ = workspace
    args = ["teacher-embed", "--teacher", str(root / "teacher"), "--data", str(root / "corpus" / "*.tar")]
    torchrun = torchrun_command(port=29533)
    two = subprocess.run([*torchrun, "-m", "siglip2_sdk", *args, "--out", str(tmp_path / "two")], **RUN)
    assert two.returncode == 0, two.stderr[-2000:]
    one, both = teacher_cache.TeacherCache(root / "cache"), teacher_cache.TeacherCache(tmp_path / "two")
    assert set(one._image_row) == set(both._image_row)
    ids = sorted(one._image_row)
    torch.testing.assert_close(
        one.lookup(ids, ["en"] * len(ids)), both.lookup(ids, ["en"] * len(ids)), atol=2e-3, rtol=0
    )


def run_gradient_probe(workspace, tmp_path, processes: int, port: int, **overrides) -> dict:
    """tests/ddp_gradients.py's one-step gradients (and metadata) for a run of `processes` processes."""
    from safetensors import safe_open

    settings = config(workspace, tmp_path / "unused", **overrides)
    config_file = tmp_path / f"config-{processes}.json"
    config_file.write_text(json.dumps(dataclasses.asdict(settings)))
    out = tmp_path / f"gradients-{processes}.safetensors"
    launcher = [sys.executable] if processes == 1 else torchrun_command(port)
    script = Path(__file__).with_name("ddp_gradients.py")
    probe = [*launcher, str(script), str(config_file), str(out), "float64"]
    done = subprocess.run(probe, **RUN)
    assert done.returncode == 0, done.stderr[-3000:]
    with safe_open(out, framework="pt") as file:
        return {name: file.get_tensor(name) for name in file.keys()} | {"meta": file.metadata()}  # noqa: SIM118


def test_two_process_gradients_match_one_process_with_kd_and_accumulation(workspace, tmp_path):
    """Gradients before the optimizer, t and b included: DDP's average must be the one-process
    gradient (AdamW's scale invariance would hide a factor W in the weights). In float64, so that
    what could differ is the algorithm, not float32's summation order."""
    settings = dict(kd_weight=1.0, accumulate=2, batch_size=8, chunks=4)
    one = run_gradient_probe(workspace, tmp_path, 1, port=0, **settings)
    two = run_gradient_probe(workspace, tmp_path, 2, port=29535, **settings)
    assert json.loads(two["meta"]["collectives"]), "the two-process step made no collective"
    names = [name for name in one if name != "meta"]
    assert one["logit_scale"].abs().item() > 1e-4 and one["logit_bias"].abs().item() > 1e-4
    assert max(one[name].abs().max().item() for name in names) > 1e-3
    worst = {name: (one[name] - two[name]).abs().max().item() for name in names}
    assert max(worst.values()) < 1e-6, sorted(worst.items(), key=lambda item: -item[1])[:3]


def test_accumulated_micro_batches_give_the_same_kind_of_step(workspace, tmp_path):
    """--accumulate 2 trains (t and b are rebuilt for each backward) and logs every step."""
    final = train(config(workspace, tmp_path / "run", accumulate=2, kd_weight=0.5), log=lambda _: None)
    assert (final / "model.safetensors").is_file()
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    assert all(math.isfinite(line["loss"]) and line["grad_norm"] > 0 for line in lines)


@pytest.mark.parametrize("method", ["topk", "acid"])
def test_selected_examples_are_more_learnable_than_the_super_batch(workspace, tmp_path, method):
    """The logged learnability (student loss - teacher loss, computed apart from `select`) of what was
    kept beats the super-batch's: a run that swapped student and teacher would keep the least
    learnable examples."""
    run = config(workspace, tmp_path / method, select=method, steps=6, batch_size=8, filter_ratio=0.75)
    train(run, log=lambda _: None)
    lines = [json.loads(line) for line in (tmp_path / method / "log.jsonl").read_text().splitlines()]
    gains = [line["learnability_selected"] - line["learnability_all"] for line in lines]
    if method == "topk":
        assert all(gain > 0 for gain in gains), gains
    assert sum(gains) / len(gains) > 0, gains


def ensure_cache(teacher_dir, data, cache=None):
    from siglip2_sdk.distill.recipes import ensure_teacher_cache

    return ensure_teacher_cache(teacher_dir, "t", data, cache, 64, lambda it, _: it, lambda _: None)


def test_a_teacher_cache_from_other_shards_is_refused(workspace, tmp_path):
    """Shards rebuilt under other names or sizes would pair examples with other examples' rows."""
    from siglip2_sdk.core.errors import Siglip2Error

    root, _, cache = workspace
    for shard, hue in ((0, 0), (1, 200)):
        write_img2dataset_shard(tmp_path / f"{shard:05d}.tar", 12, hue)
    other = str(tmp_path / "*.tar")
    with pytest.raises(Siglip2Error, match="made from other shards"):
        train(config(workspace, tmp_path / "run", data=other), log=lambda _: None)
    with pytest.raises(Siglip2Error, match="made from other shards"):
        ensure_cache(root / "teacher", other, cache)


def test_a_teacher_cache_from_other_weights_is_refused_and_the_default_one_follows_them(
    workspace, tmp_path, monkeypatch
):
    """A teacher retrained or replaced in the same folder must not reuse the old one's embeddings."""
    from siglip2_sdk.core.errors import Siglip2Error

    root, tokenizer_file, cache = workspace
    monkeypatch.setenv("SIGLIP2_SDK_CACHE", str(tmp_path / "sdk-cache"))
    data = str(root / "corpus" / "*.tar")
    teacher = tmp_path / "teacher"
    shutil.copytree(root / "teacher", teacher)
    assert ensure_cache(teacher, data, cache) == cache  # same weights elsewhere: the cache still fits
    first = ensure_cache(teacher, data)
    save_checkpoint(build_model(preset("tiny"), seed=8), teacher, tokenizer_file=tokenizer_file)
    with pytest.raises(Siglip2Error, match="other teacher weights"):
        ensure_cache(teacher, data, cache)
    second = ensure_cache(teacher, data)
    assert second != first
    rows = teacher_cache.TeacherCache(first).image, teacher_cache.TeacherCache(second).image
    assert not torch.equal(*rows)


def test_a_student_can_start_from_some_of_its_teachers_layers(workspace, tmp_path):
    """--init-layers 1 keeps block 1 of each tower (and the embeddings and heads) of the --init
    checkpoint; the saved student is one block deep, loads, and still runs."""
    root, _, _ = workspace
    teacher = load_checkpoint(root / "teacher")
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    run = config(workspace, tmp_path / "run", init=str(root / "teacher"), init_layers="1", steps=1, lr=0.0)
    student = load_checkpoint(train(run, log=lambda _: None))
    assert student.config.vision.depth == student.config.text.depth == 1
    after = student.state_dict()
    for tower in ("vision_model", "text_model"):
        kept = f"{tower}.encoder.layers.0.mlp.fc1.weight"
        assert torch.equal(after[kept], before[f"{tower}.encoder.layers.1.mlp.fc1.weight"])
        assert f"{tower}.encoder.layers.1.mlp.fc1.weight" not in after
    assert torch.equal(
        after["text_model.embeddings.token_embedding.weight"],
        before["text_model.embeddings.token_embedding.weight"],
    )


@pytest.mark.parametrize(
    "settings, message",
    [(dict(init_layers="0"), "needs --init"), (dict(init="x", init_layers="0,a"), "layer numbers")],
)
def test_init_layers_are_checked(workspace, tmp_path, settings, message):
    with pytest.raises(Siglip2Error, match=message):
        config(workspace, tmp_path / "run", **settings)
