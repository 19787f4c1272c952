"""The evaluation harness: zero-shot classification and image-text retrieval on corpus examples.

It measures anything with `embed_images` / `embed_texts` (the SDK's `Encoder` over any runtime, or a
test double), so a float checkpoint and an exported bundle are measured the same way. numpy only.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .shards import Example, class_name

RECALL_AT = (1, 5, 10)
# English prompt templates for zero-shot class embeddings (averaged), as in CLIP/SigLIP evaluations.
TEMPLATES = ("{}", "a photo of a {}.", "a drawing of a {}.", "an icon of a {}.")


class Embedder(Protocol):
    def embed_images(self, images: Sequence, batch_size: int = 32) -> np.ndarray: ...
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class RetrievalTask:
    """Texts and images with the ground truth between them; one text may fit several images
    (identical captions) and one image several texts (captions in several languages)."""

    texts: list[str]
    image_indices: list[int]  # which images (rows of the image embeddings) take part
    text_to_images: list[set[int]]  # per text, its correct images (positions in image_indices)

    @property
    def image_to_texts(self) -> list[set[int]]:
        matches: list[set[int]] = [set() for _ in self.image_indices]
        for text, images in enumerate(self.text_to_images):
            for image in images:
                matches[image].add(text)
        return matches


def recall_at_k(similarity: np.ndarray, positives: list[set[int]], ks: Sequence[int] = RECALL_AT) -> dict:
    """Fraction of query rows whose best positive column ranks in the top k.

    A wrong column that ties with the best positive counts as ranked above it: otherwise a collapsed
    model (every embedding equal) would score perfect recall.
    """
    ranks = np.empty(len(positives), dtype=np.int64)
    for query, wanted in enumerate(positives):
        row = similarity[query]
        if not wanted:
            ranks[query] = row.size
            continue
        wanted_scores = row[sorted(wanted)]
        best = wanted_scores.max()
        ranks[query] = np.count_nonzero(row >= best) - np.count_nonzero(wanted_scores >= best)
    return {f"R@{k}": float(np.mean(ranks < k)) for k in ks}


def retrieval_tasks(examples: Sequence[Example], languages: Sequence[str] | None = None) -> dict:
    """One task per caption language, plus "all" pooling every language."""
    by_language: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for index, example in enumerate(examples):
        for language, caption in example.captions.items():
            if caption and (languages is None or language in languages):
                by_language[language][caption].add(index)
                by_language["all"][caption].add(index)
    tasks = {}
    for language, captions in by_language.items():
        image_indices = sorted({i for images in captions.values() for i in images})
        position = {image: pos for pos, image in enumerate(image_indices)}
        texts = sorted(captions)
        tasks[language] = RetrievalTask(
            texts, image_indices, [{position[i] for i in captions[t]} for t in texts]
        )
    return tasks


def zero_shot(
    image_emb: np.ndarray,
    examples: Sequence[Example],
    embedder: Embedder,
    templates: Sequence[str] = TEMPLATES,
) -> dict:
    """Top-1 / top-5 accuracy per label set (e.g. "emoji/group"), classes = the set's labels."""
    label_sets: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for index, example in enumerate(examples):
        source = example.meta.get("source", "data")
        for name, label in example.labels.items():
            label_sets[f"{source}/{name}"].append((index, label))
    results = {}
    for name, items in sorted(label_sets.items()):
        classes = sorted({label for _, label in items})
        if len(classes) < 2:
            continue
        prompts = [template.format(class_name(c)) for c in classes for template in templates]
        class_emb = embedder.embed_texts(prompts).reshape(len(classes), len(templates), -1).mean(axis=1)
        class_emb /= np.linalg.norm(class_emb, axis=1, keepdims=True)
        scores = image_emb[[i for i, _ in items]] @ class_emb.T
        truth = np.array([classes.index(label) for _, label in items])
        order = np.argsort(-scores, axis=1, kind="stable")
        result = {"classes": len(classes), "n": len(items), "top1": float(np.mean(order[:, 0] == truth))}
        if len(classes) >= 5:
            result["top5"] = float(np.mean((order[:, :5] == truth[:, None]).any(axis=1)))
        results[name] = result
    return results


def evaluate(
    embedder: Embedder,
    examples: Sequence[Example],
    *,
    languages: Sequence[str] | None = None,
    templates: Sequence[str] = TEMPLATES,
    batch_size: int = 32,
) -> dict:
    """Zero-shot accuracy per label set and retrieval R@1/5/10 both ways, per language and overall."""
    image_emb = np.asarray(embedder.embed_images([e.image for e in examples], batch_size=batch_size))
    retrieval = {}
    for language, task in retrieval_tasks(examples, languages).items():
        text_emb = np.asarray(embedder.embed_texts(task.texts))
        similarity = text_emb @ image_emb[task.image_indices].T
        retrieval[language] = {
            "texts": len(task.texts),
            "images": len(task.image_indices),
            "text_to_image": recall_at_k(similarity, task.text_to_images),
            "image_to_text": recall_at_k(similarity.T, task.image_to_texts),
        }
    return {
        "examples": len(examples),
        "retrieval": dict(sorted(retrieval.items(), key=lambda kv: (kv[0] != "all", -kv[1]["texts"]))),
        "zero_shot": zero_shot(image_emb, examples, embedder, templates),
    }


def headline(results: dict) -> dict:
    """The few numbers a log line or a summary shows: text->image and image->text R@1 over every
    language, and the mean zero-shot top-1 over the label sets; None for what was not measured (no
    caption, no label set with two classes)."""
    pooled = results["retrieval"].get("all", {})
    zero_shot = [r["top1"] for r in results["zero_shot"].values()]
    return {
        "t2i_R@1": pooled.get("text_to_image", {}).get("R@1"),
        "i2t_R@1": pooled.get("image_to_text", {}).get("R@1"),
        "zero_shot_top1": statistics.mean(zero_shot) if zero_shot else None,
    }
