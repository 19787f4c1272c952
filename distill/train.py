"""The training loop for `distill` (ACID/ACED from a teacher cache) and `pretrain` (plain sigmoid loss).

One step: take a super-batch, score it with the student (no grad) against the teacher's cached
embeddings, keep the selected sub-batch, train on it with the sigmoid loss (+ optional KD). Under
torchrun every rank sees the same global super-batch and decodes its own slice; embeddings are
gathered so the loss, the selection and hence the weights match a one-process run.

Beside it: what a run depends on (`config.py`), its processes (`processes.py`), the state a
checkpoint holds for `--resume` (`state.py`) and its evaluation (`evaluation.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from siglip2_sdk.core.checkpoint import load_checkpoint, save_checkpoint
from siglip2_sdk.core.config import preset
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.evaluate import headline
from siglip2_sdk.core.model import SiglipModel, build_model
from siglip2_sdk.core.shards import LABEL_CAPTION, expand_shards
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.core.vocabulary import kept_vocabulary, split_languages, with_kept_rows

from .config import TrainConfig
from .data import DecodedImages, KeptShards, SuperBatch, caption_policy, model_input, super_batches
from .evaluation import eval_examples, evaluate_model
from .losses import kd_loss, pair_logits, pair_losses, same_texts, sigmoid_loss
from .processes import Processes, gather, start_processes
from .selection import example_scores, micro_batches, select
from .state import Position, latest_checkpoint, load_state, save_state
from .teacher_cache import TeacherCache, data_fingerprint


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to 0 at `steps`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Towers(nn.Module):
    """Both towers in one forward, so DistributedDataParallel sees the whole step's computation."""

    def __init__(self, model: SiglipModel):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_image(pixels), self.model.encode_text(input_ids)


def keep_token_gradient(model: SiglipModel, procs: Processes) -> bool:
    """On one CPU process, accumulate the token table's gradient in one buffer kept for the whole run.

    Why: the dense embedding backward allocates a fresh vocab x width gradient every step (256k
    rows), and on CPU an allocation that large is mmapped and page-faulted in anew each time, a
    sizeable share of a small model's step (benchmarks/results/design_choices.md, "Training"). A
    sparse gradient added into a dense `.grad` that is zeroed, not freed, sums the same rows (the
    weights come out as the dense backward's). Under DDP the reducer would treat the table's
    gradient as sparse, and on a GPU the caching allocator already reuses the memory, so both keep
    the dense backward.
    Returns whether gradients must be zeroed in place (`zero_grad(set_to_none=False)`).
    """
    if procs.world_size > 1 or procs.device.type != "cpu":
        return False
    table = model.text_model.embeddings.token_embedding
    table.sparse = True
    table.weight.grad = torch.zeros_like(table.weight)
    return True


def towers_for(model: SiglipModel, procs: Processes) -> tuple[nn.Module, bool]:
    """What `train_step` runs the model through (DDP under torchrun), and whether gradients must be
    zeroed in place (see `keep_token_gradient`)."""
    zero_in_place = keep_token_gradient(model, procs)
    towers: nn.Module = Towers(model)
    if procs.world_size > 1:
        towers = nn.parallel.DistributedDataParallel(towers)
    return towers, zero_in_place


def build_student(config: TrainConfig) -> SiglipModel:
    if config.init:
        model = load_checkpoint(config.init)
        if config.init_layers is not None:
            keep_layers(model, [int(layer) for layer in config.init_layers.split(",")])
        return model
    from siglip2_sdk.core.preprocess import ImagePreprocessing

    model = build_model(preset(config.student), seed=config.seed)
    size = model.config.vision.image_size
    model.image_preprocessing = ImagePreprocessing(size=(size, size))
    return model


