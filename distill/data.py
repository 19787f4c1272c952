"""Training data: WebDataset shards (img2dataset layout) -> preprocessed images + tokenized captions.

Shards are split across ranks (torchrun) and across DataLoader workers, so every process reads its
own shards. Which caption of a multilingual example is used is the caption-language policy.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import webdataset as wds

from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.preprocess import ImagePreprocessing, preprocess_one, resized_rgb
from siglip2_sdk.core.shards import (
    IMAGE_EXTENSIONS,
    captions_of,
    example_id,
    expand_shards,
    label_captions_of,
)
from siglip2_sdk.core.tokenizer import Tokenizer

POLICIES = ("en", "all", "sample", "en+sample")


def caption_policy(spec: str) -> str | tuple[str, ...]:
    """ "en" (English only), "all" (one training pair per caption), "sample" (one language drawn per
    example and epoch), "en+sample" (English half of the time, else one of the others drawn), or a
    comma-separated list of language tags ("en,de,fr": those only)."""
    if spec in POLICIES:
        return spec
    languages = tuple(tag.strip() for tag in spec.split(",") if tag.strip())
    if not languages:
        raise Siglip2Error(f"caption policy {spec!r}: use one of {', '.join(POLICIES)} or a list like en,de")
    return languages


def choose_captions(
    captions: dict[str, str], policy: str | tuple[str, ...], rng: random.Random
) -> list[tuple[str, str]]:
    """The (language, caption) pairs of one example that become training pairs under `policy`."""
    if policy == "en":
        languages = ["en"]
    elif policy == "all":
        languages = sorted(captions)
    elif policy == "sample":
        languages = [rng.choice(sorted(captions))] if captions else []
    elif policy == "en+sample":
        # Uniform sampling shows an emoji's English name 1 time in 14 and a Tux Paint stamp's 1 in
        # 70; this keeps every language but gives English, the one every example has, half.
        others = sorted(language for language in captions if language != "en")
        english = "en" in captions and (not others or rng.random() < 0.5)
        languages = ["en"] if english else [rng.choice(others)] if others else []
    else:
        languages = list(policy)
    return [(lang, captions[lang]) for lang in languages if captions.get(lang)]


@dataclass(frozen=True)
class CaptionItem:
    """One training pair before decoding: the image still encoded, the caption still text."""

    key: str
    image: bytes
    language: str
    caption: str


class KeptShards:
    """Whole shards' samples kept in memory, by shard, up to a byte budget: a small dataset read for
    many epochs (the demo teacher's) is parsed from its tar files once instead of once per epoch,
    which was a noticeable share of a demo step (figures: benchmarks/results/design_choices.md,
    "Training"). A shard that does not fit in what is left of the budget is read from disk every
    time, as without it. Samples come out the same either way, so the order of an epoch (and a
    resumed run's) does not depend on the cache."""

    def __init__(self, budget_mb: float = 0):
        self.budget = int(budget_mb * 2**20)
        self.held = 0
        self._shards: dict[str, list[dict]] = {}

    def samples(self, sources: Iterator[dict]) -> Iterator[dict]:
        """A pipeline stage: dict(url=...) per shard in, that shard's samples out."""
        for source in sources:
            url = source["url"]
            if url in self._shards:
                yield from (dict(sample) for sample in self._shards[url])
                continue
            kept: list[dict] | None = []
            size = 0
            for sample in wds.tarfile_samples([dict(url=url)]):
                if kept is not None:
                    size += sum(len(value) for value in sample.values() if isinstance(value, bytes))
                    kept = kept if self.held + size <= self.budget else None
                    if kept is not None:
                        kept.append(dict(sample))
                yield sample
            if kept is not None:  # the whole shard was read and fits
                self._shards[url] = kept
                self.held += size


def _raw_samples(
    shards: str | Sequence[str],
    *,
    shuffle: int,
    seed: int,
    split_by_rank: bool,
    kept: KeptShards | None = None,
) -> wds.FluidWrapper:
    """Samples of `shards`: shard order and a buffer of `shuffle` samples shuffled by `seed`."""
    urls = [str(p) for p in expand_shards(shards)]
    keep_all = lambda urls: urls  # noqa: E731  (every rank and worker reads the whole stream)
    dataset = wds.FluidWrapper(wds.SimpleShardList(urls))
    dataset = dataset.compose(wds.split_by_node if split_by_rank else keep_all)
    dataset = dataset.compose(wds.split_by_worker if split_by_rank else keep_all)
    if shuffle:
        dataset = dataset.compose(wds.shuffle(len(urls), seed=seed))
    dataset = dataset.compose((kept or KeptShards()).samples)
    return dataset.shuffle(shuffle, rng=random.Random(seed)) if shuffle else dataset


def _caption_items(
    samples: Iterator[dict], policy: str | tuple[str, ...], seed: int, label_share: float = 0.0
) -> Iterator[CaptionItem]:
    for sample in samples:
        image = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
        key = example_id(sample["__url__"], sample["__key__"])
        if image is None:
            continue
        # Seeded per example, so the chosen language does not depend on worker or shard order.
        rng = random.Random(f"{seed}:{key}")
        chosen = choose_label_caption(label_captions_of(sample), label_share, rng) if label_share else None
        for language, caption in chosen or choose_captions(captions_of(sample), policy, rng):
            yield CaptionItem(key, image, language, caption)


def choose_label_caption(
    labels: dict[str, str], share: float, rng: random.Random
) -> list[tuple[str, str]] | None:
    """With probability `share`, one of the example's label captions (`core.shards.label_captions_of`)
    drawn uniformly, as its one training pair; else (or without labels) None: its captions decide."""
    if not labels or rng.random() >= share:
        return None
    language = rng.choice(sorted(labels))
    return [(language, labels[language])]


def training_pairs(
    shards: str | Sequence[str],
    *,
    image_preprocessing: ImagePreprocessing,
    tokenizer: Tokenizer,
    policy: str | tuple[str, ...] = "sample",
    label_share: float = 0.0,
    shuffle: int = 1000,
    seed: int = 0,
) -> wds.WebDataset:
    """An iterable of (pixels float32 (3,H,W), input_ids int64 (L,), key, language), shards split by
    rank and worker (each process reads its own shards).

    `seed` drives shard order, the sample shuffle buffer and the caption draw: change it per epoch.
    """

    def decode(samples: Iterator[dict]) -> Iterator[tuple[torch.Tensor, torch.Tensor, str, str]]:
        for item in _caption_items(samples, policy, seed, label_share):
            pixels = torch.from_numpy(preprocess_one(item.image, image_preprocessing))
            yield pixels, torch.from_numpy(tokenizer(item.caption)[0]), item.key, item.language

    return _raw_samples(shards, shuffle=shuffle, seed=seed, split_by_rank=True).compose(decode)


@dataclass
class SuperBatch:
    """One step's candidates. `keys`/`languages` cover the whole (global) super-batch; `pixels` and
    `input_ids` only this rank's contiguous slice `local`. `pixels` are uint8 (n, H, W, 3), resized but
    not normalized: a quarter of float32's bytes to move to the GPU, and the arithmetic runs there
    (see `model_input`)."""

    keys: list[str]
    languages: list[str]
    local: slice
    pixels: torch.Tensor
    input_ids: torch.Tensor


class DecodedImages:
    """Images already decoded and resized, by example key, up to a memory budget: a small dataset
    seen for many epochs (the demo teacher's) is decoded once instead of once per epoch, which was a
    large share of a demo step (figures: benchmarks/results/design_choices.md, "Training"). Once the
    budget is spent, the remaining images are decoded every time, as without it. A hand-written
    dict: it is keyed by the example and bounded in bytes, which functools' caches are not."""

    def __init__(self, spec: ImagePreprocessing, budget_mb: float = 512, jpeg_draft: bool = False):
        self.spec, self.jpeg_draft = spec, jpeg_draft
        self.budget = int(budget_mb * 2**20)
        self.held = 0
        self._images: dict[str, np.ndarray] = {}

    def rgb(self, items: Sequence[CaptionItem], pool: ThreadPoolExecutor) -> np.ndarray:
        """uint8 (N, H, W, 3) of `items` at the model's size; only images not kept are decoded, in
        `pool` (on a kept dataset, handing every image to a thread cost more than the arithmetic)."""
        found = [self._images.get(item.key) for item in items]
        missing = [i for i, rgb in enumerate(found) if rgb is None]
        decode = lambda i: resized_rgb(items[i].image, self.spec, jpeg_draft=self.jpeg_draft)  # noqa: E731
        decoded = pool.map(decode, missing)
        for i, rgb in zip(missing, decoded, strict=True):
            found[i] = rgb
            if self.held + rgb.nbytes <= self.budget and items[i].key not in self._images:
                self._images[items[i].key] = rgb
                self.held += rgb.nbytes
        return np.stack(found)


def super_batches(
    shards: str | Sequence[str],
    *,
    size: int,
    image_preprocessing: ImagePreprocessing,
    tokenizer: Tokenizer,
    policy: str | tuple[str, ...] = "sample",
    label_share: float = 0.0,
    shuffle: int = 1000,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    skip: int = 0,
    threads: int = 4,
    decoded: DecodedImages | None = None,
    kept: KeptShards | None = None,
) -> Iterator[SuperBatch]:
    """The trainer's stream: one global sequence of caption items, the same on every rank, cut into
    super-batches of `size`; rank r decodes only its slice, so W processes train on exactly the
    batches one process would. Full super-batches only (selection needs its candidates). The first
    `skip` super-batches are passed over without decoding (resume). `decoded` and `kept` keep decoded
    images and read shards from one call (epoch) to the next."""
    if size % world_size:
        raise Siglip2Error(
            f"super-batch size {size} must be divisible by the number of processes {world_size}"
        )
    per_rank = size // world_size
    local = slice(rank * per_rank, (rank + 1) * per_rank)
    items = _caption_items(
        iter(_raw_samples(shards, shuffle=shuffle, seed=seed, split_by_rank=False, kept=kept)),
        policy,
        seed,
        label_share,
    )
    decoded = decoded or DecodedImages(image_preprocessing, budget_mb=0)
    with ThreadPoolExecutor(threads) as pool:  # Pillow decodes and resizes with the GIL released
        for index, group in enumerate(_chunks(items, size)):
            if index < skip:
                continue
            mine = group[local]
            pixels = decoded.rgb(mine, pool)
            yield SuperBatch(
                keys=[item.key for item in group],
                languages=[item.language for item in group],
                local=local,
                pixels=torch.from_numpy(pixels),
                input_ids=torch.from_numpy(tokenizer([item.caption for item in mine])),
            )


def model_input(pixels: torch.Tensor, spec: ImagePreprocessing) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> the tower's float32 (n, 3, H, W), on the tensor's own device; the same
    operations in the same order as `core.preprocess.normalize`, so the values are identical."""
    # Channels first before any arithmetic, then in place: broadcasting over a trailing dimension of
    # 3 and a copy of the float result made this a tenth of a CPU training step.
    x = pixels.permute(0, 3, 1, 2).contiguous().to(torch.float32, copy=True).mul_(spec.rescale_factor)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def _chunks(items: Iterator[CaptionItem], size: int) -> Iterator[list[CaptionItem]]:
    group = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []


def batches(dataset: wds.WebDataset, batch_size: int, num_workers: int = 0) -> wds.WebLoader:
    """Batched loader: (pixels (B,3,H,W), input_ids (B,L), keys, languages); the last batch may be short."""
    return wds.WebLoader(dataset.batched(batch_size, partial=True), batch_size=None, num_workers=num_workers)
