"""ONNX's precisions side by side (issue #17): what each keeps of the float model on the demo student
(the parity gate's figures) and what it costs on the B/32@256 shape (batch-1 latency against
transformers eager fp32, one interleaved `siglip2-sdk bench` run).

    python benchmarks/onnx_int8.py [--student artifacts/student/final] [--data artifacts/data]

Bundles go to artifacts/onnx-int8 (reused when there). Writes benchmarks/results/onnx_int8.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from export_matrix import ARTIFACTS as BENCH_ARTIFACTS
from export_matrix import RESULTS, bundle_folder, ensure_checkpoint, export_one

from siglip2_sdk.bench import BenchSettings, machine_info, run_bench
from siglip2_sdk.cli.demo_jobs import PARITY_EXAMPLES  # what `make demo` gates on
from siglip2_sdk.core.bundle import read_manifest

OUT = Path("artifacts/onnx-int8")
PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic")
SPEED = BenchSettings(runs=12, batch_runs=1, warmup=2, accuracy="cosine", examples=16, index_images=8)


def export(checkpoint: Path, out: Path, data: Path, examples: int, min_agreement: float) -> dict[str, Path]:
    """One bundle per precision (an existing one is reused), by the CLI as a user runs it."""
    folders = {}
    for precision in PRECISIONS:
        if bundle_folder(out, "onnxruntime", precision) is None:
            print(f"exporting {checkpoint} to onnx {precision}", flush=True)
            export_one(checkpoint, "onnx", precision, out, data, min_agreement, parity_examples=examples)
        folders[precision] = bundle_folder(out, "onnxruntime", precision)
    return folders


def gate_figures(folder: Path) -> dict:
    manifest = read_manifest(folder)
    towers_mb = sum(f.bytes for role, f in manifest.files.items() if role.endswith("_model")) / 2**20
    return {"status": manifest.status, "towers_mb": towers_mb, **manifest.parity}


def markdown(rows: list[dict], machine: dict, baseline: dict) -> str:
    lines = [
        "# ONNX precisions: accuracy on the demo student, speed on B/32@256\n",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('physical_cores', '?')} cores. "
        f"`python benchmarks/onnx_int8.py`. Demo student: the parity gate on {PARITY_EXAMPLES} "
        "held-out test pairs (cosine >= 0.99, top-1 agreement >= 0.98 both ways). B/32: random-init, "
        "batch 1, one interleaved run against transformers' eager fp32 "
        f"({baseline['image_ms']:.1f} ms image, {baseline['text_ms']:.1f} ms text).\n",
        "| precision | scheme | demo: cosine min image / text | demo: agreement t→i / i→t | demo gate "
        "| B/32 towers MB | B/32 image ms | B/32 text ms | speed-up image / text |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        demo, b32 = row["demo"], row["b32"]
        lines.append(
            f"| {row['precision']} | {row['scheme']} "
            f"| {demo['image_cosine_min']:.4f} / {demo['text_cosine_min']:.4f} "
            f"| {demo['t2i_top1_agreement']:.3f} / {demo['i2t_top1_agreement']:.3f} | {demo['status']} "
            f"| {b32['towers_mb']:.0f} | {b32['image_ms']:.1f} | {b32['text_ms']:.1f} "
            f"| {baseline['image_ms'] / b32['image_ms']:.2f} / {baseline['text_ms'] / b32['text_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, default=Path("artifacts/student/final"))
    parser.add_argument("--data", type=Path, default=Path("artifacts/data"))
    args = parser.parse_args()
    demo = export(args.student, OUT / "demo", args.data, PARITY_EXAMPLES, 0.98)
    # A random model's rankings are noise: its gate holds the cosine only (as export_matrix.py does).
    b32 = export(ensure_checkpoint(BENCH_ARTIFACTS / "b32-random"), OUT / "b32", args.data, 16, 0.0)
    report = run_bench(
        [b32[p] for p in PRECISIONS], str(BENCH_ARTIFACTS / "b32-random"), data=str(args.data / "test-*.tar"),
        out=OUT / "bench", settings=SPEED, log=print,
    )  # fmt: skip
    speed = {s["name"]: s["speed"] for s in report["subjects"]}
    baseline = next(s["speed"] for s in report["subjects"] if s["kind"] == "baseline")
    rows = []
    for precision in PRECISIONS:
        measured = speed[b32[precision].name]
        rows.append(
            {
                "precision": precision,
                "scheme": read_manifest(b32[precision]).quantization,
                "demo": gate_figures(demo[precision]),
                "b32": {
                    **gate_figures(b32[precision]),
                    "image_ms": measured["image"]["batch1_median_ms"],
                    "text_ms": measured["text"]["batch1_median_ms"],
                },
            }
        )
    base = {
        "image_ms": baseline["image"]["batch1_median_ms"],
        "text_ms": baseline["text"]["batch1_median_ms"],
    }
    machine = machine_info()
    (RESULTS / "onnx_int8.json").write_text(
        json.dumps({"machine": machine, "baseline": base, "rows": rows}, indent=2)
    )
    (RESULTS / "onnx_int8.md").write_text(markdown(rows, machine, base))
    print(markdown(rows, machine, base))


if __name__ == "__main__":
    main()
