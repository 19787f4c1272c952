"""The trainer's evaluation: the model in training measured on `--eval-data` by the evaluation harness
(`core.evaluate`), its towers run on numpy the one way (`core.model.numpy_runner`)."""

from __future__ import annotations

from itertools import islice

import numpy as np

from siglip2_sdk.core import embedding
from siglip2_sdk.core.evaluate import evaluate
from siglip2_sdk.core.model import SiglipModel, numpy_runner
from siglip2_sdk.core.shards import expand_shards, iter_examples
from siglip2_sdk.core.tokenizer import Tokenizer

from .config import TrainConfig


class ModelEmbedder:
    """The evaluation harness's view of a model in training."""

    def __init__(self, model: SiglipModel, tokenizer: Tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def embed_images(self, images, batch_size: int = 64) -> np.ndarray:
        run = numpy_runner(self.model, "image")
        spec, dim = self.model.image_preprocessing, self.model.config.embed_dim
        return embedding.embed_images(images, spec, run, dim, batch_size)

    def embed_texts(self, texts) -> np.ndarray:
        run = numpy_runner(self.model, "text")
        return embedding.embed_texts(texts, self.tokenizer, run, self.model.config.embed_dim)


def eval_examples(config: TrainConfig) -> list:
    """The first `eval_limit` examples of `eval_data`."""
    return list(islice(iter_examples(expand_shards(config.eval_data)), config.eval_limit))


def evaluate_model(model: SiglipModel, tokenizer: Tokenizer, examples: list) -> dict:
    """The harness's results for `model`, switched to eval mode (the loop switches it back)."""
    return evaluate(ModelEmbedder(model.eval(), tokenizer), examples)
