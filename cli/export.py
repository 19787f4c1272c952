"""`export`: a checkpoint -> one bundle per runtime x precision, each through the parity gate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from siglip2_sdk.core.errors import Siglip2Error

from .common import add_command

DEMO_PARITY_DATA = "artifacts/data/test-*.tar"
DEMO_CALIBRATION_DATA = "artifacts/data/val-*.tar"


def add_commands(commands) -> None:
    export = add_command(commands, "export", run_export)
    export.add_argument("checkpoint", help="checkpoint folder, HF id or alias")
    export.add_argument(
        "--to",
        default="onnx,tflite,executorch",
        help="comma-separated: onnx, tflite, executorch (default: all three)",
    )
    export.add_argument(
        "--precision",
        default="fp32,int8",
        help="comma-separated: fp32, fp16, int8 (each runtime's int8 that keeps the gate: int8 weights "
        "computed in fp32 on onnx; int8 compute in the MLPs and image v/out projections on tflite and "
        "executorch), int8-weight-only (tflite), and int8 compute where offered: int8-dynamic (onnx, "
        "tflite: every linear), int8-static (onnx: NNCF; tflite: PT2E image)",
    )
    export.add_argument("--out", type=Path, default=Path("artifacts/bundles"), help="where bundles go")
    export.add_argument(
        "--parity-data",
        default=DEMO_PARITY_DATA,
        help="held-out image-caption shards (WebDataset .tar) the parity gate compares on, never trained "
        f"on (default: the demo corpus's test split, {DEMO_PARITY_DATA})",
    )
    export.add_argument("--parity-examples", type=int, default=256, help="examples the gate compares on")
    export.add_argument(
        "--calibration-data",
        default=DEMO_CALIBRATION_DATA,
        help="shards whose images and captions static int8 (int8-static) observes; never the parity data "
        "(default: the demo corpus's validation split)",
    )
    export.add_argument("--calibration-examples", type=int, default=128, help="calibration examples")
    export.add_argument("--min-cosine", type=float, default=0.99, help="gate: minimum embedding cosine")
    export.add_argument("--min-agreement", type=float, default=0.98, help="gate: minimum top-1 agreement")
    export.add_argument(
        "--vocab-from",
        metavar="DATA",
        help="prune the text tower's token table to the ids that occur in DATA's captions, every language: "
        "WebDataset shards (globs, brace patterns) or a .txt file with one caption per line",
    )
    export.add_argument(
        "--languages",
        metavar="LANGS",
        help="prune the token table to the tokens written in these languages' scripts, e.g. en,de,fr "
        "(with --vocab-from: the union). The bundle keeps the original tokenizer; tokens outside the kept "
        "set read as <unk>, so other text still runs, degraded: add en to a non-Latin language for the "
        "Latin words its text mixes in. The gate checks captions in LANGS",
    )


def _model_id(checkpoint: str) -> str:
    """A checkpoint's name: an HF id as given; a folder by its name, or its run's name for the
    `RUN/final` folders that distill and pretrain write."""
    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        return checkpoint
    path = path.resolve()
    return path.parent.name if path.name == "final" else path.name


def run_export(args: argparse.Namespace) -> int:
    """quantize and lower a checkpoint into bundles, each checked against the float model

    Write one bundle per runtime x precision (towers, tokenizer, manifest.json with sha256 of every
    file). Each bundle is run on its own runtime on held-out real images and captions and compared with
    the float checkpoint (embedding cosine, top-1 retrieval agreement); below the thresholds the bundle
    is kept but marked failed and the command exits 1.
    """
    from siglip2_sdk.core.checkpoint import load_checkpoint
    from siglip2_sdk.core.tokenizer import Tokenizer
    from siglip2_sdk.core.vocabulary import check_sources, split_languages
    from siglip2_sdk.export.parity import Thresholds
    from siglip2_sdk.export.writer import (
        PRECISIONS,
        calibration_inputs,
        export_bundle,
        parity_data_from_shards,
    )

    for flag in ("parity_examples", "calibration_examples"):
        if getattr(args, flag) < 2:
            raise Siglip2Error(f"--{flag.replace('_', '-')} must be at least 2, got {getattr(args, flag)}")

    unknown = [to for to in args.to.split(",") if to not in PRECISIONS]
    if unknown:
        raise Siglip2Error(f"--to {','.join(unknown)}: this version exports to {', '.join(PRECISIONS)}")
    # Skip the combinations a runtime does not offer yet, rather than failing a mixed request.
    targets = []
    for to in args.to.split(","):
        for precision in args.precision.split(","):
            if precision in PRECISIONS[to] or to == args.to:
                targets.append((to, precision))
            else:
                print(f"skipping {to} {precision}: not offered for {to} yet", file=sys.stderr)
    languages = split_languages(args.languages)
    check_sources(args.vocab_from, languages)
    _demo_data_there(args.parity_data, DEMO_PARITY_DATA, "--parity-data", "the parity gate compares on")
    parity_data = parity_data_from_shards(args.parity_data, args.parity_examples, languages)
    model = load_checkpoint(args.checkpoint)
    model_id = _model_id(args.checkpoint)
    vocabulary = _pruned_vocabulary(model, args.vocab_from, languages)
    # Only static int8 observes activations; the other schemes never read calibration data.
    calibration = None
    if any(precision.endswith("-static") for _, precision in targets):
        _demo_data_there(
            args.calibration_data, DEMO_CALIBRATION_DATA, "--calibration-data", "static int8 observes"
        )
        calibration = calibration_inputs(
            parity_data_from_shards(args.calibration_data, args.calibration_examples),
            model.image_preprocessing,
            Tokenizer.for_text_tower(model.source_dir / "tokenizer.json", model.config.text),
        )
    thresholds = Thresholds(cosine_min=args.min_cosine, agreement=args.min_agreement)
    table = Table(
        title=f"bundles of {model_id} in {args.out} (parity on {len(parity_data.texts)} held-out examples)"
    )
    columns = (
        "bundle",
        "status",
        "MB",
        "image cos min",
        "text cos min",
        "t→i agree",
        "i→t agree",
        "partitions",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("bundle", "status") else "right")
    failed = 0
    for to, precision in targets:
        with Console(stderr=True).status(f"exporting {to} {precision}"):
            result = export_bundle(
                model, model_id, to, precision, args.out, parity_data, thresholds, calibration=calibration,
                vocabulary=vocabulary,
            )  # fmt: skip
        p = result.manifest.parity
        megabytes = sum(f.bytes for f in result.manifest.files.values()) / 2**20
        table.add_row(
            result.folder.name, result.manifest.status, f"{megabytes:.1f}", f"{p['image_cosine_min']:.4f}",
            f"{p['text_cosine_min']:.4f}", f"{p['t2i_top1_agreement']:.3f}", f"{p['i2t_top1_agreement']:.3f}",
            _partitions(result.manifest.delegate_partitions),
        )  # fmt: skip
        if result.problems:
            failed += 1
            print(f"{result.folder}: parity gate failed: {'; '.join(result.problems)}", file=sys.stderr)
    Console().print(table)
    return 1 if failed else 0


def _partitions(partitions: dict[str, int]) -> str:
    """Delegate partitions per tower, image/text; "-" where the runtime runs no delegate (ONNX)."""
    return f"{partitions['image']}/{partitions['text']}" if partitions else "-"


def _demo_data_there(given: str, default: str, flag: str, use: str) -> None:
    """The demo corpus's shards are only a default: without them, say which flag to give."""
    import glob

    if given == default and not glob.glob(default):
        raise Siglip2Error(
            f"no held-out data for {flag}: pass {flag} SHARDS, WebDataset .tar shards of image-caption "
            f"pairs the model never trained on, which {use} (the default, '{default}', is the demo "
            "corpus: `siglip2-sdk data demo` builds it)"
        )


def _pruned_vocabulary(model, data: str | None, languages: list[str]):
    """The kept token ids when --vocab-from/--languages ask for pruning (None: the full vocabulary),
    with what it saves said on stderr."""
    from siglip2_sdk.core.vocabulary import kept_vocabulary

    if data is None and not languages:
        return None
    with Console(stderr=True).status("choosing the kept vocabulary"):
        vocabulary = kept_vocabulary(
            model.source_dir / "tokenizer.json", model.config.text, data=data, languages=languages
        )
    full, kept = vocabulary.table_bytes(model.config.text.width)
    print(
        f"vocabulary: {len(vocabulary.ids):,} of {vocabulary.of:,} tokens kept ({vocabulary.source}); "
        f"fp32 token table {full / 2**20:.1f} MB -> {kept / 2**20:.1f} MB",
        file=sys.stderr,
    )
    return vocabulary
