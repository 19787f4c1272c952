"""`demo` (what `make demo` runs): the whole mission on its embedded default.

The offline demo corpus -> the demo teacher -> an ACID student distilled from it -> bundles for
every runtime and precision, each through the parity gate -> teacher, student and every bundle
evaluated on the test split -> the test photos indexed with the SDK and searched in several
languages -> one summary table.

Every step leaves its artifact under `--out` and is skipped when the artifact is already there (the
demo teacher lives in the user cache, keyed by the data), so a second run only re-reads results.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from siglip2_sdk.core.errors import Siglip2Error

from .common import add_command, native_output_to, progress
from .demo_jobs import PARITY_EXAMPLES, evaluations, exports, test_examples
from .search import CAPTIONS_FILE, caption_of, captions_beside, contact_sheet

MODEL_ID = "siglip2-demo-student"
# ACED: ACID selection plus the explicit distillation term, the method the demo shows. The student
# is the teacher less its middle block (DistilBERT's start): from scratch, a student of that size did
# not come near its teacher in the minutes the demo has, started from the teacher's blocks it passes
# it in 500 steps (benchmarks/results/demo_recipe.md). What selection and the KD term add on their
# own: benchmarks/results/distill_ablation.md.
STUDENT = dict(
    init="teacher",
    init_layers="0,2",
    lr=5e-4,
    steps=500,
    batch_size=256,
    select="acid",
    filter_ratio=0.5,
    kd_weight=1.0,
    captions="en+sample",  # as the demo teacher learnt
    same_captions="ignore",
    label_captions=0.05,
    warmup_steps=100,
    save_every=250,
)
EXPORTS = [(to, precision) for to in ("onnx", "tflite", "executorch") for precision in ("fp32", "int8")]
EXPORT_PROCESSES = 2  # 0 (and EVAL_PROCESSES): in this process
EVAL_PROCESSES = 2
SLOWEST_FIRST = ("executorch", "tflite", "onnx")
# (language, caption) queries are picked from the test split itself, so each has a known answer.
QUERY_LANGUAGES = ("en", "de", "fr", "es", "ja", "zh", "ru", "ar")
# Queries a person would type, with no one photo as their answer: the table shows what they find.
FREE_QUERIES = (("en", "a red apple", None),)
TOP_HITS = 3  # hits the search table shows per query
PAGE_HITS = 8  # and the contact sheet
# Photos of earlier versions were named by their key alone; their folder is written again.
KEY_NAMED = re.compile(r"[0-9a-f]{32}\.\w+")


def student_origin(settings: dict) -> str:
    """Where the student starts, in words: a preset, or some blocks of a checkpoint."""
    if settings.get("init") is None:
        return settings["student"]
    layers = settings.get("init_layers")
    return f"the {settings['init']}'s blocks {layers}" if layers else f"the {settings['init']}'s weights"


def add_commands(commands) -> None:
    demo = add_command(commands, "demo", run_demo_command)
    demo.add_argument(
        "--out", type=Path, default=Path("artifacts"), help="where artifacts go (default: artifacts)"
    )
    demo.add_argument(
        "--steps", type=int, default=None, help="student distillation steps (default: the demo recipe's)"
    )


def run_demo_command(args: argparse.Namespace) -> int:
    """run the main job on its embedded default (what `make demo` runs)

    The whole mission offline on 2 cores: build the demo corpus, train the demo teacher (once), distill
    an ACID student from it, export it to ONNX, TFLite and ExecuTorch in fp32 and int8 through the
    parity gate, evaluate teacher, student and every bundle on the test split, index the test photos and
    search them in several languages, then print one summary table. Each step is skipped when its
    artifact is already in --out, so a second run takes a minute or two.
    """
    if args.steps is not None and args.steps < 1:
        raise Siglip2Error(f"--steps must be at least 1, got {args.steps}")
    run_demo(args.out, steps=args.steps)
    return 0


@dataclass(frozen=True)
class Layout:
    """Where each step leaves its artifact."""

    out: Path

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def student_run(self) -> Path:
        return self.out / "student"

    @property
    def bundles(self) -> Path:
        return self.out / "bundles"

    @property
    def evals(self) -> Path:
        return self.out / "eval"

    @property
    def photos(self) -> Path:
        return self.out / "photos"

    @property
    def index(self) -> Path:
        return self.out / "index"

    @property
    def search_page(self) -> Path:
        return self.out / "search.html"

    @property
    def log(self) -> Path:
        """What the worker processes print (the exporters' and runtimes' own logs)."""
        return self.out / "logs" / "demo.log"


@dataclass
class Evaluated:
    """One row of the summary: a model (checkpoint or bundle) and what was measured on it."""

    name: str
    runtime: str
    precision: str
    status: str
    megabytes: float | None
    results: dict | None  # None: not measured (a bundle that failed its parity gate)
    agreement: tuple[float, float] | None = None  # the gate's top-1 agreement t->i, i->t; None: no gate


def _newer(artifact: Path, than: Path) -> bool:
    return artifact.exists() and artifact.stat().st_mtime >= than.stat().st_mtime


class Demo:
    def __init__(self, out: Path, console: Console, steps: int | None = None):
        self.layout = Layout(out)
        self.console = console
        self.student_settings = {**STUDENT, **({"steps": steps} if steps else {})}
        self.started = time.perf_counter()
        self._step = 0
        self._log_told = False

    def announce(self, title: str, total: int = 7) -> None:
        self._step += 1
        elapsed = time.perf_counter() - self.started
        # The time first: a narrow terminal cuts the end of a rule.
        self.console.rule(f"[bold]{self._step}/{total}[/] at {elapsed / 60:.1f} min: [bold]{title}[/]")

    def log(self, message: str) -> None:
        self.console.print(f"  {message}")

    def _log_file(self) -> Path:
        """The worker processes' log, said once where it is."""
        log = self.layout.log
        log.parent.mkdir(parents=True, exist_ok=True)
        if not self._log_told:
            self.log(f"the libraries' own output (exporters, runtimes) goes to {log}")
            self._log_told = True
        return log

    # --- the steps ---------------------------------------------------------------------------------

    def corpus(self) -> None:
        from siglip2_sdk.data.build import build_corpus

        self.announce("demo corpus (Tux Paint, Noto emoji, Open Clip Art, Fashion-MNIST; offline)")
        report = build_corpus(self.layout.data, progress=lambda it, what: progress(it, what))
        for name, reason in report.unavailable.items():
            self.log(f"[yellow]source {name} skipped[/]: {reason}")
        stats = report.stats
        state = "built" if report.assembled else "up to date (skipped)"
        self.log(
            f"{state}: {stats['pairs']:,} pairs, {len(stats['languages'])} caption languages, "
            f"pairs digest {stats.get('pairs_digest', '-')}"
        )

    def teacher(self) -> Path:
        from siglip2_sdk.distill import recipes

        self.announce("demo teacher (trained once on this data, then reused from the cache)")
        train = str(self.layout.data / "train-*.tar")
        folder = recipes.resolve_teacher("demo", train, None, progress, self.log)
        self.log(f"teacher: {folder}")
        return folder

    def student(self) -> Path:
        from siglip2_sdk.distill import recipes

        self.announce("distill an ACID student (siglip2-sdk distill --teacher demo --select acid)")
        run = self.layout.student_run
        final = run / "final"
        if (final / "config.json").is_file():
            self.log(f"student already distilled (skipped): {final}")
            return final
        settings = self.student_settings
        self.log(
            f"{student_origin(settings)}: {settings['steps']} steps of {settings['batch_size']}, "
            f"{settings['select']} selection (filter ratio {settings['filter_ratio']}), "
            f"kd weight {settings['kd_weight']}; resumable, checkpoints in {run}"
        )
        train = str(self.layout.data / "train-*.tar")
        return recipes.distill("demo", train, run, resume=True, progress=progress, log=self.log, **settings)

    def export(self, student: Path) -> list[Path]:
        from siglip2_sdk.core.bundle import MANIFEST_NAME
        from siglip2_sdk.core.fileio import slug
        from siglip2_sdk.export.writer import PRECISIONS, TARGETS

        self.announce("export: ONNX, TFLite (LiteRT), ExecuTorch x fp32, int8, each through the parity gate")
        weights = student / "model.safetensors"
        wanted = [(to, precision) for to, precision in EXPORTS if precision in PRECISIONS.get(to, ())]
        for to, precision in sorted(set(EXPORTS) - set(wanted)):
            self.log(f"[yellow]{to} {precision} is not offered by this version (skipped)[/]")
        folders = {
            (to, precision): self.layout.bundles / f"{slug(MODEL_ID)}-{TARGETS[to][0]}-{precision}"
            for to, precision in wanted
        }
        missing = [key for key, folder in folders.items() if not _newer(folder / MANIFEST_NAME, weights)]
        if not missing:
            self.log(f"{len(folders)} bundles already exported (skipped): {self.layout.bundles}")
            return list(folders.values())
        missing.sort(key=lambda key: SLOWEST_FIRST.index(key[0]))
        workers = min(EXPORT_PROCESSES, len(missing))
        inputs = (str(student), str(self.layout.data), str(self.layout.bundles), MODEL_ID)
        with self.console.status(f"exporting {len(missing)} bundles, {max(workers, 1)} at a time"):
            for name, problems, seconds in exports(missing, inputs, workers, self._log_file()):
                verdict = "[green]ok[/]" if not problems else f"[red]failed[/]: {'; '.join(problems)}"
                figures = _parity_figures(self.layout.bundles / name)
                self.log(f"{name}: {seconds:.0f} s, parity {verdict} ({figures})")
        return [folder for folder in folders.values() if (folder / MANIFEST_NAME).is_file()]

    def evaluate(self, models: dict[str, Path]) -> list[Evaluated]:
        self.announce("evaluate teacher, student and every bundle on the test split")
        self.layout.evals.mkdir(parents=True, exist_ok=True)
        measured: dict[str, dict | None] = {}
        missing = {}
        for name, folder in models.items():
            cached = self.layout.evals / f"{name}.json"
            if _failed_gate(folder):
                # Readers refuse such a bundle, so it is listed with its verdict, not measured.
                measured[name] = None
            elif _newer(cached, _identity_file(folder)):
                measured[name] = json.loads(cached.read_text())
            else:
                missing[name] = folder
        if missing:
            workers = min(EVAL_PROCESSES, len(missing))
            with self.console.status(f"evaluating {len(missing)} models, {max(workers, 1)} at a time"):
                for name, results, seconds in evaluations(
                    missing, self.layout.data, workers, self._log_file()
                ):
                    (self.layout.evals / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
                    self.log(f"{name}: {seconds:.0f} s")
                    measured[name] = results
        return [_row(name, folder, measured[name]) for name, folder in models.items()]

    def index_and_search(self, bundle: Path) -> None:
        from siglip2_sdk.core.fileio import atomic_write_text
        from siglip2_sdk.encoder import Encoder
        from siglip2_sdk.index import PhotoIndex

        self.announce("index the test photos with the SDK and search them in several languages")
        photos, captions = _export_test_photos(self.layout.data, self.layout.photos)
        with native_output_to(self._log_file()):  # the runtime's own startup lines
            encoder = Encoder.load(bundle)
            with PhotoIndex.open(self.layout.index, encoder) as index:
                started = time.perf_counter()
                report = index.add(photos)
                elapsed = time.perf_counter() - started
                searches = [
                    (language, query, answer, index.search(query, k=len(captions)))
                    for language, query, answer in [*_queries(captions), *FREE_QUERIES]
                ]
        self.log(f"bundle: {bundle.name} ({encoder.runtime})")
        self.log(
            f"{self.layout.index}: {report.added} added, {report.skipped} unchanged, "
            f"{len(report.failed)} failed, in {elapsed:.1f} s"
        )
        self.console.print(_search_table(searches, captions))
        atomic_write_text(self.layout.search_page, _search_page(searches))
        self.log(f"these searches with their photos: {self.layout.search_page}")

    def summary(self, rows: list[Evaluated], teacher: Path, student: Path) -> None:
        from siglip2_sdk.export.parity import Thresholds

        self.announce("summary")
        chance = _retrieval_chance(test_examples(self.layout.data))
        table = Table(
            title=f"demo: test split, R@1 and top-1 in % (chance: t→i R@1 {chance.get('all', 0.0):.2f}, "
            f"zero-shot {_zero_shot_chance(rows):.1f}); agreement: the parity gate's top-1 answers kept "
            f"t→i/i→t on {PARITY_EXAMPLES} held-out pairs (gate: {Thresholds().agreement}); "
            "ms: batch 1 on one thread"
        )
        # No runtime column: a bundle's name says it, and the table fits a 150-column log.
        columns = (
            "model", "precision", "gate", "agreement", "MB", "t→i R@1", "i→t R@1", "zero-shot top-1",
            "image ms", "text ms",
        )  # fmt: skip
        for column in columns:
            table.add_column(column, justify="left" if column in columns[:3] else "right")
        for row in rows:
            agreement = f"{row.agreement[0]:.3f}/{row.agreement[1]:.3f}" if row.agreement else "-"
            precision = row.precision if row.runtime != "torch" else f"{row.precision} (torch)"
            table.add_row(
                row.name, precision, row.status, agreement,
                f"{row.megabytes:.1f}" if row.megabytes is not None else "-", *_measured_cells(row.results),
            )  # fmt: skip
        self.console.print(table)
        self.console.print(_language_table(rows, chance))
        layout = self.layout
        self.console.print(
            f"artifacts: corpus {layout.data}, teacher {teacher}, student {student}, bundles "
            f"{layout.bundles}, evaluations {layout.evals}, photo index {layout.index} "
            f"(try: siglip2-sdk search 'a red apple' --index {layout.index})"
        )
        self.console.print(f"done in {(time.perf_counter() - self.started) / 60:.1f} min")


def _zero_shot_chance(rows: list[Evaluated]) -> float:
    """Zero-shot top-1 of guessing, in %: the mean over label sets of 1 / classes."""
    measured = next((row.results for row in rows if row.results), None)
    sets = measured["full"]["zero_shot"].values() if measured else ()
    return 100 * statistics.mean(1 / s["classes"] for s in sets) if sets else 0.0


def _retrieval_chance(examples) -> dict[str, float]:
    """Text→image R@1 of a random ranking per caption language, in %: the mean over texts of the share
    of the images that are right for it (several, where photos share a caption)."""
    from siglip2_sdk.core.evaluate import retrieval_tasks

    return {
        language: 100 * statistics.mean(len(right) for right in task.text_to_images) / len(task.image_indices)
        for language, task in retrieval_tasks(examples).items()
    }


def _language_table(rows: list[Evaluated], chance: dict[str, float]) -> Table:
    """Text→image R@1 over all languages, then per query language, of each model, and chance's row."""
    languages = ("all", *QUERY_LANGUAGES)
    table = Table(title="text→image R@1 in % by caption language, beside chance (last row)")
    table.add_column("model")
    for language in languages:
        table.add_column(language, justify="right")
    for row in rows:
        retrieval = row.results["full"]["retrieval"] if row.results else {}
        cells = (retrieval.get(language, {}).get("text_to_image", {}).get("R@1") for language in languages)
        table.add_row(row.name, *("-" if cell is None else f"{100 * cell:.1f}" for cell in cells))
    table.add_row(
        "chance", *(f"{chance[lang]:.2f}" if lang in chance else "-" for lang in languages), style="dim"
    )
    return table


def _measured_cells(results: dict | None) -> tuple[str, ...]:
    """R@1 both ways and zero-shot top-1 in %, then the latencies; dashes for a model not measured."""
    if results is None:
        return ("-",) * 5
    percents = (results[key] for key in ("t2i_R@1", "i2t_R@1", "zero_shot_top1"))
    return (
        *("-" if value is None else f"{100 * value:.1f}" for value in percents),
        f"{results['image_ms']:.2f}", f"{results['text_ms']:.2f}",
    )  # fmt: skip


def _parity_figures(folder: Path) -> str:
    """What the gate measured against the float student: cosine minima and top-1 agreement."""
    from siglip2_sdk.core.bundle import MANIFEST_NAME, read_manifest

    figures = read_manifest(folder).parity if (folder / MANIFEST_NAME).is_file() else {}
    if "t2i_top1_agreement" not in figures:
        return "no figures"
    return (
        f"cosine min image {figures['image_cosine_min']:.4f} / text {figures['text_cosine_min']:.4f}, "
        f"top-1 agreement t→i {figures['t2i_top1_agreement']:.3f} / i→t {figures['i2t_top1_agreement']:.3f}"
    )


def _failed_gate(folder: Path) -> bool:
    from siglip2_sdk.core.bundle import MANIFEST_NAME, read_manifest

    return (folder / MANIFEST_NAME).is_file() and read_manifest(folder).status != "ok"


def _identity_file(folder: Path) -> Path:
    """The file whose change means the model changed: a bundle's manifest, a checkpoint's weights."""
    manifest = folder / "manifest.json"
    return manifest if manifest.is_file() else folder / "model.safetensors"


def _row(name: str, folder: Path, results: dict | None) -> Evaluated:
    from siglip2_sdk.core.bundle import read_manifest

    if (folder / "manifest.json").is_file():
        manifest = read_manifest(folder)
        megabytes = sum(f.bytes for f in manifest.files.values()) / 2**20
        parity = manifest.parity or {}
        agreement = (
            (parity["t2i_top1_agreement"], parity["i2t_top1_agreement"])
            if "t2i_top1_agreement" in parity
            else None
        )
        return Evaluated(
            name, manifest.runtime, manifest.precision, manifest.status, megabytes, results, agreement
        )
    size = (folder / "model.safetensors").stat().st_size / 2**20
    return Evaluated(name, "torch", "fp32", "-", size, results)


def _export_test_photos(data: Path, folder: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """The test split's images as files (what a user's photo folder is) and their captions by file name."""
    from siglip2_sdk.core.fileio import atomic_write_text

    captions_file = folder / CAPTIONS_FILE
    old = json.loads(captions_file.read_text(encoding="utf-8")) if captions_file.is_file() else {}
    if old and not any(KEY_NAMED.fullmatch(name) for name in old):
        return folder, old
    for name in old:
        (folder / name).unlink(missing_ok=True)  # so the index forgets them
    folder.mkdir(parents=True, exist_ok=True)
    captions: dict[str, dict[str, str]] = {}
    for example in test_examples(data):
        name = _photo_name(example)
        if name in captions:  # the same source, caption and key prefix: the whole key tells them apart
            name = _photo_name(example, len(example.key))
        (folder / name).write_bytes(example.image)
        captions[name] = example.captions
    # Written last: its presence says every photo is there.
    atomic_write_text(captions_file, json.dumps(captions, ensure_ascii=False, indent=1) + "\n")
    return folder, captions


def _name_part(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _photo_name(example, key_digits: int = 8) -> str:
    """`SOURCE-CAPTION-KEY.EXT` (the English caption cut to ~40 characters, the key's first digits), so
    a file browser, the index and the contact sheet show what a photo is; unique by the key."""
    caption = _name_part(caption_of(example.captions))[:40].strip("-")
    parts = (_name_part(example.meta.get("source", "")), caption, _name_part(example.key)[:key_digits])
    return "-".join(part for part in parts if part) + f".{example.image_ext}"


def _queries(captions: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    """One (language, caption, photo) per demo language: a caption that names exactly one photo."""
    uses: dict[tuple[str, str], list[str]] = {}
    for name, by_language in captions.items():
        for language, caption in by_language.items():
            uses.setdefault((language, caption), []).append(name)
    queries = []
    for language in QUERY_LANGUAGES:
        unique = sorted(
            (c, names[0]) for (lang, c), names in uses.items() if lang == language and len(names) == 1
        )
        if unique:
            caption, name = unique[len(unique) // 2]
            queries.append((language, caption, name))
    return queries


def _rank(answer: str | None, hits) -> int | None:
    """Where the photo named `answer` is among `hits` (1 = first); None: not among them, or a query
    without one answer."""
    names = [Path(hit.path).name for hit in hits]
    return names.index(answer) + 1 if answer in names else None


def _search_page(searches: list[tuple[str, str, str, list]]) -> str:
    """The contact sheet of the demo's searches: a section per query, its best hits with their captions."""

    def heading(language: str, query: str, answer: str | None, hits) -> str:
        if answer is None:
            return f"{language}: {query} (a free query)"
        rank = _rank(answer, hits)
        where = f"its photo ranks {rank} of {len(hits)}" if rank else "its photo is not among the hits"
        return f"{language}: {query} ({where})"

    return contact_sheet(
        "demo: multilingual search over the test photos",
        [(heading(*search), search[-1][:PAGE_HITS]) for search in searches],
        captions_beside(hit.path for *_, hits in searches for hit in hits[:PAGE_HITS]),
    )


def _search_table(searches: list[tuple[str, str, str, list]], captions: dict[str, dict[str, str]]) -> Table:
    """Per (language, query, its photo, hits): where its photo ranks, and the top hits with their
    own captions, so a person sees what the model found instead of it."""
    table = Table(title="multilingual text search over the test photos: where the captioned photo ranks")
    table.add_column("language")
    table.add_column("query")
    table.add_column("rank of its photo", justify="right")
    table.add_column("its score", justify="right")
    table.add_column(f"top {TOP_HITS} hits: score, English caption (bold: its photo)")
    for language, query, answer, hits in searches:
        rank = _rank(answer, hits)
        top = []
        for hit in hits[:TOP_HITS]:
            name = Path(hit.path).name
            line = f"{hit.score:.3f} {escape(caption_of(captions.get(name, {})) or name)}"
            top.append(f"[bold]{line}[/]" if name == answer else line)
        table.add_row(
            language, escape(query), f"{rank} of {len(hits)}" if rank else "-" if answer else "(free query)",
            f"{hits[rank - 1].score:.3f}" if rank else "-", "\n".join(top),
        )  # fmt: skip
    return table


def _best_bundle(rows: list[Evaluated], models: dict[str, Path]) -> Path:
    """The bundle the phone app would use: LiteRT int8 when it passed its gate, else the first that did."""
    passed = {row.name: models[row.name] for row in rows if row.status == "ok"}
    if not passed:
        raise Siglip2Error("no bundle passed its parity gate, so there is nothing to index with")
    preferred = [name for name in passed if name.endswith("litert-int8")]
    return passed[preferred[0] if preferred else next(iter(passed))]


def run_demo(out: Path, steps: int | None = None) -> None:
    # Wide enough for the summary when the output is a file or a pipe (rich assumes 80 columns there).
    console = Console(width=None if sys.stdout.isatty() else 150)
    demo = Demo(out, console, steps)
    demo.corpus()
    teacher = demo.teacher()
    student = demo.student()
    bundles = demo.export(student)
    models = {"teacher": teacher, "student": student, **{folder.name: folder for folder in bundles}}
    rows = demo.evaluate(models)
    demo.index_and_search(_best_bundle(rows, models))
    demo.summary(rows, teacher, student)