def compact_vocabulary(model: SiglipModel, config: TrainConfig) -> None:
    """Train only the kept rows of the token table: those `--vocab-from` / `--languages` name, else
    those of the vocabulary the starting checkpoint was trained with. Most of a small model's
    parameters are the 256k-row table, most of whose rows no caption of a given corpus reads
    (core/vocabulary.py; benchmarks/results/design_choices.md, "Training")."""
    if config.vocab_from or config.languages:
        model.vocabulary = kept_vocabulary(
            config.tokenizer,
            model.config.text,
            data=config.vocab_from,
            languages=split_languages(config.languages),
        )
    if model.vocabulary is not None:
        model.text_model = with_kept_rows(model.text_model, model.vocabulary)


def keep_layers(model: SiglipModel, layers: list[int]) -> None:
    """Drop every transformer block of both towers but `layers` (in their order); embeddings, heads,
    t and b stay. A student started this way begins from its teacher's features, not from noise."""
    for tower in (model.vision_model, model.text_model):
        blocks = tower.encoder.layers
        missing = [layer for layer in layers if not 0 <= layer < len(blocks)]
        if missing or len(set(layers)) != len(layers) or not layers:
            raise Siglip2Error(
                f"--init-layers {','.join(map(str, layers))}: the checkpoint's towers have layers "
                f"0 to {len(blocks) - 1}; name each at most once"
            )
        tower.encoder.layers = nn.ModuleList(blocks[layer] for layer in layers)
    model.config = model.config.replace(vision={"depth": len(layers)}, text={"depth": len(layers)})
    model.vision_model.config, model.text_model.config = model.config.vision, model.config.text


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the gradient by `scale` on the way back."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def temperature_and_bias(model: SiglipModel, procs: Processes) -> tuple[torch.Tensor, torch.Tensor]:
    """t = exp(t') and b, built anew for each backward.

    Under torchrun the loss's backward is scaled by W (see `train_step`) because each rank holds the
    gradient of its own rows only. t and b are not per-row: every rank computes their whole gradient
    from the gathered batch, so their share of that backward is scaled back by 1/W here, and DDP's
    average then gives the one-process gradient for them too."""
    t, b = model.logit_scale.exp(), model.logit_bias
    if procs.world_size > 1:
        share = 1.0 / procs.world_size
        t, b = _ScaleGradient.apply(t, share), _ScaleGradient.apply(b, share)
    return t, b


def rows_in_rank_order(part: torch.Tensor, batch: SuperBatch, world_size: int) -> torch.Tensor:
    """Super-batch indices of a micro-batch in the order `gather` concatenates the ranks' rows.

    Every rank knows the whole selection and every rank's slice, so this needs no collective (a
    gathered index tensor would also have to live on the process group's device: CUDA for NCCL)."""
    per_rank = batch.local.stop - batch.local.start
    owner = torch.div(part, per_rank, rounding_mode="floor")
    return torch.cat([part[owner == rank].sort().values for rank in range(world_size)])


def ignored_pairs(local_ids: torch.Tensor, config: TrainConfig, procs: Processes) -> torch.Tensor | None:
    """Pairs the sigmoid loss leaves out, over every rank's rows: none, or with
    `same_captions="ignore"` an image against another example's identical caption (Fashion-MNIST's
    ten class captions would otherwise teach that a trouser is not a "trouser"). Gathers only then."""
    return same_texts(gather(local_ids, procs)) if config.same_captions == "ignore" else None


