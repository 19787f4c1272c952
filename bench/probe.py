"""Load time and peak memory, in a fresh interpreter per model, so each figure is that model's alone."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from siglip2_sdk.core.errors import Siglip2Error

from .settings import BenchSettings
from .subjects import Subject, subject_fields


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


def probe_in_fresh_process(subject: Subject, threads: int | None, batch: int) -> dict:
    """`probe` in a new interpreter (not multiprocessing: its spawn re-runs the caller's main script)."""
    request = {"subject": subject_fields(subject), "threads": threads, "batch": batch}
    code = "from siglip2_sdk.bench.probe import probe_main; probe_main()"
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


def probe_all(subjects: list[Subject], threads: int | None, settings: BenchSettings, progress) -> dict:
    """`probe` of each subject, `settings.probe_processes` fresh processes at a time."""
    with ThreadPoolExecutor(settings.probe_processes) as pool:  # threads that wait on the processes
        jobs = [pool.submit(probe_in_fresh_process, s, threads, settings.batch_size) for s in subjects]
        at_once = settings.probe_processes
        waited = progress(jobs, f"load time and peak memory (a process each, {at_once} at a time)")
        return {subject.name: job.result() for subject, job in zip(subjects, waited, strict=True)}
