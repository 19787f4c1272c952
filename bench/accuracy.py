"""Accuracy against the float checkpoint: embedding cosine per example, and in `full` mode the
zero-shot and retrieval figures of `core.evaluate`, here or in spawned processes on one thread each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from siglip2_sdk.core.evaluate import evaluate, headline
from siglip2_sdk.core.shards import Example
from siglip2_sdk.core.workers import loaded, spawned_pool
from siglip2_sdk.encoder import Encoder

from .settings import BenchSettings
from .subjects import Subject, caption_of, read_examples, subject_fields


class KeepsImageEmbeddings:
    """An embedder that remembers the image embeddings `evaluate` computes, for the cosine figures."""

    def __init__(self, encoder: Encoder, batch_size: int):
        self.encoder, self.batch_size, self.images = encoder, batch_size, None

    def embed_images(self, images, batch_size: int = 32) -> np.ndarray:
        self.images = self.encoder.embed_images(images, batch_size=self.batch_size)
        return self.images

    def embed_texts(self, texts) -> np.ndarray:
        return self.encoder.embed_texts(texts)


def measure_accuracy(encoder: Encoder, examples: Sequence[Example], mode: str, batch: int) -> dict:
    """Image embeddings of the examples, text embeddings of one caption each, and in `full` mode the
    zero-shot and retrieval figures of core.evaluate."""
    if mode == "full":
        embedder = KeepsImageEmbeddings(encoder, batch)
        results = evaluate(embedder, examples, batch_size=batch)
        image_emb = embedder.images
    else:
        results, image_emb = None, encoder.embed_images([e.image for e in examples], batch_size=batch)
    return {
        "image_emb": image_emb,
        "text_emb": encoder.embed_texts([caption_of(e) for e in examples]),
        "results": results,
    }


def _accuracy_setup(data: str, wanted: int | None, count: int, mode: str, batch: int) -> dict:
    """What a worker loads once: the calling process's examples (the first `count` of
    `read_examples(data, wanted)`) and how to measure them."""
    return {"examples": read_examples(data, wanted)[:count], "mode": mode, "batch": batch}


def _accuracy_one(fields: dict) -> dict:
    inputs = loaded()
    encoder = Subject(**fields).open(1)
    return measure_accuracy(encoder, inputs["examples"], inputs["mode"], inputs["batch"])


def accuracies(
    subjects: list[Subject],
    data: str,
    wanted: int | None,
    examples: Sequence[Example],
    settings: BenchSettings,
    progress,
) -> dict[str, dict]:
    """`measure_accuracy` of each subject: here on its loaded encoder, or with
    `settings.accuracy_processes` > 1 in that many spawned processes on one thread each."""
    if settings.accuracy_processes == 1:
        return {
            s.name: measure_accuracy(s.encoder, examples, settings.accuracy, settings.batch_size)
            for s in progress(subjects, "accuracy")
        }
    setup = (data, wanted, len(examples), settings.accuracy, settings.batch_size)
    with spawned_pool(settings.accuracy_processes, _accuracy_setup, *setup) as pool:
        jobs = [pool.submit(_accuracy_one, subject_fields(s)) for s in subjects]
        waited = progress(jobs, f"accuracy ({settings.accuracy_processes} processes)")
        return {subject.name: job.result() for subject, job in zip(subjects, waited, strict=True)}


def retention(measured: dict, reference: dict) -> dict:
    figures = {}
    for tower in ("image", "text"):
        cosine = np.sum(measured[f"{tower}_emb"] * reference[f"{tower}_emb"], axis=1)
        figures[f"{tower}_cosine_min"] = float(cosine.min())
        figures[f"{tower}_cosine_mean"] = float(cosine.mean())
    if measured["results"] is not None:
        ours, theirs = headline(measured["results"]), headline(reference["results"])
        for name, value in ours.items():
            figures[name] = value
            if value is not None and theirs[name] is not None:
                figures[f"{name}_delta_points"] = 100 * (value - theirs[name])
        figures["evaluation"] = measured["results"]
    return figures
