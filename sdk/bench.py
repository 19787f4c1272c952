"""`siglip2-sdk bench`: how fast, how big, how heavy and how faithful bundles are, against transformers'
eager fp32 model and the float checkpoint they were exported from, measured in one run.

Timings are interleaved: every round times every model once, in a rotating order, so drift and other
load on the machine hit all models alike. Load time and peak RSS come from a fresh process per model,
so each figure is that model's alone. FLOPs come from the model shape, the machine's peak from its CPU
flags and clock, so the distance to the compute limit is a number.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from itertools import islice
from pathlib import Path

import numpy as np

from siglip2_sdk import __version__
from siglip2_sdk.core.bundle import Manifest, read_manifest
from siglip2_sdk.core.config import ModelConfig, from_hf_config, tower_flops
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.evaluate import headline
from siglip2_sdk.core.hub import resolve_checkpoint
from siglip2_sdk.core.preprocess import preprocess
from siglip2_sdk.core.shards import Example, expand_shards, iter_examples
from siglip2_sdk.core.tokenizer import Tokenizer

from .encoder import Encoder
from .index import PhotoIndex

BASELINES = ("transformers", "none")
ACCURACY_MODES = ("full", "cosine", "none")
PACKAGES = (
    "siglip2-sdk", "numpy", "onnxruntime", "torch", "executorch", "ai-edge-litert", "transformers",
    "tokenizers", "pillow",
)  # fmt: skip
BASELINE_NAME = "transformers-fp32-eager"


@dataclass
class BenchSettings:
    threads: int | None = None  # None: the machine's physical cores
    batch_size: int = 32  # the throughput batch (and PhotoIndex.add's)
    runs: int = 30  # timed batch-1 calls per tower and model
    batch_runs: int = 5  # timed full-batch calls per tower and model
    warmup: int = 2  # untimed calls per tower, batch size and model before the first round
    accuracy: str = "full"  # full: zero-shot + retrieval + cosine; cosine: embedding cosine only
    examples: int | None = None  # test examples for accuracy (None: the whole split)
    index_images: int = 256  # images exported from the test split for PhotoIndex.add (when no --images)
    # What is not timed runs this many models at a time, each in its own process: the peak-memory
    # probes (first loads are then measured side by side) and the accuracy (on one thread each, each
    # loading its model again: worth it for small models, whose evaluation leaves a core idle).
    probe_processes: int = 1
    accuracy_processes: int = 1

    def check(self) -> None:
        at_least = {"--batch-size": (self.batch_size, 1), "--runs": (self.runs, 1)}
        at_least |= {"--batch-runs": (self.batch_runs, 1), "--warmup": (self.warmup, 0)}
        at_least |= {"--index-images": (self.index_images, 1)}
        at_least["--processes"] = (min(self.probe_processes, self.accuracy_processes), 1)
        if self.threads is not None:
            at_least["--threads"] = (self.threads, 1)
        if self.examples is not None:
            at_least["--examples"] = (self.examples, 2)
        for flag, (value, low) in at_least.items():
            if value < low:
                raise Siglip2Error(f"{flag} must be at least {low}, got {value}")
        if self.accuracy not in ACCURACY_MODES:
            raise Siglip2Error(f"accuracy must be one of {', '.join(ACCURACY_MODES)}, got {self.accuracy!r}")


# --- the machine and its compute limit ------------------------------------------------------------

# Vector FMA units per core: two on every AVX2 / AVX-512 x86 core since Haswell and Zen 2. Some Xeon
# SKUs have a single 512-bit unit; on those the peak below is twice the real one.
FMA_UNITS = 2


def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical CPU (empty where there is no /proc)."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return []
    cpus = []
    for block in path.read_text().strip().split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        cpus.append({key.strip(): value.strip() for key, value in fields.items()})
    return cpus


def _clock_mhz(cpus: list[dict[str, str]]) -> tuple[float | None, str]:
    """The highest sustained clock the OS reports: cpufreq's maximum (what lscpu shows as max MHz), else
    the current MHz in /proc/cpuinfo (virtual machines often expose only that)."""
    cpufreq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if cpufreq.is_file():
        return int(cpufreq.read_text()) / 1000, "cpufreq max"
    current = [float(cpu["cpu MHz"]) for cpu in cpus if "cpu MHz" in cpu]
    return (max(current), "/proc/cpuinfo cpu MHz") if current else (None, "unknown")


def per_cycle_rates(flags: set[str]) -> dict:
    """Operations per cycle per core (a multiply-accumulate counts 2) and the instructions they assume.

    fp32 = 2 x lanes (vector bits / 32) x FMA units.
    int8 = 2 x multiply-accumulates per cycle:
      AMX (amx_int8): 1024 MACs per cycle per core (the TMUL unit);
      AVX-512 VNNI: vpdpbusd does 64 u8 x s8 MACs per 512-bit instruction, on FMA_UNITS ports;
      AVX-VNNI: vpdpbusd on 256 bits, 32 MACs per instruction;
      AVX2 / AVX-512BW without VNNI: vpmaddubsw (32 or 64 MACs) must be followed by vpmaddwd to reach
        int32, two multiply-port instructions per vector of MACs: half the VNNI rate, 2x the fp32 rate.
    """
    bits = 512 if "avx512f" in flags else 256 if "avx" in flags else 128
    fma = FMA_UNITS if ("fma" in flags or "avx512f" in flags) else 1
    fp32 = 2 * (bits // 32) * fma
    if "amx_int8" in flags:
        int8, how = 2 * 1024, "AMX int8 tiles"
    elif "avx512_vnni" in flags:
        int8, how = 2 * 64 * FMA_UNITS, "AVX-512 VNNI vpdpbusd"
    elif "avx_vnni" in flags:
        int8, how = 2 * 32 * FMA_UNITS, "AVX-VNNI vpdpbusd"
    elif "avx512bw" in flags:
        int8, how = 2 * 64 * FMA_UNITS // 2, "AVX-512BW vpmaddubsw + vpmaddwd"
    elif "avx2" in flags:
        int8, how = 2 * 32 * FMA_UNITS // 2, "AVX2 vpmaddubsw + vpmaddwd"
    else:
        int8, how = 2 * fp32, "assumed 2x fp32 (no known int8 dot-product instruction)"
    return {"vector_bits": bits, "fp32": fp32, "int8": int8, "int8_instructions": how}


def _physical_cores(cpus: list[dict[str, str]]) -> int:
    """Cores this process may run on, counting SMT siblings once (they share the vector units)."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = {
        (cpu.get("physical id"), cpu.get("core id", cpu["processor"]))
        for cpu in cpus
        if int(cpu.get("processor", -1)) in usable
    }
    return len(cores) or len(usable)


