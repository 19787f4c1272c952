"""The `teacher-embed`, `pretrain` and `distill` commands: resolve the teacher, make sure its cache
exists, and run the trainer with the recipe's settings."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from siglip2_sdk.core.assets import cache_dir, fetch_gemma_tokenizer
from siglip2_sdk.core.checkpoint import load_checkpoint
from siglip2_sdk.core.digest import weights_digest
from siglip2_sdk.core.fileio import slug
from siglip2_sdk.core.hub import resolve_checkpoint
from siglip2_sdk.core.model import INIT_SCHEME
from siglip2_sdk.core.shards import expand_shards
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.core.vocabulary import check_sources, split_languages

from . import teacher_cache
from .config import TrainConfig, training_settings
from .processes import start_processes
from .train import train

# The demo teacher: the SigLIP 2 architecture trained from scratch on the demo corpus. Steps moved
# it most, and a narrower model takes more of them in the same minutes; English captions half of the
# time, because drawn uniformly among an example's 14 to 70 languages English came up too rarely to
# be learnt; Fashion-MNIST's ten class captions are not each other's negatives; 1 example in 20
# captioned by one of its labels' names (a category: "food", "people & body"), which no caption
# uses and the zero-shot evaluation asks for (benchmarks/results/demo_recipe.md). Its token table
# keeps only the ids of the training captions (`--vocab-from` the data it trains on): the other
# ~240k rows were a sixth of each step's time and no caption reads them; the student inherits it.
DEMO_TEACHER_VOCABULARY = "the training captions"
DEMO_TEACHER = dict(
    student="demo-teacher",
    steps=1600,
    batch_size=256,
    lr=1e-3,
    warmup_steps=100,
    captions="en+sample",
    same_captions="ignore",
    label_captions=0.05,
)


def demo_teacher_dir(data: str) -> Path:
    """Where the demo teacher for this data and recipe lives (trained once, then reused)."""
    fingerprint = teacher_cache.data_fingerprint(expand_shards(data))
    recipe = repr((sorted(DEMO_TEACHER.items()), INIT_SCHEME, DEMO_TEACHER_VOCABULARY))
    recipe = hashlib.sha256(recipe.encode()).hexdigest()[:6]
    return cache_dir() / "teachers" / f"demo-{fingerprint}-{recipe}"


def resolve_teacher(name: str, data: str, eval_data: str | None, progress, log) -> Path:
    """A teacher checkpoint folder: `demo` (trained here if needed), an alias, an HF id or a folder."""
    if name != "demo":
        return resolve_checkpoint(name)
    folder = demo_teacher_dir(data)
    if not (folder / "final" / "config.json").is_file():
        log(f"no demo teacher for this data yet: training one into {folder} (once)")
        pretrain(
            data, folder, eval_data=eval_data, resume=True, progress=progress, log=log, vocab_from=data,
            **DEMO_TEACHER,
        )  # fmt: skip
    return folder / "final"


def tokenizer_for(checkpoint: Path | None) -> Path:
    """The checkpoint's own tokenizer.json, else the Gemma 256k one every SigLIP 2 model uses."""
    if checkpoint is not None and (checkpoint / "tokenizer.json").is_file():
        return checkpoint / "tokenizer.json"
    return fetch_gemma_tokenizer()


def ensure_teacher_cache(
    teacher_dir: Path, teacher_name: str, data: str, cache: Path | None, batch_size: int, progress, log
) -> Path:
    """The teacher cache for (teacher, data), embedding what is missing (resumable, per rank)."""
    shards = expand_shards(data)
    fingerprint = teacher_cache.data_fingerprint(shards)
    digest = weights_digest(teacher_dir)
    if cache is None:
        name = f"{slug(teacher_name)}-{digest[:12]}-{fingerprint}-v{teacher_cache.FORMAT}"
        cache = cache_dir() / "teacher-cache" / name
    if (cache / teacher_cache.MANIFEST).is_file():
        found = teacher_cache.TeacherCache.read_manifest(cache)
        teacher_cache.check_matches(cache, found, teacher_digest=digest, fingerprint=fingerprint)
        return cache
    procs = start_processes()
    model = load_checkpoint(teacher_dir).to(procs.device)
    tokenizer = Tokenizer.from_file(tokenizer_for(teacher_dir), length=model.config.text.context_length)
    log(f"embedding {len(shards)} shard(s) with the teacher into {cache}")
    info = teacher_cache.embed_dataset(
        model,
        tokenizer,
        model.image_preprocessing,
        shards,
        cache,
        teacher_id=teacher_name,
        teacher_digest=digest,
        batch_size=batch_size,
        rank=procs.rank,
        world_size=procs.world_size,
        progress=progress,
        log=log,
    )
    if procs.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    if procs.main:
        teacher_cache.finish(cache, info)
    if procs.world_size > 1:
        dist.barrier()
    return cache


def pretrain(
    data: str,
    out: Path,
    *,
    eval_data: str | None,
    resume: bool,
    progress: Callable,
    log: Callable[[str], None],
    **settings,
) -> Path:
    """Train from scratch with the plain sigmoid loss (how the demo teacher is made)."""
    settings = training_settings(**{"select": "none", "kd_weight": 0.0, "teacher_cache": None, **settings})
    check_vocabulary_sources(settings)
    config = TrainConfig(
        data=data, out=str(out), tokenizer=str(fetch_gemma_tokenizer()), eval_data=eval_data, **settings
    )
    return train(config, resume=resume, progress=progress, log=log)


def check_vocabulary_sources(settings: dict) -> None:
    """Refuse an unknown --languages tag or --vocab-from data that is not there, before any work."""
    check_sources(settings.get("vocab_from"), split_languages(settings.get("languages")))


def distill(
    teacher: str,
    data: str,
    out: Path,
    *,
    teacher_cache_dir: Path | None = None,
    eval_data: str | None = None,
    resume: bool = False,
    progress: Callable[[Iterable, str, int], Iterable],
    log: Callable[[str], None],
    **settings,
) -> Path:
    """ACID/ACED distillation of a student from `teacher` on `data`; the student lands in out/final."""
    settings = training_settings(**settings)  # checked before the teacher is trained or embeds
    check_vocabulary_sources(settings)
    teacher_dir = resolve_teacher(teacher, data, eval_data, progress, log)
    if settings.get("init") == "teacher":  # the student starts from the teacher's own weights
        settings["init"] = str(teacher_dir)
    cache = ensure_teacher_cache(
        teacher_dir, teacher, data, teacher_cache_dir, 64, lambda it, what: progress(it, what, len(it)), log
    )
    init = settings.get("init")
    tokenizer = tokenizer_for(resolve_checkpoint(init) if init else teacher_dir)
    config = TrainConfig(
        data=data,
        out=str(out),
        tokenizer=str(tokenizer),
        teacher_cache=str(cache),
        eval_data=eval_data,
        **settings,
    )
    return train(config, resume=resume, progress=progress, log=log)