def train_step(
    batch: SuperBatch,
    towers: nn.Module,
    model: SiglipModel,
    teacher: TeacherCache | None,
    config: TrainConfig,
    generator: torch.Generator,
    procs: Processes,
) -> dict:
    """Select (if asked), then forward/backward on the selected examples, in `config.accumulate`
    micro-batches cut along the selection's chunks. Returns metrics.

    Losses are computed in the model's own dtype: float32 in training (bf16 autocast covers only the
    towers on GPUs), float64 when a check wants one- and multi-process gradients without float32's
    summation-order rounding (tests/ddp_gradients.py)."""
    dtype = model.logit_scale.dtype
    pixels = model_input(batch.pixels.to(procs.device, non_blocking=True), model.image_preprocessing)
    pixels = pixels.to(dtype)
    input_ids = batch.input_ids.to(procs.device, non_blocking=True)
    teacher_image = teacher_text = None
    if teacher is not None:
        teacher_image, teacher_text = (
            t.to(procs.device, dtype) for t in teacher.lookup(batch.keys, batch.languages)
        )
        teacher_t = torch.tensor(teacher.info.logit_scale, device=procs.device, dtype=dtype)
        teacher_b = torch.tensor(teacher.info.logit_bias, device=procs.device, dtype=dtype)

    metrics = {}
    if config.select == "none":
        chosen = torch.arange(len(batch.keys))[: config.batch_size]
    else:
        with torch.no_grad():
            t, b = model.logit_scale.exp(), model.logit_bias
            student_image = gather(model.encode_image(pixels), procs)
            student_text = gather(model.encode_text(input_ids), procs)
            ignored = ignored_pairs(input_ids, config, procs)
            student_losses = pair_losses(pair_logits(student_image, student_text, t, b), ignored)
            teacher_losses = pair_losses(
                pair_logits(teacher_image, teacher_text, teacher_t, teacher_b), ignored
            )
        chosen = select(
            config.select,
            student_losses,
            teacher_losses,
            config.batch_size,
            score=config.score,
            chunks=config.chunks,
            generator=generator,
        )
        # Learnability as the selection defines it (row + column), computed apart from `select` so
        # the log shows whether the chosen examples are the learnable ones.
        learnability = example_scores((student_losses - teacher_losses).float().cpu())
        metrics["learnability_all"] = learnability.mean().item()
        metrics["learnability_selected"] = learnability[chosen].mean().item()

    parts = micro_batches(chosen, config.accumulate, config.chunks if config.select == "acid" else 1)
    total = 0.0
    for number, part in enumerate(parts):
        mine = part[(part >= batch.local.start) & (part < batch.local.stop)].sort().values - batch.local.start
        mine = mine.to(procs.device)
        last = number == len(parts) - 1
        # DDP all-reduces on the last micro-batch only; the earlier ones accumulate locally.
        syncing = contextlib.nullcontext() if last or procs.world_size == 1 else towers.no_sync()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=procs.device.type == "cuda")
        with syncing:
            with autocast:
                local_image, local_text = towers(pixels[mine], input_ids[mine])
            image, text = gather(local_image.to(dtype), procs), gather(local_text.to(dtype), procs)
            t, b = temperature_and_bias(model, procs)
            loss = sigmoid_loss(image, text, t, b, ignored_pairs(input_ids[mine], config, procs))
            if config.kd_weight and teacher is not None:
                rows = rows_in_rank_order(part, batch, procs.world_size).to(procs.device)
                teacher_logits = pair_logits(teacher_image[rows], teacher_text[rows], teacher_t, teacher_b)
                loss = loss + config.kd_weight * kd_loss(pair_logits(image, text, t, b), teacher_logits)
            # Every rank computed the same loss but holds the gradient of its own rows only; DDP
            # averages across ranks, so scale by the world size to get the one-process gradient.
            (loss * procs.world_size / len(parts)).backward()
        total += loss.item() / len(parts)
    metrics["loss"] = total
    return metrics


