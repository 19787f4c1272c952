"""Training data: WebDataset shards (img2dataset layout) -> preprocessed images + tokenized captions.

Shards are split across ranks (torchrun) and across DataLoader workers, so every process reads its
own shards. Which caption of a multilingual example is used is the caption-language policy.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import webdataset as wds

from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.preprocess import ImagePreprocessing, normalize, preprocess_one, resized_rgb
from siglip2_sdk.core.shards import IMAGE_EXTENSIONS, example_id, expand_shards
from siglip2_sdk.core.tokenizer import Tokenizer

POLICIES = ("en", "all", "sample")


def caption_policy(spec: str) -> str | tuple[str, ...]:
    """ "en" (English only), "all" (one training pair per caption), "sample" (one language drawn per
    example and epoch), or a comma-separated list of language tags ("en,de,fr": those only)."""
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
    else:
        languages = list(policy)
    return [(lang, captions[lang]) for lang in languages if captions.get(lang)]


def _captions(sample: dict) -> dict[str, str]:
    if "json" in sample:
        meta = json.loads(sample["json"])
        if meta.get("captions"):
            return dict(meta["captions"])
        if isinstance(meta.get("caption"), str):
            return {"en": meta["caption"]}
    if "txt" in sample:
        return {"en": sample["txt"].decode("utf-8").strip()}
    return {}


@dataclass(frozen=True)
class CaptionItem:
    """One training pair before decoding: the image still encoded, the caption still text."""

    key: str
    image: bytes
    language: str
    caption: str


def _raw_samples(
    shards: str | Sequence[str], *, shuffle: int, seed: int, split_by_rank: bool
) -> wds.WebDataset:
    urls = [str(p) for p in expand_shards(shards)]
    keep_all = lambda urls: urls  # noqa: E731  (every rank and worker reads the whole stream)
    dataset = wds.WebDataset(
        urls,
        shardshuffle=len(urls) if shuffle else False,
        nodesplitter=wds.split_by_node if split_by_rank else keep_all,
        workersplitter=wds.split_by_worker if split_by_rank else keep_all,
        seed=seed,
        empty_check=False,  # a rank or worker with no shard simply yields nothing
    )
    return dataset.shuffle(shuffle, rng=random.Random(seed)) if shuffle else dataset


def _caption_items(
    samples: Iterator[dict], policy: str | tuple[str, ...], seed: int
) -> Iterator[CaptionItem]:
    for sample in samples:
        image = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
        key = example_id(sample["__url__"], sample["__key__"])
        if image is None:
            continue
        # Seeded per example, so the chosen language does not depend on worker or shard order.
        for language, caption in choose_captions(_captions(sample), policy, random.Random(f"{seed}:{key}")):
            yield CaptionItem(key, image, language, caption)


def training_pairs(
    shards: str | Sequence[str],
    *,
    image_preprocessing: ImagePreprocessing,
    tokenizer: Tokenizer,
    policy: str | tuple[str, ...] = "sample",
    shuffle: int = 1000,
    seed: int = 0,
) -> wds.WebDataset:
    """An iterable of (pixels float32 (3,H,W), input_ids int64 (L,), key, language), shards split by
    rank and worker (each process reads its own shards).

    `seed` drives shard order, the sample shuffle buffer and the caption draw: change it per epoch.
    """

    def decode(samples: Iterator[dict]) -> Iterator[tuple[torch.Tensor, torch.Tensor, str, str]]:
        for item in _caption_items(samples, policy, seed):
            pixels = torch.from_numpy(preprocess_one(item.image, image_preprocessing))
            yield pixels, torch.from_numpy(tokenizer(item.caption)[0]), item.key, item.language

    return _raw_samples(shards, shuffle=shuffle, seed=seed, split_by_rank=True).compose(decode)


@dataclass
class SuperBatch:
    """One step's candidates. `keys`/`languages` cover the whole (global) super-batch; `pixels` and
    `input_ids` only this rank's contiguous slice `local`."""

    keys: list[str]
    languages: list[str]
    local: slice
    pixels: torch.Tensor
    input_ids: torch.Tensor


class DecodedImages:
    """Images already decoded and resized, by example key, up to a memory budget: a small dataset
    seen for many epochs (the demo: 9.5k images, 16 epochs of the teacher) is decoded once instead of
    once per epoch, where decoding was ~0.2 s of a ~0.9 s step on 2 cores. Once the budget is spent,
    the remaining images are decoded every time, as without it. A hand-written dict: the cache must
    hold what the data stream's worker threads decode, keyed by the example, not by function call."""

    def __init__(self, spec: ImagePreprocessing, budget_mb: float = 512):
        self.spec = spec
        self.budget = int(budget_mb * 2**20)
        self.held = 0
        self._images: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def pixels(self, key: str, image: bytes) -> np.ndarray:
        """float32 (3, H, W) for the tower, exactly as `preprocess_one` gives."""
        rgb = self._images.get(key)
        if rgb is None:
            rgb = resized_rgb(image, self.spec)
            with self._lock:
                if self.held + rgb.nbytes <= self.budget and key not in self._images:
                    self._images[key] = rgb
                    self.held += rgb.nbytes
        return normalize(rgb, self.spec)


def super_batches(
    shards: str | Sequence[str],
    *,
    size: int,
    image_preprocessing: ImagePreprocessing,
    tokenizer: Tokenizer,
    policy: str | tuple[str, ...] = "sample",
    shuffle: int = 1000,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    skip: int = 0,
    threads: int = 4,
    decoded: DecodedImages | None = None,
) -> Iterator[SuperBatch]:
    """The trainer's stream: one global sequence of caption items, the same on every rank, cut into
    super-batches of `size`; rank r decodes only its slice, so W processes train on exactly the
    batches one process would. Full super-batches only (selection needs its candidates). The first
    `skip` super-batches are passed over without decoding (resume). `decoded` keeps decoded images from
    one call (epoch) to the next."""
    if size % world_size:
        raise Siglip2Error(
            f"super-batch size {size} must be divisible by the number of processes {world_size}"
        )
    per_rank = size // world_size
    local = slice(rank * per_rank, (rank + 1) * per_rank)
    items = _caption_items(
        iter(_raw_samples(shards, shuffle=shuffle, seed=seed, split_by_rank=False)), policy, seed
    )
    decoded = decoded or DecodedImages(image_preprocessing, budget_mb=0)
    with ThreadPoolExecutor(threads) as pool:  # Pillow decodes and resizes with the GIL released
        for index, group in enumerate(_chunks(items, size)):
            if index < skip:
                continue
            mine = group[local]
            pixels = list(pool.map(lambda item: decoded.pixels(item.key, item.image), mine))
            yield SuperBatch(
                keys=[item.key for item in group],
                languages=[item.language for item in group],
                local=local,
                pixels=torch.from_numpy(np.stack(pixels)),
                input_ids=torch.from_numpy(tokenizer([item.caption for item in mine])),
            )


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
