"""Export to ONNX bundles: parity gate, bundle loading through Encoder, torch-free inference."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from siglip2_sdk import Encoder
from siglip2_sdk.cli import main
from siglip2_sdk.core.bundle import read_manifest
from siglip2_sdk.core.checkpoint import load_checkpoint
from siglip2_sdk.core.errors import BundleError, Siglip2Error
from siglip2_sdk.export.parity import Thresholds
from siglip2_sdk.export.writer import ParityData, export_bundle

from fixtures import build_fake_corpus, solid_image, tiny_checkpoint

TEXTS = ["a red circle", "a blue square", "a green circle", "red", "blue square", "a photo of a circle"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("export"), seed=5)


@pytest.fixture(scope="module")
def parity_data():
    return ParityData([solid_image((40 * i, 255 - 40 * i, 90)) for i in range(6)], TEXTS)


@pytest.fixture(scope="module")
def fp32_bundle(checkpoint, parity_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    return export_bundle(load_checkpoint(checkpoint), "tiny", "onnx", "fp32", out, parity_data)


def test_fp32_bundle_passes_the_gate_and_matches_torch(fp32_bundle, checkpoint, parity_data):
    assert fp32_bundle.manifest.status == "ok" and fp32_bundle.problems == []
    assert fp32_bundle.manifest.parity["image_cosine_min"] > 0.99999
    bundle, reference = Encoder.load(fp32_bundle.folder), Encoder.load(checkpoint)
    assert bundle.runtime == "onnxruntime" and bundle.dim == reference.dim
    np.testing.assert_allclose(
        bundle.embed_images(parity_data.images), reference.embed_images(parity_data.images), atol=1e-5
    )
    np.testing.assert_allclose(bundle.embed_texts(TEXTS), reference.embed_texts(TEXTS), atol=1e-5)
    # Dynamic batch axis: batches of 1 and of 5 both run.
    assert bundle.embed_texts(["red"]).shape == (1, 32) and bundle.embed_texts(TEXTS[:5]).shape == (5, 32)


def test_manifest_carries_what_a_reader_needs(fp32_bundle):
    manifest = json.loads((fp32_bundle.folder / "manifest.json").read_text())
    assert manifest["runtime"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert manifest["text"] == {"length": 16, "pad_id": 0, "eos_id": 1, "lowercase": True}
    assert manifest["image"]["size"] == [32, 32] and manifest["logit_scale"] == pytest.approx(10.0)
    assert set(manifest["files"]) == {"image_model", "text_model", "tokenizer"}
    assert manifest["parity"]["thresholds"] == {"cosine_min": 0.99, "agreement": 0.98}


def test_a_damaged_bundle_is_refused(fp32_bundle, tmp_path):
    import shutil

    copy = shutil.copytree(fp32_bundle.folder, tmp_path / "copy")
    with open(copy / "text.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    with pytest.raises(BundleError, match="does not match the manifest"):
        Encoder.load(copy)


def test_a_bundle_asked_to_run_on_another_runtime_says_so(fp32_bundle):
    with pytest.raises(Siglip2Error, match="was made for onnxruntime"):
        Encoder.load(fp32_bundle.folder, runtime="litert")


def test_int8_bundle_below_the_gate_is_kept_but_marked_failed(checkpoint, parity_data, tmp_path):
    strict = Thresholds(cosine_min=0.999999, agreement=1.0)
    result = export_bundle(load_checkpoint(checkpoint), "tiny", "onnx", "int8", tmp_path, parity_data, strict)
    assert result.manifest.status == "failed" and result.problems
    assert result.manifest.parity["image_cosine_min"] < 0.999999
    assert "int8" in result.manifest.quantization
    with pytest.raises(BundleError, match="marked 'failed'"):
        Encoder.load(result.folder)


def test_bundle_inference_does_not_import_torch(fp32_bundle):
    code = (
        "import sys, siglip2_sdk as s2\n"
        f"e = s2.Encoder.load({str(fp32_bundle.folder)!r})\n"
        "assert e.embed_texts(['a red circle']).shape == (1, 32)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_export_and_eval_commands_end_to_end(checkpoint, tmp_path, capsys):
    corpus = build_fake_corpus(tmp_path)
    data = str(corpus / "*.tar")
    out = tmp_path / "bundles"
    args = [
        "export",
        str(checkpoint),
        "--to",
        "onnx",
        "--precision",
        "fp32",
        "--out",
        str(out),
        "--parity-data",
        data,
    ]
    assert main(args) == 0
    bundle = out / "ckpt-onnxruntime-fp32"
    assert (
        main(
            [
                "eval",
                str(bundle),
                "--data",
                str(corpus),
                "--split",
                "train",
                "--json",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "e.json").read_text())["runtime"] == "onnxruntime"
    assert main([*args, "--min-cosine", "1.01"]) == 1  # the gate refuses: exit 1, bundle marked failed
    assert json.loads((bundle / "manifest.json").read_text())["status"] == "failed"
    assert "parity gate failed" in capsys.readouterr().err


def test_agreement_counts_changed_answers_but_not_float_ties():
    from siglip2_sdk.export.parity import top1_agreement

    reference = np.array([[0.90, 0.90 - 1e-6, 0.1], [0.2, 0.8, 0.3]])
    tie_flipped = np.array([[0.90 - 1e-6, 0.90, 0.1], [0.2, 0.8, 0.3]])
    changed = np.array([[0.1, 0.2, 0.9], [0.2, 0.8, 0.3]])
    assert top1_agreement(reference, tie_flipped) == 1.0
    assert top1_agreement(reference, changed) == 0.5


@pytest.fixture(scope="module")
def executorch_bundle(checkpoint, parity_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("et")
    return export_bundle(load_checkpoint(checkpoint), "tiny", "executorch", "fp32", out, parity_data)


def test_executorch_bundle_passes_the_gate_in_few_partitions_past_its_batch(executorch_bundle, checkpoint):
    from siglip2_sdk.export.executorch import BATCH_SIZE

    assert executorch_bundle.manifest.status == "ok"
    assert executorch_bundle.manifest.batch_size == {"image": BATCH_SIZE, "text": BATCH_SIZE}
    # Recorded per tower: every XNNPACK subgraph the file calls (ops between them run outside it).
    # `delegable` rewrites what XNNPACK does not take, so each tower is one or two.
    partitions = executorch_bundle.manifest.delegate_partitions
    assert set(partitions) == {"image", "text"} and all(1 <= count <= 3 for count in partitions.values())
    assert read_manifest(executorch_bundle.folder).delegate_partitions == partitions
    bundle, reference = Encoder.load(executorch_bundle.folder), Encoder.load(checkpoint)
    assert bundle.runtime == "executorch"
    texts = [TEXTS[i % len(TEXTS)] for i in range(BATCH_SIZE + 6)]  # more than one program call
    np.testing.assert_allclose(bundle.embed_texts(texts), reference.embed_texts(texts), atol=1e-3)


@pytest.fixture(scope="module")
def litert_bundle(checkpoint, parity_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("litert")
    return export_bundle(load_checkpoint(checkpoint), "tiny", "tflite", "fp32", out, parity_data)


def test_litert_bundle_records_the_partitions_its_delegate_makes_at_load(litert_bundle):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    partitions = litert_bundle.manifest.delegate_partitions
    assert read_manifest(litert_bundle.folder).delegate_partitions == partitions
    assert set(partitions) == {"image", "text"} and all(1 <= count <= 3 for count in partitions.values())
    # Counted on the interpreter with its default XNNPACK delegate: without it there is none to count.
    bare = Interpreter(
        model_path=str(litert_bundle.folder / "image.tflite"),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    bare.allocate_tensors()
    assert not any(op["op_name"] == "DELEGATE" for op in bare._get_ops_details())


def test_every_runtime_gives_the_same_embeddings_and_ranking(
    fp32_bundle, litert_bundle, executorch_bundle, checkpoint, parity_data
):
    encoders = [
        Encoder.load(checkpoint),
        Encoder.load(fp32_bundle.folder),
        Encoder.load(litert_bundle.folder),
        Encoder.load(executorch_bundle.folder),
    ]
    assert [encoder.runtime for encoder in encoders] == ["torch", "onnxruntime", "litert", "executorch"]
    images = [encoder.embed_images(parity_data.images) for encoder in encoders]
    texts = [encoder.embed_texts(TEXTS) for encoder in encoders]
    for image, text in zip(images[1:], texts[1:], strict=True):
        assert np.abs(image - images[0]).max() < 1e-3 and np.abs(text - texts[0]).max() < 1e-3
    rankings = [np.argsort(-(text @ image.T), axis=1) for image, text in zip(images, texts, strict=True)]
    assert all(np.array_equal(ranking, rankings[0]) for ranking in rankings[1:])


def test_bench_reads_the_same_products_from_every_runtime_file(fp32_bundle, litert_bundle, executorch_bundle):
    """bench.graphs reads each format with its own tooling: the fp32 towers hold the same matrix
    products (LiteRT's converter folds the MAP probe's query projection, a product of constants),
    none in int8, in the partitions the manifests recorded."""
    from siglip2_sdk.bench.graphs import bundle_graphs

    onnx, litert, executorch = (
        bundle_graphs(b.folder) for b in (fp32_bundle, litert_bundle, executorch_bundle)
    )
    for tower in ("image", "text"):
        assert onnx[tower]["gflop"] > 0 and onnx[tower]["gflop"] == pytest.approx(executorch[tower]["gflop"])
        assert 0.9 * onnx[tower]["gflop"] <= litert[tower]["gflop"] <= onnx[tower]["gflop"]
        assert {g[tower]["int8_share"] for g in (onnx, litert, executorch)} == {0.0}
        assert onnx[tower]["partitions"] is None and onnx[tower]["outside"] is None
        for bundle, graphs in ((litert_bundle, litert), (executorch_bundle, executorch)):
            assert graphs[tower]["partitions"] == bundle.manifest.delegate_partitions[tower]
            assert 0 <= graphs[tower]["outside"] < graphs[tower]["ops"]
