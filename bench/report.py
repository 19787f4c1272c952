"""The report: report.json, report.md (one table per measurement) and two plots."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .machine import FMA_UNITS


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot_latency_vs_accuracy(report, out / "latency_vs_accuracy.png")
    plot_sizes(report, out / "size.png")


def _fmt(value, digits: int = 1, scale: float = 1.0) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _machine_line(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    rates = m["per_cycle_per_core"]
    return (
        f"{m['cpu']} ({m['architecture']}), {m['physical_cores']} physical cores of {m['logical_cpus']} "
        f"logical, {s['threads']} threads used; flags: {', '.join(m['flags']) or 'none of note'}; "
        f"{_fmt(m['clock_mhz'], 0)} MHz ({m['clock_source']}). Peak on all cores: fp32 "
        f"{_fmt(m['peak_fp32_gflops'])} GFLOP/s ({rates['fp32']} FLOP/cycle/core, {rates['vector_bits']}-bit "
        f"FMA x {FMA_UNITS}), int8 {_fmt(m['peak_int8_gops'])} GOP/s ({rates['int8']} OP/cycle/core, "
        f"{rates['int8_instructions']}).{_measured_line(m)}"
    )


def _measured_line(machine: dict) -> str:
    measured = machine.get("measured_peak")
    if not measured:
        return ""
    return (
        f" Measured on {measured['threads']} threads (best square GEMM of sizes "
        f"{', '.join(str(n) for n in measured.get('sizes', [measured.get('size')]))}, the peak "
        f"the compute table uses): fp32 {_fmt(measured['fp32_gflops'])} GFLOP/s (torch), int8 "
        f"{_fmt(measured['int8_gops'])} GOP/s (onnxruntime MatMulInteger)."
    )


def markdown(report: dict) -> str:
    s, model = report["settings"], report["model"]
    subjects = report["subjects"]
    parts = [
        "# siglip2-sdk bench\n",
        f"Made by {report['created_by']} on {report['created_at']}.\n",
        f"**Machine**: {_machine_line(report)}\n",
        "**Packages**: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + "\n",
        f"**Model**: `{model['checkpoint']}`: {model['flops_per_image'] / 1e9:.2f} GFLOP per image, "
        f"{model['flops_per_text'] / 1e9:.2f} GFLOP per text (matmuls, from the shape).\n",
        f"**Settings**: batch 1 timed {s['runs']}x and batch {s['batch_size']} timed {s['batch_runs']}x per "
        f"tower and model, interleaved (every round times every model once), after {s['warmup']} warm-up "
        f"calls each; inputs are real test images and captions.\n",
        _speed_section(subjects, s["batch_size"]),
        _compute_section(subjects, s["batch_size"]),
        _graphs_section(subjects),
        _size_section(subjects),
    ]
    if s["accuracy"] != "none":
        parts.append(_accuracy_section(report))
    parts.append(_index_section(subjects, s["batch_size"]))
    return "\n".join(parts)


def _speed_section(subjects: list[dict], batch: int) -> str:
    rows = []
    for x in subjects:
        sp, up = x["speed"], x["speedup_vs_baseline"] or {}
        rows.append([
            x["name"], x["status"],
            _fmt(sp["image"]["batch1_median_ms"]), _fmt(sp["image"]["batch1_p90_ms"]),
            _fmt(sp["image"]["batch_per_s"]), _fmt(up.get("image_batch1"), 2),
            _fmt(sp["text"]["batch1_median_ms"]), _fmt(sp["text"]["batch1_p90_ms"]),
            _fmt(sp["text"]["batch_per_s"]), _fmt(up.get("text_batch1"), 2),
        ])  # fmt: skip
    header = ["model", "gate", "image b1 median ms", "p90 ms", f"images/s at b{batch}", "image b1 speed-up",
              "text b1 median ms", "p90 ms", f"texts/s at b{batch}", "text b1 speed-up"]  # fmt: skip
    return "## Speed (speed-up: baseline's median latency / this one's)\n\n" + _table(header, rows)


def _compute_section(subjects: list[dict], batch: int) -> str:
    rows = []
    for x in subjects:
        c = x["compute"]
        rows.append([
            x["name"], f"{c['peak']} {c.get('peak_source', 'flags')} ({_fmt(c['peak_gops'])})",
            _fmt(c["image"]["gflops"]), _fmt(c["image"]["share_of_peak"], 1, 100),
            _fmt(c["text"]["gflops"]), _fmt(c["text"]["share_of_peak"], 1, 100),
            *(_fmt(c[tower].get("share_of_mix_peak"), 1, 100) for tower in ("image", "text")),
        ])  # fmt: skip
    header = ["model", "peak used (G/s)", "image GFLOP/s", "% of peak", "text GFLOP/s", "% of peak",
              "image % of its mix's peak", "text % of its mix's peak"]  # fmt: skip
    return (
        f"## Compute at batch {batch} against the peak of the cores in use\n\n" + _table(header, rows)
        + "\n*its mix's peak*: an int8 bundle's rate if its int8 FLOPs ran at the int8 peak and the rest "
        "at the fp32 peak (the share in int8 is in the next table).\n"
    )  # fmt: skip


def _graphs_section(subjects: list[dict]) -> str:
    rows = []
    for x in subjects:
        for tower, g in (x.get("graphs") or {}).items():
            partitions = "–" if g["partitions"] is None else str(g["partitions"])
            outside = "–" if g["outside"] is None else f"{g['outside']} of {g['ops']}"
            rows.append(
                [x["name"], tower, _fmt(g["gflop"], 2), _fmt(g["int8_share"], 0, 100), partitions, outside]
            )
    if not rows:
        return ""
    header = ["bundle", "tower", "GFLOP per example", "% of it in int8", "XNNPACK partitions", "ops outside"]
    note = (
        "Read from each tower's file (siglip2_sdk.bench.graphs): the matrix products' FLOPs (linear, "
        "matmul, convolution) and the share computed on int8 operands (int8 weights rebuilt as float "
        "count as float); the XNNPACK partitions the runtime runs the tower in (ExecuTorch: lowered into "
        "the file; LiteRT: made by the interpreter's default delegate at load; onnxruntime: none) and "
        "the operators left to the runtime's own kernels.\n"
    )
    return "## What each tower computes, and where\n\n" + _table(header, rows) + "\n" + note


def _size_section(subjects: list[dict]) -> str:
    rows = []
    for x in subjects:
        p, files = x["probe"], x["files_mb"]
        rows.append([
            x["name"], _fmt(x["size_mb"]), _fmt(files.get("image_model")), _fmt(files.get("text_model")),
            _fmt(p["first_load_s"], 2), _fmt(x["load_s"], 2), _fmt(p["first_call_s"] * 1000),
            _fmt(p["peak_rss_mb"], 0), _fmt(p["model_rss_mb"], 0),
        ])  # fmt: skip
    header = ["model", "size MB", "image MB", "text MB", "first load s", "load s", "first call ms",
              "peak RSS MB", "RSS added MB"]  # fmt: skip
    note = (
        "Measured in a fresh process per model: *first load* imports the runtime and loads the files "
        "(sha256 checked, sessions built); *peak RSS* is the process's high-water mark (VmHWM) after "
        "loading and embedding one batch of each tower, *RSS added* the part above the interpreter with "
        "siglip2-sdk imported. *load* is the load in the timing process (runtime imported, files read "
        "before). The baseline's size is its safetensors.\n"
    )
    return "## Size, load time, memory\n\n" + _table(header, rows) + "\n" + note


def _accuracy_section(report: dict) -> str:
    subjects, reference = report["subjects"], report["float_reference"]
    rows = []
    if reference is not None:
        float_row = ["float checkpoint (torch)", "1", "1", "1", "1"]
        float_row += [_fmt(reference["zero_shot_top1"], 1, 100), "", _fmt(reference["t2i_R@1"], 1, 100), ""]
        rows.append(float_row)
    for x in subjects:
        a = x["accuracy"]
        rows.append([
            x["name"], _fmt(a["image_cosine_min"], 4), _fmt(a["image_cosine_mean"], 4),
            _fmt(a["text_cosine_min"], 4), _fmt(a["text_cosine_mean"], 4),
            _fmt(a.get("zero_shot_top1"), 1, 100), _fmt(a.get("zero_shot_top1_delta_points"), 2),
            _fmt(a.get("t2i_R@1"), 1, 100), _fmt(a.get("t2i_R@1_delta_points"), 2),
        ])  # fmt: skip
    header = ["model", "image cos min", "image cos mean", "text cos min", "text cos mean",
              "zero-shot top-1 %", "Δ points", "t→i R@1 %", "Δ points"]  # fmt: skip
    title = (
        f"## Accuracy against the float checkpoint ({report['settings']['accuracy_examples']} test examples; "
        "cosine of each embedding with the float one; zero-shot: mean top-1 over the label sets)\n\n"
    )
    return title + _table(header, rows)


def _index_section(subjects: list[dict], batch: int) -> str:
    rows = []
    for x in subjects:
        i = x["index"]
        rows.append([x["name"], str(i["images"]), _fmt(i["seconds"], 2), _fmt(i["per_s"]),
                     _fmt(i["model_only_per_s"]), _fmt(i["ratio"], 1, 100)])  # fmt: skip
    header = ["model", "images", "seconds", "images/s", f"model-only images/s (b{batch})", "% of model-only"]
    return (
        "## End to end: PhotoIndex.add into a fresh index (read, hash, decode, resize, embed, commit)\n\n"
        + _table(header, rows)
    )


def _label(subject: dict) -> str:
    return f"{subject['runtime']} {subject['precision']}"


def plot_latency_vs_accuracy(report: dict, path: Path) -> None:
    """Image-tower latency at batch 1 against accuracy: t->i R@1 when measured, else mean image cosine."""
    from matplotlib.figure import Figure

    full = report["settings"]["accuracy"] == "full"
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for subject in report["subjects"]:
        accuracy = subject["accuracy"] or {}
        y = accuracy.get("t2i_R@1" if full else "image_cosine_mean")
        x = subject["speed"]["image"]["batch1_median_ms"]
        if y is None:
            continue
        y = 100 * y if full else y
        axes.scatter(x, y, s=40)
        axes.annotate(_label(subject), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if full and report["float_reference"] is not None:
        axes.axhline(100 * report["float_reference"]["t2i_R@1"], color="grey", linestyle="--", linewidth=1,
                     label="float checkpoint")  # fmt: skip
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xscale("log")
    axes.margins(x=0.25, y=0.15)  # room for the labels of the points at the edges
    axes.set_xlabel("image tower latency at batch 1, median (ms, log scale)")
    axes.set_ylabel("text→image R@1 (%)" if full else "mean image-embedding cosine with float")
    axes.set_title("latency vs accuracy")
    axes.grid(True, which="both", alpha=0.3)
    figure.savefig(path, dpi=120)


def plot_sizes(report: dict, path: Path) -> None:
    """Bundle size split into image tower, text tower and tokenizer."""
    from matplotlib.figure import Figure

    subjects = report["subjects"]
    figure = Figure(figsize=(7, 0.5 * len(subjects) + 1.5), layout="constrained")
    axes = figure.subplots()
    labels = [_label(s) for s in subjects]
    left = np.zeros(len(subjects))
    parts = {"image_model": "image tower", "text_model": "text tower", "tokenizer": "tokenizer",
             "weights": "checkpoint weights"}  # fmt: skip
    for role, name in parts.items():
        widths = np.array([s["files_mb"].get(role, 0.0) for s in subjects])
        if widths.any():
            axes.barh(labels, widths, left=left, label=name)
            left += widths
    axes.invert_yaxis()
    axes.set_xlabel("MB on disk")
    axes.set_title("size")
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=120)
