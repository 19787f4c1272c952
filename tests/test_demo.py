"""`make demo` (`siglip2-sdk demo`) end to end on tiny stand-ins: every step leaves its artifact, the
summary names every model, search works, and a second run skips every step.

The real recipes take ~20 minutes; here the corpus comes from the fake sources in fixtures.py, the
teacher and the student are the `tiny` preset trained for a few steps with the tiny tokenizer, and
the fast test exports ONNX only (fp32, and int8, which a random tiny model fails the gate with: the
demo must still finish). The slow test runs the full export matrix.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from pathlib import Path

import pytest

from siglip2_sdk import Encoder, PhotoIndex
from siglip2_sdk.cli import demo, demo_jobs, main
from siglip2_sdk.core.bundle import read_manifest
from siglip2_sdk.core.shards import Example
from siglip2_sdk.core.workers import spawned_pool
from siglip2_sdk.data import build
from siglip2_sdk.data.debian import PackageRoot
from siglip2_sdk.distill import recipes
from siglip2_sdk.export import writer
from siglip2_sdk.export.parity import Thresholds
from siglip2_sdk.export.writer import PRECISIONS, TARGETS

from fixtures import SOURCES, noisy_setup, write_tiny_tokenizer

TINY_TRAINING = dict(student="tiny", steps=3, batch_size=8, warmup_steps=1, threads=1)
TINY_TEACHER = dict(TINY_TRAINING, lr=1e-3)
# As the demo's own student, started from some of the teacher's blocks (the tiny one has 2).
TINY_STUDENT = dict(
    TINY_TRAINING,
    init="teacher",
    init_layers="1",
    select="acid",
    filter_ratio=0.5,
    chunks=2,
    kd_weight=1.0,
    label_captions=0.5,
    save_every=2,
)
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


LANGUAGE_TABLE = "text→image R@1 in % by caption language"


def table_rows(output: str, title: str, end: str) -> dict[str, list[str]]:
    """The cells of each row, by its first, of the last table titled `title` (up to `end`)."""
    table = output[output.rindex(title) :]
    rows = {}
    for line in table[: table.index(end)].splitlines():
        cells = [cell.strip() for cell in re.split("[│┃]", line.strip("│┃ "))]
        if len(cells) > 1 and cells[0]:
            rows[cells[0]] = cells
    return rows


def summary_rows(output: str) -> dict[str, str]:
    """The summary table's rows by model name, each as one line."""
    return {
        name: " │ ".join(cells)
        for name, cells in table_rows(output, "demo: test split", LANGUAGE_TABLE).items()
    }


def language_rows(output: str) -> dict[str, list[str]]:
    """The per-language table's cells by model name (and "chance"), the header's under "model"."""
    return table_rows(output, LANGUAGE_TABLE, "artifacts:")


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
        parity = manifest.parity
        # Every bundle's gate figures are in the summary, the refused ones' too.
        assert f"{parity['t2i_top1_agreement']:.3f}/{parity['i2t_top1_agreement']:.3f}" in rows[name]
        # Readers refuse a bundle that failed its gate, so the demo lists it without measuring it.
        assert (out / "eval" / f"{name}.json").is_file() == (manifest.status == "ok")
    student = json.loads((out / "eval" / "student.json").read_text())
    assert student["t2i_R@1"] >= 0.0
    check_language_table(first, student, {"teacher", "student", *manifests})
    assert f"the libraries' own output (exporters, runtimes) goes to {out / 'logs' / 'demo.log'}" in first
    assert "worker started: _evaluation_setup" in (out / "logs" / "demo.log").read_text()

    photos = sorted(p for p in (out / "photos").iterdir() if p.name != "captions.json")
    assert photos
    indexed_with = re.search(r"bundle: (\S+) \(", first).group(1)
    assert manifests[indexed_with].status == "ok"
    with PhotoIndex.open(out / "index", Encoder.load(out / "bundles" / indexed_with)) as index:
        hits = index.search("shape 3", k=len(photos))
    assert sorted(Path(hit.path).name for hit in hits) == [photo.name for photo in photos]
    captions = json.loads((out / "photos" / "captions.json").read_text())
    check_photo_names(captions)
    check_searches(first, out, captions, indexed_with, capsys)

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


def check_language_table(output: str, results: dict, models: set[str]) -> None:
    """R@1 overall and per query language beside chance: a column per language, a row per model."""
    rows = language_rows(output)
    assert rows["model"] == ["model", "all", *demo.QUERY_LANGUAGES]
    assert models | {"chance"} <= set(rows)
    for language, cell in zip(rows["model"][1:], rows["student"][1:], strict=True):
        measured = results["full"]["retrieval"].get(language)
        assert cell == (f"{100 * measured['text_to_image']['R@1']:.1f}" if measured else "-")
        # A random ranking finds one of at least one right photo among its images.
        assert (rows["chance"][rows["model"].index(language)] == "-") == (measured is None)
        if measured:
            assert float(rows["chance"][rows["model"].index(language)]) >= 100 / measured["images"] - 0.005


