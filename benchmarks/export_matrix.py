"""Export matrix (issue #5): the B/32 shape exported to every runtime x precision the exporter offers,
each by `siglip2-sdk export` in its own process, with the bundle size, the export's wall time and peak
memory, and the parity figures its gate measured.

    python benchmarks/export_matrix.py [--out artifacts/bench/b32-bundles]

The B/32 checkpoint is random-init (built once into artifacts/bench/b32-random): weights change neither
export time, size nor memory. Its rankings are noise, so the gate's top-1 agreement is not held (0);
the cosine gate stays. Writes benchmarks/results/export_matrix.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from siglip2_sdk.bench import machine_info, package_versions
from siglip2_sdk.core.bundle import read_manifest
from siglip2_sdk.core.errors import Siglip2Error

ARTIFACTS = Path("artifacts/bench")
CHECKPOINT = ARTIFACTS / "b32-random"
BUNDLES = ARTIFACTS / "b32-bundles"
RESULTS = Path(__file__).parent / "results"
PARITY_EXAMPLES = 64  # held-out test examples the gate compares on
CALIBRATION_EXAMPLES = 32

# Run in the export's own interpreter: its peak RSS (VmHWM) as the last line of stdout. Not the
# parent's RUSAGE_CHILDREN: Linux carries the parent's high-water mark into a forked child across exec.
CHILD = """
import sys
from pathlib import Path
from siglip2_sdk.cli import main
code = main(sys.argv[1:])
status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
print("peak_rss_mb", int(status["VmHWM"].split()[0]) / 1024)
sys.exit(code)
"""


def ensure_checkpoint(folder: Path = CHECKPOINT, log=print) -> Path:
    """A random-init B/32@256 checkpoint with the Gemma tokenizer, built once (its weights do not
    change speed, size or memory)."""
    if (folder / "config.json").is_file():
        return folder
    from siglip2_sdk.core.assets import fetch_gemma_tokenizer
    from siglip2_sdk.core.checkpoint import save_checkpoint
    from siglip2_sdk.core.config import preset
    from siglip2_sdk.core.model import build_model

    log(f"building a random-init B/32 checkpoint in {folder}")
    start = time.perf_counter()
    save_checkpoint(build_model(preset("b32"), seed=0), folder, tokenizer_file=fetch_gemma_tokenizer())
    log(f"  {time.perf_counter() - start:.0f} s")
    return folder


def targets(only: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(--to, precision, runtime) for everything the exporter offers today, or for the `only` ones
    (each "TO:PRECISION", as `export --to TO --precision PRECISION` takes them)."""
    from siglip2_sdk.export.writer import PRECISIONS, TARGETS

    offered = [
        (to, precision, TARGETS[to][0]) for to, precisions in PRECISIONS.items() for precision in precisions
    ]
    if only is None:
        return offered
    unknown = set(only) - {f"{to}:{precision}" for to, precision, _ in offered}
    if unknown:
        raise Siglip2Error(
            f"not an export target: {', '.join(sorted(unknown))} (TO:PRECISION, e.g. onnx:int8)"
        )
    return [target for target in offered if f"{target[0]}:{target[1]}" in only]


def bundle_folder(out: Path, runtime: str, precision: str) -> Path | None:
    """The bundle for a target in `out` (which holds one checkpoint's bundles), None when not there."""
    found = [f for f in sorted(out.glob(f"*-{runtime}-{precision}")) if (f / "manifest.json").is_file()]
    return found[0] if found else None


