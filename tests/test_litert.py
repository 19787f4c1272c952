"""Export to LiteRT (TFLite) bundles and the LiteRT backend: fixed-batch files fed any batch, int8."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from siglip2_sdk import Encoder
from siglip2_sdk.core.bundle import read_manifest, write_manifest
from siglip2_sdk.core.checkpoint import load_checkpoint
from siglip2_sdk.core.errors import BundleError
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.export import litert
from siglip2_sdk.export.parity import Thresholds
from siglip2_sdk.export.writer import ParityData, calibration_inputs, export_bundle

from fixtures import tiny_checkpoint

TEXTS = ["a red circle", "a blue square", "a green circle", "red", "blue square", "a photo of a circle"]
FIXED_BATCH = 3  # the fp32 bundle's: 1 row, 3 rows and 7 rows all take a padded or a full chunk


def varied_images(count: int, seed: int) -> list[Image.Image]:
    """Colour gradients with a shape on top, in several sizes: activations that spread over a range,
    unlike flat colours, so int8 calibration has something to measure."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        width, height = int(rng.integers(24, 64)), int(rng.integers(24, 64))
        ramp = np.linspace(0.0, 1.0, width if i % 2 else height)[:, None]
        start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        colours = (start + ramp * (end - start)).astype(np.uint8)
        pixels = np.broadcast_to(colours[None] if i % 2 else colours[:, None], (height, width, 3))
        image = Image.fromarray(np.ascontiguousarray(pixels))
        box = sorted(rng.integers(0, width, 2)) + sorted(rng.integers(0, height, 2))
        draw = ImageDraw.Draw(image)
        shape = draw.ellipse if i % 3 else draw.rectangle
        shape((box[0], box[2], box[1], box[3]), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        images.append(image)
    return images


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("litert"), seed=5)


@pytest.fixture(scope="module")
def reference(checkpoint):
    return Encoder.load(checkpoint)


@pytest.fixture(scope="module")
def parity_data():
    return ParityData(varied_images(len(TEXTS), seed=0), TEXTS)