def check_photo_names(captions: dict[str, dict[str, str]]) -> None:
    """Each photo is named by its source, its English caption and its key: readable and unique."""
    for name, by_language in captions.items():
        words = re.sub(r"[^a-z0-9]+", "-", by_language["en"].lower()).strip("-")
        assert re.fullmatch(rf"(shapes|big)-{words}-[0-9a-f]{{8}}\.png", name), name


def check_searches(output: str, out: Path, captions: dict, bundle: str, capsys) -> None:
    """Each query's top hits with their own captions, in the demo's table, its page and `search`."""
    queries = demo._queries(captions)
    assert queries
    page = (out / "search.html").read_text()
    assert f"these searches with their photos: {out / 'search.html'}" in output
    with PhotoIndex.open(out / "index", Encoder.load(out / "bundles" / bundle)) as index:
        for language, query, _ in queries:
            hits = index.search(query, k=demo.TOP_HITS)
            for hit in hits:
                caption = captions[Path(hit.path).name]["en"]
                assert f"{hit.score:.3f} {caption}" in output
                assert f"{hit.score:.3f} {caption}</figcaption>" in page
            assert f"<h2>{language}: {query} (its photo " in page
    sheet = out / "sheet.html"
    assert main(["search", query, "--index", str(out / "index"), "-k", "3", "--html", str(sheet)]) == 0
    printed = capsys.readouterr().out
    for hit in hits:
        caption = captions[Path(hit.path).name]["en"]
        assert caption in printed and f"{hit.score:.3f} {caption}</figcaption>" in sheet.read_text()


def test_retrieval_chance_counts_every_right_photo_of_a_caption():
    captions = [{"en": "a", "de": "x"}, {"en": "a", "de": "y"}, {"en": "b"}, {"en": "c"}]
    examples = [Example(str(i), b"", "png", by_language) for i, by_language in enumerate(captions)]
    chance = demo._retrieval_chance(examples)
    # en: "a" has 2 right photos of 4, "b" and "c" 1 each; de: 1 of the 2 photos with a German caption.
    assert chance["en"] == pytest.approx(100 * statistics.mean([2 / 4, 1 / 4, 1 / 4]))
    assert chance["de"] == pytest.approx(50.0)
    assert chance["all"] == pytest.approx(100 * statistics.mean([2 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4]))


def test_photo_names_are_readable_safe_and_unique():
    twins = [Example(key, b"", "png", {"en": "A red/apple: \"big\" & <shiny>!"}, meta={"source": "Open Clip"})
             for key in ("abcdef0123", "abcdef0199")]  # fmt: skip
    first = demo._photo_name(twins[0])
    assert first == "open-clip-a-red-apple-big-shiny-abcdef01.png"
    assert demo._photo_name(twins[1], len(twins[1].key)) != first
    long = Example("ff" * 16, b"", "jpg", {"de": "x" * 100, "en": "word " * 30})
    assert demo._photo_name(long) == f"{('word-' * 8).strip('-')}-ffffffff.jpg"


def test_worker_output_goes_to_the_log_not_the_terminal(tmp_path, capfd):
    log = tmp_path / "logs" / "demo.log"
    log.parent.mkdir()
    with spawned_pool(1, demo_jobs._logged, str(log), noisy_setup, "library noise") as pool:
        assert pool.submit(os.getpid).result() != os.getpid()
    out, err = capfd.readouterr()
    assert "library noise" not in out + err
    logged = log.read_text()
    for how in ("on fd 1", "on fd 2", "from print", "as a warning", "from absl"):
        assert f"library noise {how}" in logged
    assert "worker started: noisy_setup" in logged


def test_demo_runs_every_step_then_skips_them_all(tiny_demo, monkeypatch, capsys):
    monkeypatch.setattr(demo, "EXPORTS", FAST_EXPORTS)
    # In this process, where the patch below applies (make demo exports in worker processes: the slow
    # test runs that way).
    monkeypatch.setattr(demo, "EXPORT_PROCESSES", 0)
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

    # The photos as an earlier version left them, named by their keys, are written again.
    photos = tiny_demo / "photos"
    readable = json.loads((photos / "captions.json").read_text())
    key_named = {f"{name[-12:-4] * 4}.png": by_language for name, by_language in readable.items()}
    for name, old in zip(readable, key_named, strict=True):
        (photos / name).rename(photos / old)
    (photos / "captions.json").write_text(json.dumps(key_named))
    output, _ = run(tiny_demo, capsys)
    assert json.loads((photos / "captions.json").read_text()) == readable
    assert sorted(p.name for p in photos.iterdir()) == sorted([*readable, "captions.json"])
    assert f"{len(readable)} added, 0 unchanged" in output


@pytest.mark.slow
def test_demo_with_the_full_export_matrix(tiny_demo, capsys):
    offered = [(to, precision) for to, precision in demo.EXPORTS if precision in PRECISIONS[to]]
    check_demo(tiny_demo, offered, capsys)
