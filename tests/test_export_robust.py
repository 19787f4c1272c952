"""Bundles carry the model's identity, readers hold the manifest to the model files, and export never
leaves a moment without a bundle nor litter behind, even when killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from siglip2_sdk import Encoder, PhotoIndex
from siglip2_sdk.cli import main
from siglip2_sdk.core.bundle import verify_bundle
from siglip2_sdk.core.checkpoint import load_checkpoint
from siglip2_sdk.core.digest import weights_digest
from siglip2_sdk.core.errors import BundleError, Siglip2Error
from siglip2_sdk.export.writer import STAGING_PREFIX, ParityData, export_bundle, replace_folder

from fixtures import solid_image, tiny_checkpoint

TEXTS = ["a red circle", "a blue square", "a green circle", "red", "blue square", "a photo of a circle"]


@pytest.fixture(scope="module")
def parity_data():
    return ParityData([solid_image((40 * i, 255 - 40 * i, 90)) for i in range(6)], TEXTS)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two different checkpoints, each in a folder named `ckpt`."""
    return [tiny_checkpoint(tmp_path_factory.mktemp(f"model-{seed}"), seed=seed) for seed in (5, 6)]


@pytest.fixture(scope="module")
def bundles(models, parity_data, tmp_path_factory):
    """Each checkpoint exported to ONNX fp32 under the same name."""
    return [
        export_bundle(
            load_checkpoint(model), "ckpt", "onnx", "fp32", tmp_path_factory.mktemp("b"), parity_data
        )
        for model in models
    ]


def test_a_bundle_carries_its_checkpoints_weights_digest(models, bundles):
    assert bundles[0].manifest.weights_digest == weights_digest(models[0])
    assert bundles[0].folder.name == bundles[1].folder.name  # same name, other weights
    assert bundles[1].manifest.weights_digest == weights_digest(models[1]) != weights_digest(models[0])
    assert Encoder.load(bundles[0].folder).weights_digest == Encoder.load(models[0]).weights_digest


def test_an_index_takes_every_runtime_of_its_model_and_no_other_model(models, bundles, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        solid_image((80 * i, 40, 200)).save(photos / f"{i}.png")
    with PhotoIndex.open(tmp_path / "index", Encoder.load(models[0])) as index:  # made with torch
        index.add(photos)
    with PhotoIndex.open(tmp_path / "index", Encoder.load(bundles[0].folder)) as index:  # ONNX: same model
        assert Path(index.search(photos / "1.png", k=1)[0].path).name == "1.png"
    with pytest.raises(Siglip2Error, match="holds vectors of another model"):
        PhotoIndex.open(tmp_path / "index", Encoder.load(bundles[1].folder))  # same name, other weights


def test_a_bundle_from_before_digests_is_told_apart_by_name_and_says_so(bundles, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(bundles[0].folder, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["weights_digest"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    encoder = Encoder.load(old)
    assert encoder.weights_digest is None
    with pytest.warns(UserWarning, match="re-export it"):
        assert encoder.model_identity == "name:ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with PhotoIndex.open(tmp_path / "index", encoder):
            pass


EDITS = {
    "embed_dim 64": lambda m: m.update(embed_dim=64),
    'embed_dim "48"': lambda m: m.update(embed_dim="48"),
    "image.size": lambda m: m["image"].update(size=[48, 48]),
    "text.length": lambda m: m["text"].update(length=8),
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_manifest_edited_to_disagree_with_its_model_files_is_one_line(bundles, tmp_path, capsys, edit):
    edited = tmp_path / "edited"
    shutil.copytree(bundles[0].folder, edited)
    manifest = json.loads((edited / "manifest.json").read_text())
    EDITS[edit](manifest)
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="re-export the bundle|whole number"):
        Encoder.load(edited)
    (tmp_path / "photos").mkdir()
    assert (
        main(["index", str(tmp_path / "photos"), "--bundle", str(edited), "--index", str(tmp_path / "i")])
        == 2
    )
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_replacing_a_bundle_never_leaves_a_moment_without_one(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text("0")
    missing, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if not (folder / "manifest.json").exists():
                missing.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for generation in range(1, 200):
            new = tmp_path / f"{STAGING_PREFIX}bundle.1.x{generation}"
            new.mkdir()
            (new / "manifest.json").write_text(str(generation))
            replace_folder(new, folder)
    finally:
        stop.set()
        watcher.join()
    assert missing == [] and (folder / "manifest.json").read_text() == "199"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # the old ones are gone


def test_an_export_removes_the_staging_folders_of_killed_exports(models, parity_data, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{STAGING_PREFIX}ckpt-onnxruntime-fp32.{dead.pid}.abc123"
    live = tmp_path / f"{STAGING_PREFIX}ckpt-onnxruntime-fp16.{dead.pid + 10**6}.abc123"  # no such pid
    mine = tmp_path / f"{STAGING_PREFIX}other.{os.getpid()}.abc123"  # a live export's
    legacy = tmp_path / ".ckpt-onnxruntime-fp32.k2j4h6g8"  # how earlier versions staged
    for folder in (stale, live, mine, legacy):
        folder.mkdir()
        (folder / "image.onnx").write_bytes(b"half written")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    result = export_bundle(load_checkpoint(models[0]), "ckpt", "onnx", "fp32", tmp_path, parity_data)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([result.folder.name, mine.name])


def test_export_without_the_demo_corpus_says_to_give_parity_data(models, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a fresh machine: no artifacts/data
    assert main(["export", str(models[0]), "--to", "onnx", "--precision", "fp32", "--out", "b"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--parity-data SHARDS" in err


KILLED_EXPORT = """
import sys, time
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from fixtures import solid_image
from siglip2_sdk.core.checkpoint import load_checkpoint
from siglip2_sdk.export import writer
real = writer.write_manifest
def write_then_wait(folder, manifest):
    real(folder, manifest)
    Path(sys.argv[4]).touch()
    time.sleep(600)  # killed here: the new bundle is whole in staging, not yet in place
writer.write_manifest = write_then_wait
images = [solid_image((40 * i, 255 - 40 * i, 90)) for i in range(6)]
data = writer.ParityData(images, [str(i) for i in range(6)])
writer.export_bundle(load_checkpoint(sys.argv[1]), "ckpt", "onnx", "fp32", Path(sys.argv[2]), data)
"""


@pytest.mark.slow
def test_sigkill_during_export_keeps_the_old_bundle_and_the_next_export_cleans_up(
    models, parity_data, tmp_path
):
    before = export_bundle(load_checkpoint(models[0]), "ckpt", "onnx", "fp32", tmp_path, parity_data)
    ready = tmp_path.parent / f"{tmp_path.name}-ready"
    tests = str(Path(__file__).parent)
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, str(models[1]), str(tmp_path), tests, str(ready)]
    )
    deadline = time.time() + 300
    while not ready.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert ready.exists()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(list(tmp_path.glob(f"{STAGING_PREFIX}*"))) == 1  # the killed export's litter
    assert verify_bundle(before.folder).weights_digest == weights_digest(models[0])  # untouched
    export_bundle(load_checkpoint(models[1]), "ckpt", "onnx", "fp32", tmp_path, parity_data)
    assert [p.name for p in tmp_path.iterdir()] == [before.folder.name]
    assert verify_bundle(before.folder).weights_digest == weights_digest(models[1])