@pytest.fixture(scope="module")
def fp32_bundle(checkpoint, parity_data, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(litert, "BATCH_SIZE", FIXED_BATCH)
        return export_bundle(
            load_checkpoint(checkpoint),
            "tiny",
            "tflite",
            "fp32",
            tmp_path_factory.mktemp("fp32"),
            parity_data,
        )


@pytest.fixture(scope="module", params=["int8", "int8-weight-only", "int8-dynamic", "int8-static"])
def int8_bundle(request, checkpoint, parity_data, tmp_path_factory):
    model = load_checkpoint(checkpoint)
    tokenizer = Tokenizer.for_text_tower(model.source_dir / "tokenizer.json", model.config.text)
    held_apart = ParityData(varied_images(32, seed=1), [TEXTS[i % len(TEXTS)] for i in range(32)])
    calibration = calibration_inputs(held_apart, model.image_preprocessing, tokenizer)
    # Only the cosine gates: the random-init towers score all six captions of an image within 6e-4 of
    # each other, below int8 noise, so which caption comes first says nothing about the quantization.
    cosine_only = Thresholds(cosine_min=0.99, agreement=0.0)
    out = tmp_path_factory.mktemp("int8")
    return export_bundle(
        model, "tiny", "tflite", request.param, out, parity_data, cosine_only, calibration=calibration
    )


def test_fp32_bundle_matches_torch(fp32_bundle, reference, parity_data):
    assert fp32_bundle.manifest.status == "ok" and fp32_bundle.manifest.runtime == "litert"
    assert fp32_bundle.manifest.batch_size == {"image": FIXED_BATCH, "text": FIXED_BATCH}
    bundle = Encoder.load(fp32_bundle.folder)
    images = parity_data.images + varied_images(1, seed=2)  # 7 rows: two full chunks and a padded one
    assert np.abs(bundle.embed_images(images) - reference.embed_images(images)).max() < 1e-3
    assert np.abs(bundle.embed_texts(TEXTS) - reference.embed_texts(TEXTS)).max() < 1e-3


def test_a_batch_of_one_and_of_none_run_on_a_fixed_batch_file(fp32_bundle, reference):
    bundle = Encoder.load(fp32_bundle.folder)
    one = bundle.embed_texts(["a red circle"])
    assert one.shape == (1, 32)
    np.testing.assert_allclose(one, reference.embed_texts(["a red circle"]), atol=1e-3)
    assert bundle.backend.embed_tokens(np.zeros((0, 16), np.int64)).shape == (0, 32)
    assert bundle.backend.embed_pixels(np.zeros((0, 3, 32, 32), np.float32)).shape == (0, 32)


def test_int8_bundle_stays_within_cosine_0_99_of_torch(int8_bundle, fp32_bundle, reference):
    assert int8_bundle.manifest.status == "ok", int8_bundle.problems
    assert int8_bundle.manifest.precision == "int8"
    if int8_bundle.folder.name.endswith("int8-static"):  # int8 compute; the image file takes int8 pixels
        assert "PT2E static int8" in int8_bundle.manifest.quantization
        assert "dynamic_wi8_afp32" in int8_bundle.manifest.quantization
    elif int8_bundle.folder.name.endswith("int8-dynamic"):
        assert "dynamic int8 in every fully connected layer" in int8_bundle.manifest.quantization
    elif int8_bundle.folder.name.endswith("int8-weight-only"):
        assert "weight_only_wi8_afp32" in int8_bundle.manifest.quantization
    else:
        assert "the image blocks' v and output projections" in int8_bundle.manifest.quantization
    # The weights really are int8; the default int8 keeps a tiny tower's q, k and heads in fp32.
    share = 0.8 if int8_bundle.folder.name.endswith("int8") else 0.6
    for role in ("image_model", "text_model"):
        assert int8_bundle.manifest.files[role].bytes < share * fp32_bundle.manifest.files[role].bytes
    bundle = Encoder.load(int8_bundle.folder)
    images, texts = varied_images(12, seed=3), [*TEXTS, "green", "a square"]
    image_cos = np.sum(bundle.embed_images(images) * reference.embed_images(images), axis=1)
    text_cos = np.sum(bundle.embed_texts(texts) * reference.embed_texts(texts), axis=1)
    assert image_cos.min() >= 0.99 and text_cos.min() >= 0.99


def test_int8_compute_schemes_compute_in_int8_and_weight_only_does_not(int8_bundle):
    from siglip2_sdk.bench.graphs import bundle_graphs

    name = int8_bundle.folder.name
    graphs = bundle_graphs(int8_bundle.folder)
    for tower in ("image", "text"):
        share = graphs[tower]["int8_share"]
        if name.endswith("int8-weight-only"):
            assert share == 0.0
        else:  # the default int8 leaves attention and heads in fp32: most of a tiny text tower
            assert share > 0.3 if name.endswith("int8") else share > 0.5, (tower, share)
    if not int8_bundle.folder.name.endswith("int8-static"):  # static int8 leaves ops to LiteRT's kernels
        assert graphs["image"]["partitions"] == graphs["text"]["partitions"] == 1


def test_int8_computes_in_int8_exactly_the_linears_int8_linears_picks(checkpoint, tmp_path):
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    from siglip2_sdk.export import litert
    from siglip2_sdk.export.lowering import INT8_LINEARS, ExportTowers, linears_in

    towers = ExportTowers.of(load_checkpoint(checkpoint))
    calibration = None  # int8 reads no calibration data
    litert.lower(towers, "int8", tmp_path, calibration)
    for tower in ("image", "text"):
        model = tfl.read_model(tmp_path / litert.FILES[f"{tower}_model"])
        graph, fully_connected = model.subgraphs[0], tfl.TFL_OP_NAME_TO_CODE["FULLY_CONNECTED"]
        int8 = [
            op
            for op in graph.operators
            if model.operatorCodes[op.opcodeIndex].builtinCode == fully_connected
            and tfl.TENSOR_CODE_TO_TYPE[graph.tensors[op.inputs[1]].type] == "INT8"
        ]
        # the image blocks' v (after a LayerNorm whose scale the converter folds in) included
        assert len(int8) == len(linears_in(getattr(towers, tower), INT8_LINEARS[tower])) > 0


def test_litert_inference_does_not_import_torch(int8_bundle):
    code = (
        "import sys, siglip2_sdk as s2\n"
        f"e = s2.Encoder.load({str(int8_bundle.folder)!r})\n"
        "assert e.runtime == 'litert'\n"
        "assert e.embed_texts(['a red circle', 'blue']).shape == (2, 32)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_manifest_whose_batch_the_file_does_not_take_is_refused(fp32_bundle, tmp_path):
    copy = shutil.copytree(fp32_bundle.folder, tmp_path / "copy")
    manifest = read_manifest(copy)
    write_manifest(copy, dataclasses.replace(manifest, batch_size={"image": 2, "text": FIXED_BATCH}))
    with pytest.raises(BundleError, match="batches of 3"):
        Encoder.load(copy)


def test_without_ai_edge_litert_the_error_says_what_to_install(fp32_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # what an absent package gives
    with pytest.raises(BundleError, match=r"pip install 'siglip2-sdk\[tflite\]'"):
        Encoder.load(fp32_bundle.folder)
