"""How much the parity gate's verdict on a bundle is the bundle's and how much the sample's: each bundle of
one checkpoint run on its whole held-out test split, then the gate (export/parity.py) applied to many
random samples of the size `make demo` gates on, beside the agreement on the whole split and the noise
the bundle adds to the similarity scores.

    python benchmarks/parity_gate.py BUNDLE_OR_FOLDER... [--student artifacts/student/final]
        [--data artifacts/data] [--samples 400] [--size 256]

A folder stands for the bundles in it; only bundles of `--student` (same weights digest) are measured.
Writes benchmarks/results/parity_gate.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from siglip2_sdk.bench import machine_summary
from siglip2_sdk.cli.demo_jobs import PARITY_EXAMPLES
from siglip2_sdk.core.bundle import read_manifest
from siglip2_sdk.core.checkpoint import load_checkpoint
from siglip2_sdk.core.digest import weights_digest
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.export.parity import Thresholds, failures, measure
from siglip2_sdk.export.writer import bundle_embeddings, float_embeddings, parity_data_from_shards

RESULTS = Path(__file__).parent / "results"


def bundle_folders(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if (path / "manifest.json").is_file():
            found.append(path)
        else:
            found += sorted(p for p in path.iterdir() if (p / "manifest.json").is_file())
    return found


def runner_up_margins(scores: np.ndarray) -> np.ndarray:
    """Per query row: how far the best item's score is above the second best's."""
    top = np.sort(scores, axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


def measure_bundle(reference, candidate, gated: np.ndarray, samples: list[np.ndarray]) -> dict:
    """The gate's figures (export/parity.py `measure`) on the `gated` pairs and on the whole split, how
    often the gate passes on each of `samples`, and the noise the bundle adds to the scores."""

    def rows(pair: tuple[np.ndarray, np.ndarray], picked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pair[0][picked], pair[1][picked]

    passed, flips = 0, []
    for picked in samples:
        figures = measure(rows(reference, picked), rows(candidate, picked))
        passed += not failures(figures, Thresholds())
        flips.append((2 - figures["t2i_top1_agreement"] - figures["i2t_top1_agreement"]) * len(picked))
    gate, whole = measure(rows(reference, gated), rows(candidate, gated)), measure(reference, candidate)
    (ref_image, ref_text), (cand_image, cand_text) = reference, candidate
    return {
        "gate_sample_agreement": (gate["t2i_top1_agreement"], gate["i2t_top1_agreement"]),
        "pass_rate": passed / len(samples),
        "changed_answers_per_sample": float(np.mean(flips)),
        "whole_split_agreement": (whole["t2i_top1_agreement"], whole["i2t_top1_agreement"]),
        "score_noise": float((cand_text @ cand_image.T - ref_text @ ref_image.T).std()),
        "image_cosine_min": whole["image_cosine_min"],
        "text_cosine_min": whole["text_cosine_min"],
    }


def markdown(report: dict) -> str:
    size, threshold = report["sample_size"], report["threshold"]
    margins = report["reference"]["runner_up_margin_quantiles"]
    allowed = int(size * (1 - threshold) + 1e-9)
    lines = [
        "# How much of the parity gate's verdict is the sample's",
        "",
        f"{report['machine']}. Checkpoint `{report['student']}` (weights {report['digest'][:12]}), its "
        f"{report['pairs']} held-out test pairs. The gate (export/parity.py) asks that at least "
        f"{threshold:.0%} of top-1 answers stay the same in both directions; `make demo` measures it on the "
        f"first {size} pairs. Here each bundle is also gated on {report['samples']} random samples of "
        f"{size} pairs from the same split, and on the whole split.",
        "",
        f"The float model's own scores: spread (std) {report['reference']['score_std']:.4f}; the gap "
        "between a text query's best and second-best image, at the 1st / 5th / 10th / 50th percentile: "
        + " / ".join(f"{m:.4f}" for m in margins)
        + ". An int8 bundle moves scores by a few thousandths, so queries whose best two answers are "
        "closer than that can swap.",
        "",
        f"| bundle | gate on the first {size} (t→i / i→t) | passes on random samples of {size} "
        f"| answers changed per sample | whole split (t→i / i→t) | score noise (std) "
        "| image / text cosine min |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["bundles"]:
        first, whole = row["gate_sample_agreement"], row["whole_split_agreement"]
        lines.append(
            f"| {row['bundle']} | {first[0]:.3f} / {first[1]:.3f} | {row['pass_rate']:.0%} "
            f"| {row['changed_answers_per_sample']:.1f} | {whole[0]:.3f} / {whole[1]:.3f} "
            f"| {row['score_noise']:.4f} | {row['image_cosine_min']:.4f} / {row['text_cosine_min']:.4f} |"
        )
    lines += [
        "",
        "*answers changed per sample*: both directions together, of 2 x "
        f"{size} queries; the gate allows {allowed} per direction. *score noise*: the standard "
        "deviation of (bundle's text-image score - float "
        "model's) over every pair of the split.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="bundle folders, or folders of bundles")
    parser.add_argument("--student", default="artifacts/student/final", help="the bundles' checkpoint")
    parser.add_argument("--data", default="artifacts/data", help="the corpus (its test-*.tar shards)")
    parser.add_argument("--samples", type=int, default=400, help="random samples to gate each bundle on")
    parser.add_argument("--size", type=int, default=PARITY_EXAMPLES, help="pairs per sample")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    model = load_checkpoint(args.student)
    digest = weights_digest(args.student)
    tokenizer = Tokenizer.for_text_tower(Path(args.student) / "tokenizer.json", model.config.text)
    data = parity_data_from_shards(str(Path(args.data) / "test-*.tar"), limit=sys.maxsize)
    reference = float_embeddings(model, tokenizer, data)
    if len(data.images) < args.size:
        print(f"the test split has {len(data.images)} pairs, fewer than --size {args.size}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    samples = [rng.choice(len(data.images), args.size, replace=False) for _ in range(args.samples)]
    gated = np.arange(args.size)  # what make demo gates on: the split's first pairs
    rows = []
    for folder in bundle_folders(args.bundles):
        manifest = read_manifest(folder)
        if manifest.weights_digest != digest:
            print(f"skipped {folder}: a bundle of another checkpoint", file=sys.stderr)
            continue
        candidate = bundle_embeddings(folder, manifest, tokenizer, data)
        row = {"bundle": folder.name, **measure_bundle(reference, candidate, gated, samples)}
        rows.append(row)
        print(f"{folder.name}: passes {row['pass_rate']:.0%} of samples", file=sys.stderr)
    ref_scores = reference[1] @ reference[0].T
    report = {
        "machine": machine_summary(),
        "student": str(args.student),
        "digest": digest,
        "pairs": len(data.images),
        "samples": args.samples,
        "sample_size": args.size,
        "threshold": Thresholds().agreement,
        "reference": {
            "score_std": float(ref_scores.std()),
            "runner_up_margin_quantiles": np.quantile(
                runner_up_margins(ref_scores), [0.01, 0.05, 0.1, 0.5]
            ).tolist(),
        },
        "bundles": sorted(rows, key=lambda r: r["score_noise"]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parity_gate.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "parity_gate.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