def export_one(
    checkpoint: Path,
    to: str,
    precision: str,
    out: Path,
    data: Path,
    min_agreement: float = 0.0,
    parity_examples: int = PARITY_EXAMPLES,
) -> dict:
    """Run `siglip2-sdk export` for one target in a fresh interpreter; its wall time and peak RSS.
    The gate's agreement is not held by default: a random model's rankings are noise."""
    command = [
        sys.executable, "-c", CHILD, "export", str(checkpoint), "--to", to, "--precision", precision,
        "--out", str(out), "--parity-data", str(data / "test-*.tar"),
        "--parity-examples", str(parity_examples), "--calibration-data", str(data / "val-*.tar"),
        "--calibration-examples", str(CALIBRATION_EXAMPLES), "--min-agreement", str(min_agreement),
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    last = done.stdout.strip().splitlines()[-1:] or [""]
    # Exit 1 is a bundle the gate refused: written all the same, and part of the matrix.
    if done.returncode not in (0, 1) or not last[0].startswith("peak_rss_mb"):
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Siglip2Error(f"export {to} {precision} failed (exit {done.returncode}): {error}")
    return {"export_s": seconds, "peak_rss_mb": float(last[0].split()[1]), "exit_code": done.returncode}


def row(folder: Path, to: str, precision: str, figures: dict | None) -> dict:
    """One line of the matrix: what the manifest says plus the export's own figures (None: reused)."""
    manifest = read_manifest(folder)
    files = {role: entry.bytes / 2**20 for role, entry in manifest.files.items()}
    return {
        "to": to,
        "runtime": manifest.runtime,
        "precision": precision,
        "quantization": manifest.quantization,
        "bundle": str(folder),
        "size_mb": sum(files.values()),
        "files_mb": files,
        "status": manifest.status,
        "parity": {k: v for k, v in manifest.parity.items() if k != "thresholds"},
        **(figures or {"export_s": None, "peak_rss_mb": None, "exit_code": None}),
    }


def export_all(
    checkpoint: Path,
    out: Path,
    data: Path,
    reuse: bool,
    min_agreement: float = 0.0,
    log=print,
    only: list[str] | None = None,
    parity_examples: int = PARITY_EXAMPLES,
) -> list[dict]:
    """Every target (or the `only` ones) exported, or with `reuse` kept when its bundle is already in
    `out`."""
    rows = []
    for to, precision, runtime in targets(only):
        folder = bundle_folder(out, runtime, precision)
        if reuse and folder is not None:
            log(f"reusing {folder}")
            rows.append(row(folder, to, precision, None))
            continue
        log(f"exporting {checkpoint} to {to} {precision} (its own process)")
        figures = export_one(checkpoint, to, precision, out, data, min_agreement, parity_examples)
        log(f"  {figures['export_s']:.0f} s, peak {figures['peak_rss_mb']:.0f} MB")
        rows.append(row(bundle_folder(out, runtime, precision), to, precision, figures))
    return rows


def merge(rows: list[dict], previous: Path) -> list[dict]:
    """Keep the export figures of an earlier run for bundles reused this time, and the earlier run's
    rows, marked as such, for targets this run left out."""
    if not previous.is_file():
        return rows
    before = {(r["runtime"], r["precision"]): r for r in json.loads(previous.read_text())["rows"]}
    current_rows = {(r["runtime"], r["precision"]): r for r in rows}
    merged = []
    for _, precision, runtime in targets():
        current, old = current_rows.get((runtime, precision)), before.get((runtime, precision))
        if current is None:
            if old is not None:
                merged.append({**old, "earlier_run": True})
            continue
        if current["export_s"] is None and old is not None and old["bundle"] == current["bundle"]:
            current = {**current, **{k: old[k] for k in ("export_s", "peak_rss_mb", "exit_code")}}
        merged.append(current)
    return merged


def markdown(rows: list[dict], machine: dict) -> str:
    lines = [
        "# Export matrix: B/32@256 (random init), every runtime x precision\n",
        f"Machine: {machine['cpu']}, {machine['physical_cores']} cores. Each export is one "
        "`siglip2-sdk export` command in its own process: wall time includes starting Python, loading "
        f"the checkpoint, the float reference and the parity gate on {PARITY_EXAMPLES} held-out examples; "
        "peak RSS is that process's high-water mark (VmHWM). Parity: embedding cosine with the float "
        "model (agreement is not gated: a random model's rankings are noise). Rows marked * were measured by "
        "an earlier run, on the code of that day, and left out of the last one (b32.py --only).\n",
        "| bundle | quantization | size MB | image MB | text MB | export s | peak RSS MB | gate | "
        "image cos min | text cos min |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        p, f = r["parity"], r["files_mb"]
        export = "–" if r["export_s"] is None else f"{r['export_s']:.0f}"
        peak = "–" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        earlier = " *" if r.get("earlier_run") else ""
        lines.append(
            f"| {r['runtime']} {r['precision']}{earlier} | {r['quantization']} | {r['size_mb']:.1f} | "
            f"{f['image_model']:.1f} | {f['text_model']:.1f} | {export} | {peak} | {r['status']} | "
            f"{p.get('image_cosine_min', float('nan')):.5f} | {p.get('text_cosine_min', float('nan')):.5f} |"
        )
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict], results: Path = RESULTS) -> None:
    results.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    rows = merge(rows, results / "export_matrix.json")
    report = {"machine": machine, "versions": package_versions(), "rows": rows}
    (results / "export_matrix.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "export_matrix.md").write_text(markdown(rows, machine))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=BUNDLES, help="where the bundles go")
    parser.add_argument("--data", type=Path, default=Path("artifacts/data"), help="the demo corpus")
    parser.add_argument("--reuse", action="store_true", help="keep bundles already exported")
    args = parser.parse_args()
    try:
        checkpoint = ensure_checkpoint()
        rows = export_all(checkpoint, args.out, args.data, args.reuse)
    except Siglip2Error as exc:
        sys.exit(f"export_matrix: error: {exc}")
    write_results(rows)
    print((RESULTS / "export_matrix.md").read_text())


if __name__ == "__main__":
    main()