def epochs(config: TrainConfig, tokenizer: Tokenizer, spec, procs: Processes, start: Position) -> Iterator:
    """(epoch, batch index, super-batch) forever; each epoch reshuffles with its own seed."""
    epoch, skip = start.epoch, start.batch_in_epoch
    decoded = DecodedImages(spec, budget_mb=config.decoded_images_mb, jpeg_draft=config.jpeg_draft)
    kept = KeptShards(budget_mb=config.kept_shards_mb)
    while True:
        stream = super_batches(
            config.data,
            size=config.super_batch,
            image_preprocessing=spec,
            tokenizer=tokenizer,
            policy=caption_policy(config.captions),
            label_share=config.label_captions,
            shuffle=config.shuffle,
            seed=config.seed * 100_003 + epoch,
            rank=procs.rank,
            world_size=procs.world_size,
            skip=skip,
            threads=config.threads,
            decoded=decoded,
            kept=kept,
        )
        produced = False
        for index, batch in enumerate(stream, start=skip):
            produced = True
            yield epoch, index, batch
        if not produced and skip == 0:
            raise Siglip2Error(
                f"'{config.data}' has fewer caption pairs than one super-batch ({config.super_batch}); "
                "lower --batch-size or --filter-ratio"
            )
        epoch, skip = epoch + 1, 0


def prefetching(config: TrainConfig, procs: Processes) -> bool:
    """Whether the next super-batch is read in a background thread during the step (`--prefetch`;
    by default on GPUs, where the step does not need the CPU, and not on CPU, where the loader's
    threads would take cores from the step)."""
    return config.prefetch if config.prefetch is not None else procs.device.type == "cuda"


def _next_batch(data: Iterator, procs: Processes) -> tuple:
    """The next (epoch, index, super-batch), its tensors pinned on a GPU so the copy is asynchronous."""
    epoch, index, batch = next(data)
    if procs.device.type == "cuda":
        batch.pixels, batch.input_ids = batch.pixels.pin_memory(), batch.input_ids.pin_memory()
    return epoch, index, batch


