"""The bundle manifest contract: readers refuse a bundle whose files do not match it."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from siglip2_sdk.core.bundle import FORMAT_VERSION, Manifest, read_manifest, verify_bundle, write_manifest
from siglip2_sdk.core.errors import BundleError

from fixtures import make_bundle


def test_manifest_round_trips(tmp_path):
    written = make_bundle(tmp_path)
    assert verify_bundle(tmp_path) == written
    assert json.loads((tmp_path / "manifest.json").read_text())["format_version"] == FORMAT_VERSION


def test_a_changed_file_is_refused(tmp_path):
    make_bundle(tmp_path)
    (tmp_path / "text.onnx").write_bytes(b"text tovver")  # same size, different bytes
    with pytest.raises(BundleError, match="text_model file 'text.onnx' does not match"):
        verify_bundle(tmp_path)


def test_a_missing_file_is_refused(tmp_path):
    make_bundle(tmp_path)
    (tmp_path / "image.onnx").unlink()
    with pytest.raises(BundleError, match="image_model file 'image.onnx' is missing"):
        verify_bundle(tmp_path)


def test_paths_outside_the_bundle_are_refused(tmp_path):
    manifest = make_bundle(tmp_path / "b")
    outside = {**manifest.files, "tokenizer": manifest.files["tokenizer"].__class__("../secret", "0" * 64, 1)}
    write_manifest(tmp_path / "b", Manifest(**{**manifest.__dict__, "files": outside}))
    with pytest.raises(BundleError, match="must be a path inside the bundle"):
        read_manifest(tmp_path / "b")


def test_a_bundle_that_failed_its_parity_gate_is_refused_unless_asked(tmp_path):
    make_bundle(tmp_path, status="failed")
    with pytest.raises(BundleError, match="marked 'failed'"):
        verify_bundle(tmp_path)
    assert verify_bundle(tmp_path, allow_failed=True).status == "failed"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"format_version": 99}), "bundle format 99"),
        (json.dumps({"format_version": FORMAT_VERSION, "runtime": "onnxruntime"}), "malformed"),
    ],
)
def test_bad_manifests_are_one_clear_error(tmp_path, content, message):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(BundleError, match=message):
        read_manifest(tmp_path)


def test_unknown_runtime_is_refused(tmp_path):
    make_bundle(tmp_path, runtime="tensorflow")
    with pytest.raises(BundleError, match="unknown runtime 'tensorflow'"):
        read_manifest(tmp_path)


def test_a_folder_without_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a bundle"):
        read_manifest(tmp_path)


def test_the_android_reader_knows_every_manifest_key():
    """The Android core refuses unknown manifest keys (as this SDK's reader does), so a field added
    here must be added to its Manifest.kt too, or phones refuse every new bundle."""
    kotlin = (
        Path(__file__).parents[1] / "android_demo/core/src/main/kotlin/siglip2/core/Manifest.kt"
    ).read_text()
    lists = re.findall(r"(?:REQUIRED|OPTIONAL)\s*=\s*listOf\((.*?)\)", kotlin, re.DOTALL)
    known = {key for block in lists for key in re.findall(r'"(\w+)"', block)}
    assert {field.name for field in dataclasses.fields(Manifest)} <= known
