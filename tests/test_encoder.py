"""Encoder over a torch checkpoint: the public embedding API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siglip2_sdk import Encoder
from siglip2_sdk.core.checkpoint import save_checkpoint
from siglip2_sdk.core.config import preset
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.model import build_model

from fixtures import make_bundle, solid_image, tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("encoder"), seed=1)


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return Encoder.load(checkpoint)


def test_image_embeddings_are_unit_vectors_for_every_input_kind(encoder, tmp_path):
    image = solid_image((200, 30, 30))
    image.save(tmp_path / "red.png")
    emb = encoder.embed_images(
        [tmp_path / "red.png", image, np.asarray(image), (tmp_path / "red.png").read_bytes()]
    )
    assert emb.shape == (4, encoder.dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, np.repeat(emb[:1], 4, axis=0), atol=1e-6)  # same picture, same vector


def test_embeddings_match_the_model_directly(encoder, checkpoint):
    from siglip2_sdk.core.checkpoint import load_checkpoint
    from siglip2_sdk.core.preprocess import preprocess

    model = load_checkpoint(checkpoint)
    image = solid_image((10, 200, 30))
    with torch.no_grad():
        expected_image = model.encode_image(torch.from_numpy(preprocess([image], model.image_preprocessing)))
        expected_text = model.encode_text(torch.from_numpy(encoder.tokenizer(["a red circle"])))
    np.testing.assert_allclose(encoder.embed_images([image]), expected_image.numpy(), atol=1e-6)
    np.testing.assert_allclose(encoder.embed_texts(["a red circle"]), expected_text.numpy(), atol=1e-6)


def test_batching_does_not_change_results(encoder):
    images = [solid_image((i * 40, 0, 255 - i * 40)) for i in range(5)]
    np.testing.assert_allclose(
        encoder.embed_images(images, batch_size=2), encoder.embed_images(images), atol=1e-6
    )
    texts = ["a red circle", "blue square", "a photo of a green circle"]
    np.testing.assert_allclose(
        encoder.embed_texts(texts, batch_size=1), encoder.embed_texts(texts), atol=1e-6
    )


def test_single_inputs_and_empty_lists(encoder):
    assert encoder.embed_texts("a red circle").shape == (1, encoder.dim)
    assert encoder.embed_texts([]).shape == (0, encoder.dim)
    assert encoder.embed_images([]).shape == (0, encoder.dim)


def test_zero_shot_uses_t_and_b(encoder):
    probs = encoder.zero_shot([solid_image((255, 0, 0))], ["red", "blue", "green"])
    assert probs.shape == (1, 3) and ((probs > 0) & (probs < 1)).all()
    logits = encoder.embed_images([solid_image((255, 0, 0))]) @ encoder.embed_texts(["red"]).T
    expected = 1 / (1 + np.exp(-(logits * encoder.logit_scale + encoder.logit_bias)))
    np.testing.assert_allclose(probs[:, :1], expected, rtol=1e-5)


def test_facts(encoder):
    assert (encoder.dim, encoder.runtime) == (32, "torch")
    assert encoder.logit_scale == pytest.approx(10.0) and encoder.logit_bias == pytest.approx(-10.0)


def test_a_checkpoint_asked_to_run_elsewhere_says_to_export(checkpoint):
    with pytest.raises(Siglip2Error, match="export it"):
        Encoder.load(checkpoint, runtime="onnxruntime")


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(tmp_path):
    from siglip2_sdk.core.assets import fetch_gemma_tokenizer

    saved = save_checkpoint(
        build_model(preset("tiny")), tmp_path / "c", tokenizer_file=fetch_gemma_tokenizer()
    )
    with pytest.raises(Siglip2Error, match="vocabulary"):
        Encoder.load(saved)


def test_a_litert_bundle_whose_file_is_not_a_tflite_model_is_refused(tmp_path):
    make_bundle(tmp_path, runtime="litert")  # its tower files hold a few bytes of text
    with pytest.raises(Siglip2Error, match="LiteRT cannot load .*image.onnx"):
        Encoder.load(tmp_path)


def test_threaded_decoding_changes_nothing_but_speed(encoder):
    from siglip2_sdk.core import embedding

    images = [solid_image((i * 9 % 256, 80, 255 - i * 9 % 256), (30 + i, 20 + i)) for i in range(37)]
    run = encoder.backend.embed_pixels
    sequential = embedding.embed_images(images, encoder.image_preprocessing, run, encoder.dim, 8, workers=1)
    threaded = embedding.embed_images(images, encoder.image_preprocessing, run, encoder.dim, 8, workers=4)
    np.testing.assert_array_equal(sequential, threaded)


def test_a_bad_image_in_a_batch_is_one_clear_error(encoder):
    from siglip2_sdk.core.errors import ImageLoadError

    with pytest.raises(ImageLoadError, match="not an image"):
        encoder.embed_images([solid_image((1, 2, 3)), b"definitely not an image"])