@contextlib.contextmanager
def read_ahead(data: Iterator, procs: Processes, enabled: bool) -> Iterator[Iterator]:
    """`data`'s items, each read in a background thread while the caller works on the one before
    (decoding and tokenizing release the GIL). The order is unchanged; leaving reads one item more."""
    if not enabled:
        yield data
        return
    with ThreadPoolExecutor(1, thread_name_prefix="loader") as loader:

        def ahead() -> Iterator:
            upcoming = loader.submit(_next_batch, data, procs)
            while True:
                item = upcoming.result()
                upcoming = loader.submit(_next_batch, data, procs)
                yield item

        yield ahead()


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: Callable[[Iterable, str, int], Iterable] = lambda it, _, __: it,
    log: Callable[[str], None] = print,
) -> Path:
    """Run (or resume) training; returns the final checkpoint folder `out/final`."""
    procs = start_processes()
    out = Path(config.out)
    torch.manual_seed(config.seed)
    tokenizer_file = Path(config.tokenizer)
    expand_shards(config.data)  # a clear error now rather than inside the loader
    teacher = TeacherCache(config.teacher_cache) if config.teacher_cache else None
    if teacher is None and (config.select != "none" or config.kd_weight):
        raise Siglip2Error("selection and KD need a teacher cache")
    if teacher is not None and teacher.info.fingerprint != data_fingerprint(expand_shards(config.data)):
        raise Siglip2Error(
            f"teacher cache '{config.teacher_cache}' was made from other shards than '{config.data}' "
            f"(fingerprint {teacher.info.fingerprint}); pass the shards it was made from, or build a "
            "cache for these with teacher-embed"
        )

    model = build_student(config)
    compact_vocabulary(model, config)
    model = model.to(procs.device)
    tokenizer = Tokenizer.for_text_tower(tokenizer_file, model.config.text)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "position" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "position" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.95),
        fused=True,  # one kernel over all parameters: 10x faster than the loop on the 256k embedding
    )
    generator = torch.Generator().manual_seed(config.seed)
    position = Position()
    if resume and (out / "final" / "config.json").is_file():
        log(f"{out} already finished; its model is {out / 'final'}")
        return out / "final"
    if resume and (last := latest_checkpoint(out)) is not None:
        resumed = load_checkpoint(last)
        if model.vocabulary is not None:
            resumed.text_model = with_kept_rows(resumed.text_model, model.vocabulary)
        model.load_state_dict(resumed.state_dict())
        position = load_state(last, optimizer, generator)
        log(f"resuming from {last} at step {position.step}")
    elif procs.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    towers, zero_in_place = towers_for(model, procs)
    examples = eval_examples(config) if procs.main and config.eval_data else []
    logger = _MetricLogger(out, enabled=procs.main)
    spec = model.image_preprocessing
    data = epochs(config, tokenizer, spec, procs, position)
    steps = range(position.step, config.steps)
    with read_ahead(data, procs, prefetching(config, procs)) as batches:
        for step in progress(steps, "training", len(steps)) if procs.main else steps:
            started = time.perf_counter()
            epoch, index, batch = next(batches)
            if step == position.step and procs.main:
                _say_when_labels_are_missing(batch, config, log)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config)
            model.train()
            metrics = train_step(batch, towers, model, teacher, config, generator, procs)
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=not zero_in_place)
            position = Position(step + 1, epoch, index + 1)
            elapsed = time.perf_counter() - started
            metrics.update(
                lr=lr_at(step, config),
                grad_norm=float(norm),
                t=float(model.logit_scale.detach().exp()),
                b=float(model.logit_bias.detach()),
                step_time=elapsed,
                examples_per_s=config.super_batch / elapsed,
                epoch=epoch,
            )
            if examples and config.eval_every and (step + 1) % config.eval_every == 0:
                results = headline(evaluate_model(model, tokenizer, examples))
                metrics.update({f"val_{k}": v for k, v in results.items()})
            logger.write(step + 1, metrics)
            if config.save_every and (step + 1) % config.save_every == 0 and step + 1 < config.steps:
                folder = out / "checkpoints" / f"step-{step + 1:07d}"
                _save(folder, model, tokenizer_file, optimizer, generator, position, procs)
    final = out / "final"
    if procs.main:
        save_checkpoint(model, final, tokenizer_file=tokenizer_file)
        if examples:
            results = evaluate_model(model, tokenizer, examples)
            (out / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
            logger.write(config.steps, {f"final_{k}": v for k, v in headline(results).items()})
    logger.close()
    if procs.world_size > 1:
        dist.barrier()
    return final


def _say_when_labels_are_missing(batch: SuperBatch, config: TrainConfig, log) -> None:
    """--label-captions on shards without labels changes nothing: say so rather than let the run look
    like what was asked. One super-batch tells when it should hold 10 or more label captions: with
    labelled data, none at all then comes up less than once in 20,000 super-batches."""
    expected = config.label_captions * len(batch.languages)
    if expected >= 10 and not any(lang.startswith(LABEL_CAPTION) for lang in batch.languages):
        log(
            f"--label-captions {config.label_captions}: no example of the first super-batch was captioned "
            "by a label; do the shards' JSON files have `labels`? Training on captions alone."
        )


def _save(folder: Path, model, tokenizer_file, optimizer, generator, position, procs: Processes) -> None:
    if procs.main:
        save_checkpoint(
            model,
            folder,
            tokenizer_file=tokenizer_file,
            write_extra=lambda staging: save_state(staging, optimizer, generator, position),
        )
        for old in sorted(folder.parent.glob("step-*"))[:-2]:  # keep the last two
            shutil.rmtree(old, ignore_errors=True)
    if procs.world_size > 1:
        dist.barrier()


class _MetricLogger:
    """JSONL (one line per step, appended, so a resumed run continues it) and TensorBoard."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        self.jsonl = open(out / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(out / "tensorboard"))
        except ImportError:  # tensorboard is optional; the JSONL log has everything
            self.tensorboard = None

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()
        if self.tensorboard is not None:
            for name, value in metrics.items():
                if isinstance(value, int | float) and value is not None:
                    self.tensorboard.add_scalar(name, value, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
