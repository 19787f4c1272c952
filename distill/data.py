"""Training data: WebDataset shards (img2dataset layout) -> preprocessed images + tokenized captions.

Shards are split across ranks (torchrun) and across DataLoader workers, so every process reads its
own shards. Which caption of a multilingual example is used is the caption-language policy.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import webdataset as wds

from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.preprocess import ImagePreprocessing, preprocess_one
from siglip2_sdk.core.shards import IMAGE_EXTENSIONS, expand_shards
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


def _pairs(
    samples: Iterator[dict],
    policy: str | tuple[str, ...],
    spec: ImagePreprocessing,
    tokenizer: Tokenizer,
    seed: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, str, str]]:
    for sample in samples:
        image = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
        key = sample["__key__"]
        # Seeded per example, so the chosen language does not depend on worker or shard order.
        captions = choose_captions(_captions(sample), policy, random.Random(f"{seed}:{key}"))
        if image is None or not captions:
            continue
        pixels = torch.from_numpy(preprocess_one(image, spec))
        for (language, _), ids in zip(captions, tokenizer([c for _, c in captions]), strict=True):
            yield pixels, torch.from_numpy(np.ascontiguousarray(ids)), key, language


def training_pairs(
    shards: str | Sequence[str],
    *,
    image_preprocessing: ImagePreprocessing,
    tokenizer: Tokenizer,
    policy: str | tuple[str, ...] = "sample",
    shuffle: int = 1000,
    seed: int = 0,
) -> wds.WebDataset:
    """An iterable of (pixels float32 (3,H,W), input_ids int64 (L,), key, language), split by rank
    and worker.

    `seed` drives shard order, the sample shuffle buffer and the caption draw: change it per epoch.
    """
    urls = [str(p) for p in expand_shards(shards)]
    dataset = wds.WebDataset(
        urls,
        shardshuffle=len(urls) if shuffle else False,
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
        seed=seed,
        empty_check=False,  # a rank or worker with no shard simply yields nothing
    )
    if shuffle:
        dataset = dataset.shuffle(shuffle, rng=random.Random(seed))
    return dataset.compose(lambda samples: _pairs(samples, policy, image_preprocessing, tokenizer, seed))


def batches(dataset: wds.WebDataset, batch_size: int, num_workers: int = 0) -> wds.WebLoader:
    """Batched loader: (pixels (B,3,H,W), input_ids (B,L), keys, languages); the last batch may be short."""
    return wds.WebLoader(dataset.batched(batch_size, partial=True), batch_size=None, num_workers=num_workers)
