"""`run_bench`: measure every bundle and the baseline in one run and write the report."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from siglip2_sdk.core.checkpoint_config import read_config
from siglip2_sdk.core.config import tower_flops
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.evaluate import headline
from siglip2_sdk.core.hub import resolve_checkpoint
from siglip2_sdk.core.version import __version__
from siglip2_sdk.encoder import Encoder

from .accuracy import accuracies, measure_accuracy, retention
from .graphs import bundle_graphs
from .indexing import index_all
from .machine import machine_info, measured_peaks, package_versions
from .probe import probe_all
from .report import write_report
from .settings import BASELINES, BenchSettings
from .subjects import BASELINE_NAME, read_examples, subject_fields, subjects_to_measure
from .timing import compute_figures, speed_figures, time_subjects, timing_inputs


def run_bench(
    bundles: Sequence[str | os.PathLike],
    checkpoint: str,
    *,
    data: str,
    out: Path,
    images: Path | None = None,
    settings: BenchSettings | None = None,
    baseline: str = "transformers",
    progress: Callable[[Iterable, str], Iterable] = lambda iterable, description: iterable,
    log: Callable[[str], None] = lambda line: None,
) -> dict:
    """Measure every bundle (and the baseline) and write report.json, report.md and the plots into
    `out`. Returns the report."""
    settings = settings or BenchSettings()
    settings.check()
    if baseline not in BASELINES:
        raise Siglip2Error(f"--baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    if out.exists() and not out.is_dir():
        raise Siglip2Error(f"--out '{out}' is a file, not a folder")
    if images is not None and not images.is_dir():
        raise Siglip2Error(f"--images '{images}' is not a folder")
    checkpoint_dir = resolve_checkpoint(checkpoint)
    config = read_config(checkpoint_dir)
    subjects = subjects_to_measure([Path(b) for b in bundles], checkpoint_dir, config, baseline)
    machine = machine_info()
    threads = settings.threads or machine["physical_cores"]
    wanted = settings.examples and max(settings.examples, settings.index_images, settings.batch_size)
    examples = read_examples(data, wanted)
    accuracy_examples = examples[: settings.examples]
    log(f"measuring the CPU's fp32 and int8 GEMM peak on {threads} threads")
    machine["measured_peak"] = measured_peaks(threads)

    probes = probe_all(subjects, threads, settings, progress)
    log(f"loading {len(subjects)} models")
    load_s = {}
    for subject in subjects:
        start = time.perf_counter()
        subject.encoder = subject.open(threads)
        load_s[subject.name] = time.perf_counter() - start
    inputs = {s.name: timing_inputs(s.encoder, examples, settings.batch_size) for s in subjects}
    times = time_subjects(subjects, inputs, settings, progress)
    speed = {s.name: speed_figures(times[s.name], settings.batch_size) for s in subjects}
    reference, accuracy = None, {}
    if settings.accuracy != "none":
        log(f"accuracy of the float checkpoint on {len(accuracy_examples)} test examples")
        reference = measure_accuracy(
            Encoder.load(checkpoint_dir, threads=threads), accuracy_examples, settings.accuracy,
            settings.batch_size,
        )  # fmt: skip
        measured = accuracies(subjects, data, wanted, accuracy_examples, settings, progress)
        accuracy = {name: retention(figures, reference) for name, figures in measured.items()}
    index = index_all(subjects, examples, images, speed, settings, progress)

    flops = tower_flops(config)
    report = {
        "created_by": f"siglip2-sdk {__version__}",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {**asdict(settings), "threads": threads, "baseline": baseline, "data": data,
                     "accuracy_examples": len(accuracy_examples), "images": str(images) if images else None},
        "machine": machine,
        "versions": package_versions(),
        "model": {"checkpoint": str(checkpoint_dir), "config": config.to_dict(),
                  "flops_per_image": flops["image"], "flops_per_text": flops["text"]},
        "float_reference": _reference_summary(reference),
        "subjects": [],
    }  # fmt: skip
    base = speed.get(BASELINE_NAME)
    for subject in subjects:
        entry = subject_fields(subject)
        entry |= {"size_mb": sum(subject.files_mb.values()), "probe": probes[subject.name]}
        entry["load_s"] = load_s[subject.name]
        entry |= {"speed": speed[subject.name], "index": index[subject.name]}
        entry["graphs"] = bundle_graphs(Path(subject.path), log) if subject.kind == "bundle" else None
        shares = {tower: graph["int8_share"] for tower, graph in (entry["graphs"] or {}).items()}
        entry["compute"] = compute_figures(
            speed[subject.name], flops, subject.precision, machine, threads, shares
        )
        entry["accuracy"] = accuracy.get(subject.name)
        entry["speedup_vs_baseline"] = _speedup(speed[subject.name], base) if base else None
        report["subjects"].append(entry)
    write_report(report, out)
    return report


def _reference_summary(reference: dict | None) -> dict | None:
    if reference is None or reference["results"] is None:
        return None
    return {**headline(reference["results"]), "evaluation": reference["results"]}


def _speedup(speed: dict, base: dict) -> dict:
    figures = {}
    for tower in ("image", "text"):
        figures[f"{tower}_batch1"] = base[tower]["batch1_median_ms"] / speed[tower]["batch1_median_ms"]
        figures[f"{tower}_batch"] = speed[tower]["batch_per_s"] / base[tower]["batch_per_s"]
    return figures