def machine_info() -> dict:
    """CPU model, cores, the flags that matter for inference, clock, and the peaks they give."""
    cpus = _cpuinfo()
    flags = set((cpus[0].get("flags") or cpus[0].get("Features", "")).split()) if cpus else set()
    mhz, clock_source = _clock_mhz(cpus)
    cores = _physical_cores(cpus)
    rates = per_cycle_rates(flags)
    interesting = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                   "avx512_bf16", "amx_bf16", "amx_int8")  # fmt: skip
    return {
        "cpu": cpus[0].get("model name", platform.processor()) if cpus else platform.processor(),
        "architecture": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": cores,
        "flags": [flag for flag in interesting if flag in flags],
        "clock_mhz": mhz,
        "clock_source": clock_source,
        "per_cycle_per_core": rates,
        "peak_fp32_gflops": _peak(rates["fp32"], cores, mhz),
        "peak_int8_gops": _peak(rates["int8"], cores, mhz),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def machine_summary() -> str:
    """One line for a results file: CPU model, cores, OS and architecture."""
    info = machine_info()
    return f"{info['cpu']}, {info['physical_cores']} cores, {platform.system()} {info['architecture']}"


def _peak(per_cycle: int, cores: int, mhz: float | None) -> float | None:
    return per_cycle * cores * mhz / 1000 if mhz else None


def package_versions() -> dict[str, str]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


# --- the models measured ------------------------------------------------------------------------------


class TransformersBackend:
    """The baseline: transformers' SiglipModel, fp32, eager PyTorch (no compile), its default attention."""

    runtime = "transformers"

    def __init__(self, checkpoint_dir: Path, threads: int | None = None):
        import torch
        import torch.nn.functional as F
        from transformers import SiglipModel

        if threads:
            torch.set_num_threads(threads)
        self._torch, self._normalize = torch, F.normalize
        self.model = SiglipModel.from_pretrained(checkpoint_dir, dtype=torch.float32).eval()
        self.attention = self.model.config._attn_implementation

    def _run(self, tower, **inputs) -> np.ndarray:
        with self._torch.inference_mode():
            return self._normalize(tower(**inputs).pooler_output, dim=-1).numpy()

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self._run(self.model.vision_model, pixel_values=self._torch.from_numpy(pixels))

    def embed_tokens(self, input_ids: np.ndarray) -> np.ndarray:
        return self._run(self.model.text_model, input_ids=self._torch.from_numpy(input_ids))


def open_baseline(checkpoint: str, threads: int | None) -> Encoder:
    from siglip2_sdk.core.checkpoint import read_config, read_image_preprocessing

    folder = resolve_checkpoint(checkpoint)
    config = read_config(folder)
    backend = TransformersBackend(folder, threads)
    return Encoder(
        backend,
        image_preprocessing=read_image_preprocessing(folder, config),
        tokenizer=Tokenizer.for_text_tower(folder / "tokenizer.json", config.text),
        model_id=BASELINE_NAME,
        dim=config.embed_dim,
        logit_scale=float(backend.model.logit_scale.detach().exp()),
        logit_bias=float(backend.model.logit_bias.detach()),
        source=folder.resolve(),
    )


def open_bundle(folder: Path, threads: int | None) -> Encoder:
    """`Encoder.load`, and for a bundle its export gate refused the same encoder all the same: how far
    off such a bundle is, and how fast, is worth measuring (the report shows its status)."""
    return Encoder.load(folder, threads=threads, allow_failed=True)


@dataclass
class Subject:
    """One model under measurement: a bundle, or the transformers baseline."""

    name: str
    kind: str  # "bundle" | "baseline"
    path: str
    runtime: str
    precision: str
    quantization: str
    status: str
    files_mb: dict[str, float]  # role -> MiB on disk
    export_parity: dict = field(default_factory=dict)
    encoder: Encoder | None = field(default=None, repr=False)

    def open(self, threads: int | None) -> Encoder:
        if self.kind == "baseline":
            return open_baseline(self.path, threads)
        return open_bundle(Path(self.path), threads)


def _subject_fields(subject: Subject) -> dict:
    return {f.name: getattr(subject, f.name) for f in fields(subject) if f.name != "encoder"}


def _bundle_subject(folder: Path, manifest: Manifest) -> Subject:
    return Subject(
        name=folder.name,
        kind="bundle",
        path=str(folder),
        runtime=manifest.runtime,
        precision=manifest.precision,
        quantization=manifest.quantization,
        status=manifest.status,
        files_mb={role: entry.bytes / 2**20 for role, entry in manifest.files.items()},
        export_parity={k: v for k, v in manifest.parity.items() if k != "thresholds"},
    )


def _baseline_subject(checkpoint_dir: Path) -> Subject:
    weights = sorted(checkpoint_dir.glob("*.safetensors"))
    return Subject(
        name=BASELINE_NAME,
        kind="baseline",
        path=str(checkpoint_dir),
        runtime="transformers",
        precision="fp32",
        quantization="none",
        status="reference",
        files_mb={"weights": sum(w.stat().st_size for w in weights) / 2**20},
    )


def _subjects(bundles: Sequence[Path], checkpoint_dir: Path, config: ModelConfig, baseline: str) -> list:
    subjects = [_baseline_subject(checkpoint_dir)] if baseline == "transformers" else []
    seen = set()
    for folder in map(Path, bundles):
        manifest = read_manifest(folder)
        if folder.resolve() in seen:
            raise Siglip2Error(f"bundle '{folder}' is given twice")
        seen.add(folder.resolve())
        size = config.vision.image_size
        if manifest.embed_dim != config.embed_dim or tuple(manifest.image.size) != (size, size):
            raise Siglip2Error(
                f"bundle '{folder}' ({manifest.embed_dim}-d, {manifest.image.size} px) was not exported from "
                f"checkpoint '{checkpoint_dir}' ({config.embed_dim}-d, {size} px): pass its own --checkpoint"
            )
        subjects.append(_bundle_subject(folder, manifest))
    if not subjects:
        raise Siglip2Error("nothing to measure: give at least one bundle, or --baseline transformers")
    return subjects


# --- load time and peak memory, in a fresh process per model -------------------------------------------


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process. Linux: VmRSS and VmHWM, which start afresh at
    exec (ru_maxrss does not: a spawned child inherits the high-water mark of the parent it forked from)."""
    status = Path("/proc/self/status")
    if status.is_file():
        lines = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        return tuple(int(lines[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # bytes on macOS
    return peak, peak


def probe(subject: Subject, threads: int | None, batch: int) -> dict:
    """Runs in a fresh process: load the model (the first load imports its runtime too) and embed one
    batch of each tower. (The warm load time is measured where the timing runs, in `run_bench`.)"""
    rss_before, _ = _rss_mb()
    start = time.perf_counter()
    encoder = subject.open(threads)
    first_load = time.perf_counter() - start
    height, width = encoder.image_preprocessing.size
    pixels = np.zeros((batch, 3, height, width), np.float32)
    start = time.perf_counter()
    encoder.backend.embed_pixels(pixels[:1])
    first_call = time.perf_counter() - start
    encoder.backend.embed_pixels(pixels)
    encoder.backend.embed_tokens(encoder.tokenizer(["a photo of a cat"] * batch))
    _, peak = _rss_mb()
    return {
        "first_load_s": first_load,
        "first_call_s": first_call,
        "rss_before_load_mb": rss_before,
        "peak_rss_mb": peak,
        "model_rss_mb": peak - rss_before,
    }


def _probe_in_fresh_process(subject: Subject, threads: int | None, batch: int) -> dict:
    """`probe` in a new interpreter (not multiprocessing: its spawn re-runs the caller's main script)."""
    request = {"subject": _subject_fields(subject), "threads": threads, "batch": batch}
    code = "from siglip2_sdk.bench import probe_main; probe_main()"
    done = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(request), capture_output=True, text=True, check=False
    )
    lines = done.stdout.strip().splitlines()
    answer = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    if answer is None or "error" in answer:
        reason = answer["error"] if answer else (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Siglip2Error(f"measuring {subject.name} in a fresh process failed: {reason}")
    return answer


def probe_main() -> None:
    """The fresh process's side: a JSON request on stdin, the figures (or the error) as JSON on stdout."""
    request = json.loads(sys.stdin.read())
    try:
        figures = probe(Subject(**request["subject"]), request["threads"], request["batch"])
    except Siglip2Error as exc:
        figures = {"error": str(exc)}
    print(json.dumps(figures))


def _probes(subjects: list[Subject], threads: int | None, settings: BenchSettings, progress) -> dict:
    """`probe` of each subject, `settings.probe_processes` fresh processes at a time."""
    with ThreadPoolExecutor(settings.probe_processes) as pool:  # threads that wait on the processes
        jobs = [pool.submit(_probe_in_fresh_process, s, threads, settings.batch_size) for s in subjects]
        at_once = settings.probe_processes
        waited = progress(jobs, f"load time and peak memory (a process each, {at_once} at a time)")
        return {subject.name: job.result() for subject, job in zip(subjects, waited, strict=True)}


# --- speed: interleaved rounds -------------------------------------------------------------------------


@dataclass
class TimingInputs:
    pixels: np.ndarray  # (B, 3, H, W)
    input_ids: np.ndarray  # (B, L)


def _timing_inputs(encoder: Encoder, examples: Sequence[Example], batch: int) -> TimingInputs:
    """A batch of real test images and captions, repeated when the split is smaller than the batch."""
    chosen = [examples[i % len(examples)] for i in range(batch)]
    return TimingInputs(
        pixels=preprocess([e.image for e in chosen], encoder.image_preprocessing),
        input_ids=encoder.tokenizer([_caption(e) for e in chosen]),
    )


def _caption(example: Example) -> str:
    return example.captions.get("en") or next(iter(example.captions.values()))


CASES = (("image", "batch1"), ("text", "batch1"), ("image", "batch"), ("text", "batch"))


def _call(subject: Subject, inputs: TimingInputs, tower: str, size: str) -> Callable[[], object]:
    rows = 1 if size == "batch1" else len(inputs.pixels)
    backend = subject.encoder.backend
    if tower == "image":
        pixels = inputs.pixels[:rows]
        return lambda: backend.embed_pixels(pixels)
    ids = inputs.input_ids[:rows]
    return lambda: backend.embed_tokens(ids)


def _seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def time_subjects(
    subjects: list[Subject],
    inputs: dict[str, TimingInputs],
    settings: BenchSettings,
    progress: Callable[[Iterable, str], Iterable],
) -> dict[str, dict[str, list[float]]]:
    """Seconds per call for every subject and case. Each round times every subject once, starting
    from a different one each round; a batch-1 call is preceded by one untimed call, so threads another
    runtime left spinning have settled before the clock starts."""
    calls = {s.name: {case: _call(s, inputs[s.name], *case) for case in CASES} for s in subjects}
    for subject in subjects:
        for call in calls[subject.name].values():
            for _ in range(settings.warmup):
                call()
    times: dict[str, dict[str, list[float]]] = {s.name: {f"{t}/{b}": [] for t, b in CASES} for s in subjects}
    rounds = max(settings.runs, settings.batch_runs)
    for round_index in progress(range(rounds), "timing"):
        shift = round_index % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:
            for (tower, size), call in calls[subject.name].items():
                if round_index >= (settings.runs if size == "batch1" else settings.batch_runs):
                    continue
                if size == "batch1":
                    call()
                times[subject.name][f"{tower}/{size}"].append(_seconds(call))
    return times


def speed_figures(times: dict[str, list[float]], batch: int) -> dict:
    figures = {}
    for tower in ("image", "text"):
        single, full = np.array(times[f"{tower}/batch1"]), np.array(times[f"{tower}/batch"])
        figures[tower] = {
            "batch1_median_ms": float(np.median(single) * 1000),
            "batch1_p90_ms": float(np.percentile(single, 90) * 1000),
            "batch1_runs": len(single),
            "batch_median_ms": float(np.median(full) * 1000),
            "batch_per_s": float(batch / np.median(full)),
            "batch_runs": len(full),
        }
    return figures


def compute_figures(speed: dict, flops: dict[str, int], precision: str, machine: dict, threads: int) -> dict:
    """Achieved GFLOP/s at the throughput batch and its share of the peak of the cores in use: the int8
    peak for int8 bundles, the fp32 peak otherwise (CPU runtimes compute fp16 bundles in fp32)."""
    cores = min(threads, machine["physical_cores"])
    key = "int8" if precision == "int8" else "fp32"
    mhz = machine["clock_mhz"]
    peak = _peak(machine["per_cycle_per_core"][key], cores, mhz)
    figures = {"peak": key, "peak_gops": peak, "cores": cores}
    for tower in ("image", "text"):
        achieved = flops[tower] * speed[tower]["batch_per_s"] / 1e9
        figures[tower] = {"gflops": achieved, "share_of_peak": achieved / peak if peak else None}
    return figures


# --- accuracy against the float checkpoint ---------------------------------------------------------------


class _KeepsImageEmbeddings:
    """An embedder that remembers the image embeddings `evaluate` computes, for the cosine figures."""

    def __init__(self, encoder: Encoder, batch_size: int):
        self.encoder, self.batch_size, self.images = encoder, batch_size, None

    def embed_images(self, images, batch_size: int = 32) -> np.ndarray:
        self.images = self.encoder.embed_images(images, batch_size=self.batch_size)
        return self.images

    def embed_texts(self, texts) -> np.ndarray:
        return self.encoder.embed_texts(texts)


def measure_accuracy(encoder: Encoder, examples: Sequence[Example], mode: str, batch: int) -> dict:
    """Image embeddings of the examples, text embeddings of one caption each, and in `full` mode the
    zero-shot and retrieval figures of distill.evaluate."""
    if mode == "full":
        from siglip2_sdk.core.evaluate import evaluate

        embedder = _KeepsImageEmbeddings(encoder, batch)
        results = evaluate(embedder, examples, batch_size=batch)
        image_emb = embedder.images
    else:
        results, image_emb = None, encoder.embed_images([e.image for e in examples], batch_size=batch)
    return {
        "image_emb": image_emb,
        "text_emb": encoder.embed_texts([_caption(e) for e in examples]),
        "results": results,
    }


# What an accuracy worker process loads once: the examples and how to measure them.
_ACCURACY_INPUTS: dict = {}


def _accuracy_process(data: str, wanted: int | None, count: int, mode: str, batch: int) -> None:
    """The same examples as the calling process: the first `count` of `_examples(data, wanted)`."""
    _ACCURACY_INPUTS.update(examples=_examples(data, wanted)[:count], mode=mode, batch=batch)


def _accuracy_one(fields: dict) -> dict:
    inputs = _ACCURACY_INPUTS
    encoder = Subject(**fields).open(1)
    return measure_accuracy(encoder, inputs["examples"], inputs["mode"], inputs["batch"])


def _accuracies(
    subjects: list[Subject],
    data: str,
    wanted: int | None,
    examples: Sequence[Example],
    settings: BenchSettings,
    progress,
) -> dict[str, dict]:
    """`measure_accuracy` of each subject: here on its loaded encoder, or with
    `settings.accuracy_processes` > 1 in that many spawned processes on one thread each."""
    if settings.accuracy_processes == 1:
        return {
            s.name: measure_accuracy(s.encoder, examples, settings.accuracy, settings.batch_size)
            for s in progress(subjects, "accuracy")
        }
    context = multiprocessing.get_context("spawn")  # the caller holds runtime thread pools
    initargs = (data, wanted, len(examples), settings.accuracy, settings.batch_size)
    with ProcessPoolExecutor(
        settings.accuracy_processes, mp_context=context, initializer=_accuracy_process, initargs=initargs
    ) as pool:
        jobs = [pool.submit(_accuracy_one, _subject_fields(s)) for s in subjects]
        waited = progress(jobs, f"accuracy ({settings.accuracy_processes} processes)")
        return {subject.name: job.result() for subject, job in zip(subjects, waited, strict=True)}


def retention(measured: dict, reference: dict) -> dict:
    figures = {}
    for tower in ("image", "text"):
        cosine = np.sum(measured[f"{tower}_emb"] * reference[f"{tower}_emb"], axis=1)
        figures[f"{tower}_cosine_min"] = float(cosine.min())
        figures[f"{tower}_cosine_mean"] = float(cosine.mean())
    if measured["results"] is not None:
        ours, theirs = headline(measured["results"]), headline(reference["results"])
        for name, value in ours.items():
            figures[name] = value
            if value is not None and theirs[name] is not None:
                figures[f"{name}_delta_points"] = 100 * (value - theirs[name])
        figures["evaluation"] = measured["results"]
    return figures


# --- end to end: PhotoIndex.add --------------------------------------------------------------------------


def export_images(examples: Sequence[Example], folder: Path, limit: int) -> int:
    """The test images as files, duplicates dropped (PhotoIndex would share one vector between them and
    so skip the model). Returns how many were written."""
    seen, written = set(), 0
    for example in examples:
        digest = hashlib.sha256(example.image).digest()
        if digest in seen:
            continue
        seen.add(digest)
        (folder / f"{written:06d}.{example.image_ext}").write_bytes(example.image)
        written += 1
        if written == limit:
            break
    return written


def index_throughput(encoder: Encoder, images: Path, batch: int) -> dict:
    """Images per second of `PhotoIndex.add` into a fresh index: reading, hashing, decoding, resizing,
    the model and the SQLite commits, all of it."""
    with (
        tempfile.TemporaryDirectory(prefix="siglip2-bench-index-") as scratch,
        PhotoIndex.open(scratch, encoder) as index,
    ):
        start = time.perf_counter()
        report = index.add(images, batch_size=batch)
        seconds = time.perf_counter() - start
    return {"images": report.added, "failed": len(report.failed), "seconds": seconds,
            "per_s": report.added / seconds}  # fmt: skip


# --- the run -------------------------------------------------------------------------------------------


def _examples(data: str, limit: int | None) -> list[Example]:
    examples = [e for e in islice(iter_examples(expand_shards(data)), limit) if e.captions]
    if len(examples) < 2:
        raise Siglip2Error(f"'{data}' has fewer than 2 captioned examples to measure on")
    return examples


def _read_config(checkpoint: str) -> tuple[Path, ModelConfig]:
    folder = resolve_checkpoint(checkpoint)
    try:
        hf = json.loads((folder / "config.json").read_text())
    except ValueError as exc:
        raise Siglip2Error(f"cannot read '{folder / 'config.json'}': {exc}") from None
    return folder, from_hf_config(hf, source=str(folder / "config.json"))


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
    checkpoint_dir, config = _read_config(checkpoint)
    subjects = _subjects([Path(b) for b in bundles], checkpoint_dir, config, baseline)
    machine = machine_info()
    threads = settings.threads or machine["physical_cores"]
    wanted = settings.examples and max(settings.examples, settings.index_images, settings.batch_size)
    examples = _examples(data, wanted)
    accuracy_examples = examples[: settings.examples]

    probes = _probes(subjects, threads, settings, progress)
    log(f"loading {len(subjects)} models")
    load_s = {}
    for subject in subjects:
        start = time.perf_counter()
        subject.encoder = subject.open(threads)
        load_s[subject.name] = time.perf_counter() - start
    inputs = {s.name: _timing_inputs(s.encoder, examples, settings.batch_size) for s in subjects}
    times = time_subjects(subjects, inputs, settings, progress)
    speed = {s.name: speed_figures(times[s.name], settings.batch_size) for s in subjects}
    reference, accuracy = None, {}
    if settings.accuracy != "none":
        log(f"accuracy of the float checkpoint on {len(accuracy_examples)} test examples")
        reference = measure_accuracy(
            Encoder.load(checkpoint_dir, threads=threads), accuracy_examples, settings.accuracy,
            settings.batch_size,
        )  # fmt: skip
        measured = _accuracies(subjects, data, wanted, accuracy_examples, settings, progress)
        accuracy = {name: retention(figures, reference) for name, figures in measured.items()}
    index = _index_all(subjects, examples, images, speed, settings, progress)

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
        entry = _subject_fields(subject)
        entry |= {"size_mb": sum(subject.files_mb.values()), "probe": probes[subject.name]}
        entry["load_s"] = load_s[subject.name]
        entry |= {"speed": speed[subject.name], "index": index[subject.name]}
        entry["compute"] = compute_figures(speed[subject.name], flops, subject.precision, machine, threads)
        entry["accuracy"] = accuracy.get(subject.name)
        entry["speedup_vs_baseline"] = _speedup(speed[subject.name], base) if base else None
        report["subjects"].append(entry)
    write_report(report, out)
    return report


def _reference_summary(reference: dict | None) -> dict | None:
    if reference is None or reference["results"] is None:
        return None
    return {**headline(reference["results"]), "evaluation": reference["results"]}


def _index_all(
    subjects, examples, images: Path | None, speed: dict, settings: BenchSettings, progress
) -> dict:
    """PhotoIndex.add throughput per subject on `images`, or on test images written to a scratch folder,
    beside the model-only throughput at the same batch size."""
    index = {}
    with tempfile.TemporaryDirectory(prefix="siglip2-bench-images-") as scratch:
        folder = images or Path(scratch)
        if images is None:
            export_images(examples, folder, settings.index_images)
        for subject in progress(subjects, "PhotoIndex.add"):
            figures = index_throughput(subject.encoder, folder, settings.batch_size)
            model_only = speed[subject.name]["image"]["batch_per_s"]
            index[subject.name] = {
                **figures,
                "model_only_per_s": model_only,
                "ratio": figures["per_s"] / model_only,
            }
    return index


def _speedup(speed: dict, base: dict) -> dict:
    figures = {}
    for tower in ("image", "text"):
        figures[f"{tower}_batch1"] = base[tower]["batch1_median_ms"] / speed[tower]["batch1_median_ms"]
        figures[f"{tower}_batch"] = speed[tower]["batch_per_s"] / base[tower]["batch_per_s"]
    return figures


# --- the report: JSON, markdown, plots -------------------------------------------------------------------


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
        f"{rates['int8_instructions']})."
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
            x["name"], f"{c['peak']} ({_fmt(c['peak_gops'])})",
            _fmt(c["image"]["gflops"]), _fmt(c["image"]["share_of_peak"], 1, 100),
            _fmt(c["text"]["gflops"]), _fmt(c["text"]["share_of_peak"], 1, 100),
        ])  # fmt: skip
    header = ["model", "peak used (G/s)", "image GFLOP/s", "% of peak", "text GFLOP/s", "% of peak"]
    return f"## Compute at batch {batch} against the peak of the cores in use\n\n" + _table(header, rows)


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
