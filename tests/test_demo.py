"""`make demo` (`siglip2-sdk demo`) end to end on tiny stand-ins: every step leaves its artifact, the
summary names every model, search works, and a second run skips every step.

The real recipes take ~20 minutes; here the corpus comes from the fake sources in fixtures.py, the
teacher and the student are the `tiny` preset trained for a few steps with the tiny tokenizer, and
the fast test exports ONNX only (fp32, and int8, which a random tiny model fails the gate with: the
demo must still finish). The slow test runs the full export matrix.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from siglip2_sdk import Encoder, PhotoIndex
from siglip2_sdk.cli import demo, main
from siglip2_sdk.core.bundle import read_manifest
from siglip2_sdk.data import build
from siglip2_sdk.data.debian import PackageRoot
from siglip2_sdk.distill import recipes
from siglip2_sdk.export import writer
from siglip2_sdk.export.parity import Thresholds
from siglip2_sdk.export.writer import PRECISIONS, TARGETS

from fixtures import SOURCES, write_tiny_tokenizer

TINY_TRAINING = dict(student="tiny", steps=3, batch_size=8, warmup_steps=1, threads=1)
TINY_TEACHER = dict(TINY_TRAINING, lr=1e-3)
TINY_STUDENT = dict(TINY_TRAINING, select="acid", filter_ratio=0.5, chunks=2, kd_weight=1.0, save_every=2)
FAST_EXPORTS = [("onnx", "fp32"), ("onnx", "int8")]


@pytest.fixture
def tiny_demo(tmp_path, monkeypatch):
    """The demo's recipes swapped for tiny ones; nothing leaves tmp_path, nothing is downloaded."""
    monkeypatch.setenv("SIGLIP2_SDK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")  # the summary table unwrapped, so each row reads whole
    monkeypatch.setattr(build, "default_sources", lambda: SOURCES[:2])
    monkeypatch.setattr(build, "locate_package", lambda package: PackageRoot(package, "1", tmp_path))
    # The tiny preset's vocabulary is 1000 tokens: the 256k Gemma tokenizer would not fit it.
    tokenizer = write_tiny_tokenizer(tmp_path / "tokenizer.json")
    monkeypatch.setattr(recipes, "fetch_gemma_tokenizer", lambda: tokenizer)
    monkeypatch.setattr(recipes, "DEMO_TEACHER", TINY_TEACHER)
    monkeypatch.setattr(demo, "STUDENT", TINY_STUDENT)
    return tmp_path / "artifacts"


def run(out: Path, capsys) -> tuple[str, float]:
    started = time.perf_counter()
    assert main(["demo", "--out", str(out)]) == 0
    return capsys.readouterr().out, time.perf_counter() - started


def summary_rows(output: str) -> dict[str, str]:
    """The summary table's rows by model name (the table printed last)."""
    table = output[output.rindex("demo: test split") :]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if len(cells) > 1 and cells[0]:
            rows[cells[0]] = line
    return rows


def artifact_times(out: Path) -> dict[Path, int]:
    """mtime of every artifact a step writes: bundle manifests, evaluations, the student, the catalog."""
    files = [
        *out.glob("bundles/*/manifest.json"),
        *out.glob("eval/*.json"),
        out / "student" / "final" / "model.safetensors",
        out / "data" / "stats.json",
        out / "photos" / "captions.json",
    ]
    return {path: path.stat().st_mtime_ns for path in files}


def check_demo(out: Path, exports: list[tuple[str, str]], capsys) -> None:
    first, first_seconds = run(out, capsys)

    bundles = sorted(out.glob("bundles/*"))
    assert len(bundles) == len(exports)
    manifests = {bundle.name: read_manifest(bundle) for bundle in bundles}
    assert {(m.runtime, m.precision) for m in manifests.values()} == {
        (TARGETS[to][0], precision) for to, precision in exports
    }
    rows = summary_rows(first)
    assert {"teacher", "student", *manifests} <= set(rows), f"summary rows: {sorted(rows)}"
    for name, manifest in manifests.items():
        assert manifest.status in rows[name]
        # Readers refuse a bundle that failed its gate, so the demo lists it without measuring it.
        assert (out / "eval" / f"{name}.json").is_file() == (manifest.status == "ok")
    assert json.loads((out / "eval" / "student.json").read_text())["t2i_R@1"] >= 0.0

    photos = sorted(p for p in (out / "photos").iterdir() if p.name != "captions.json")
    assert photos
    indexed_with = re.search(r"bundle: (\S+) \(", first).group(1)
    assert manifests[indexed_with].status == "ok"
    with PhotoIndex.open(out / "index", Encoder.load(out / "bundles" / indexed_with)) as index:
        hits = index.search("shape 3", k=len(photos))
    assert sorted(Path(hit.path).name for hit in hits) == [photo.name for photo in photos]

    before = artifact_times(out)
    second, second_seconds = run(out, capsys)
    assert artifact_times(out) == before
    for skipped in ("up to date (skipped)", "already distilled (skipped)", "already exported (skipped)"):
        assert skipped in second
    assert "training one" not in second  # the teacher came from the cache
    assert f"0 added, {len(photos)} unchanged" in second
    assert set(summary_rows(second)) == set(rows)
    assert second_seconds < first_seconds / 2, (
        f"second run {second_seconds:.0f} s, first {first_seconds:.0f} s"
    )


def test_demo_runs_every_step_then_skips_them_all(tiny_demo, monkeypatch, capsys):
    monkeypatch.setattr(demo, "EXPORTS", FAST_EXPORTS)
    # In this process, where the patch below applies (make demo exports in worker processes: the slow
    # test runs that way).
    monkeypatch.setattr(demo, "EXPORT_PROCESSES", 1)
    # An int8 bundle that fails its gate must not stop the demo, whatever this tiny model's int8 error
    # happens to be: an unreachable threshold makes the failure certain.
    export_bundle = writer.export_bundle

    def int8_always_fails(model, model_id, to, precision, *args, **kwargs):
        if precision == "int8":
            kwargs["thresholds"] = Thresholds(cosine_min=1.01)
        return export_bundle(model, model_id, to, precision, *args, **kwargs)

    monkeypatch.setattr(writer, "export_bundle", int8_always_fails)
    check_demo(tiny_demo, FAST_EXPORTS, capsys)
    failed = read_manifest(tiny_demo / "bundles" / "siglip2-demo-student-onnxruntime-int8")
    assert failed.status == "failed"


@pytest.mark.slow
def test_demo_with_the_full_export_matrix(tiny_demo, capsys):
    offered = [(to, precision) for to, precision in demo.EXPORTS if precision in PRECISIONS[to]]
    check_demo(tiny_demo, offered, capsys)
