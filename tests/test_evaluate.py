"""The evaluation harness, checked with fake encoders whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from siglip2_sdk.core.evaluate import class_name, evaluate, recall_at_k
from siglip2_sdk.core.shards import Example

N = 200
DIM = 256


def corpus(n: int = N) -> list[Example]:
    return [
        Example(
            key=f"{i:04d}",
            image=f"image-{i}".encode(),
            image_ext="png",
            captions={"en": f"caption {i}", "de": f"beschriftung {i}"},
            labels={"parity": "even" if i % 2 == 0 else "odd"},
            meta={"source": "fake"},
        )
        for i in range(n)
    ]


class FakeEncoder:
    """Maps image i and every caption of example i to the vector `vectors[i]`; `shift` makes
    images point at the next example's vector instead (all answers wrong)."""

    def __init__(self, vectors: np.ndarray, shift: int = 0):
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.shift = shift

    def embed_images(self, images, batch_size=32):
        return np.stack(
            [self.vectors[(int(b.decode().split("-")[1]) + self.shift) % len(self.vectors)] for b in images]
        )

    def embed_texts(self, texts):
        out = []
        for text in texts:
            word = text.split()[-1].rstrip(".")
            if word.isdigit():
                out.append(self.vectors[int(word)])
            else:  # a class prompt: "even"/"odd" point at the class's mean direction
                parity = 0 if word == "even" else 1
                out.append(self.vectors[parity::2].mean(axis=0))
        out = np.stack(out)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_perfect_embeddings_give_recall_1():
    results = evaluate(FakeEncoder(np.eye(N, DIM)), corpus())
    for language in ("all", "en", "de"):
        for direction in ("text_to_image", "image_to_text"):
            assert results["retrieval"][language][direction]["R@1"] == 1.0


def test_random_embeddings_give_recall_near_1_over_n():
    rng = np.random.default_rng(0)
    encoder = FakeEncoder(rng.normal(size=(N, DIM)))
    encoder.embed_images = lambda images, batch_size=32: np.stack(
        [v / np.linalg.norm(v) for v in rng.normal(size=(len(images), DIM))]
    )
    r1 = evaluate(encoder, corpus())["retrieval"]["en"]["text_to_image"]["R@1"]
    assert r1 < 5 / N  # chance is 1/N = 0.005


def test_swapped_embeddings_give_recall_0():
    results = evaluate(FakeEncoder(np.eye(N, DIM), shift=1), corpus())
    assert results["retrieval"]["en"]["text_to_image"]["R@1"] == 0.0
    assert results["retrieval"]["en"]["image_to_text"]["R@1"] == 0.0
    assert results["retrieval"]["en"]["text_to_image"]["R@5"] == 0.0


def test_pooled_languages_count_each_caption_as_a_query():
    results = evaluate(FakeEncoder(np.eye(N, DIM)), corpus())
    assert results["retrieval"]["all"]["texts"] == 2 * N
    assert results["retrieval"]["en"]["texts"] == N


def test_language_filter():
    results = evaluate(FakeEncoder(np.eye(N, DIM)), corpus(), languages=["de"])
    assert set(results["retrieval"]) == {"all", "de"}


def test_a_collapsed_model_scores_zero_not_perfect():
    results = evaluate(FakeEncoder(np.ones((N, DIM))), corpus())
    assert results["retrieval"]["en"]["text_to_image"]["R@10"] == 0.0


def test_identical_captions_accept_any_of_their_images():
    # Two images share a caption: either one ranked first is a hit.
    similarity = np.array([[0.9, 0.8, 0.1]])
    assert recall_at_k(similarity, [{1}], ks=(1,))["R@1"] == 0.0
    assert recall_at_k(similarity, [{0, 1}], ks=(1,))["R@1"] == 1.0


def test_zero_shot_accuracy_with_known_answers():
    vectors = np.zeros((N, DIM))
    vectors[0::2, 0] = 1.0  # even examples share one direction, odd ones another
    vectors[1::2, 1] = 1.0
    results = evaluate(FakeEncoder(vectors + 1e-3 * np.eye(N, DIM)), corpus())
    assert results["zero_shot"]["fake/parity"] == pytest.approx({"classes": 2, "n": N, "top1": 1.0})


@pytest.mark.parametrize(
    "label, words",
    [
        ("signs_and_symbols", "signs and symbols"),  # Open Clip Art's folders
        ("hand-fingers-open", "hand fingers open"),  # Unicode's emoji subgroups
        ("T-shirt/top", "T-shirt/top"),  # a hyphen inside a word stays
        ("People & Body", "People & Body"),
    ],
)
def test_zero_shot_prompts_read_labels_as_words(label, words):
    assert class_name(label) == words
