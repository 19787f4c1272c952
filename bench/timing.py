"""Speed: every model timed in interleaved rounds on the same real inputs, and what that speed is as a
share of the machine's peak. `seconds` and `median_ms` are the one stopwatch the demo uses too."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from siglip2_sdk.core.preprocess import preprocess
from siglip2_sdk.core.shards import Example
from siglip2_sdk.encoder import Encoder

from .machine import peak
from .settings import BenchSettings
from .subjects import Subject, caption_of


@dataclass
class TimingInputs:
    pixels: np.ndarray  # (B, 3, H, W)
    input_ids: np.ndarray  # (B, L)


def timing_inputs(encoder: Encoder, examples: Sequence[Example], batch: int) -> TimingInputs:
    """A batch of real test images and captions, repeated when the split is smaller than the batch."""
    chosen = [examples[i % len(examples)] for i in range(batch)]
    return TimingInputs(
        pixels=preprocess([e.image for e in chosen], encoder.image_preprocessing),
        input_ids=encoder.tokenizer([caption_of(e) for e in chosen]),
    )


CASES = (("image", "batch1"), ("text", "batch1"), ("image", "batch"), ("text", "batch"))


def _call(subject: Subject, inputs: TimingInputs, tower: str, size: str) -> Callable[[], object]:
    rows = 1 if size == "batch1" else len(inputs.pixels)
    backend = subject.encoder.backend
    if tower == "image":
        pixels = inputs.pixels[:rows]
        return lambda: backend.embed_pixels(pixels)
    ids = inputs.input_ids[:rows]
    return lambda: backend.embed_tokens(ids)


def seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def median_ms(call: Callable[[], object], runs: int, warmup: int = 3) -> float:
    """Median milliseconds of `runs` calls after `warmup` untimed ones: one model on its own."""
    for _ in range(warmup):
        call()
    return 1000 * statistics.median(seconds(call) for _ in range(runs))


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
                times[subject.name][f"{tower}/{size}"].append(seconds(call))
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


def compute_figures(
    speed: dict, flops: dict[str, int], precision: str, machine: dict, threads: int, int8_shares=None
) -> dict:
    """Achieved GFLOP/s at the throughput batch and its share of the peak of the cores in use: the int8
    peak for int8 bundles, the fp32 peak otherwise (CPU runtimes compute fp16 bundles in fp32). The
    peak is the measured one (`machine["measured_peak"]`, on these threads) where there is one, else
    the flags-based one; both are kept. With `int8_shares` (per tower, the share of its FLOPs on int8
    operands), an int8 bundle also gets the share of the rate its mix allows: its int8 FLOPs at the
    int8 peak and the rest at the fp32 peak."""
    cores = min(threads, machine["physical_cores"])
    key = "int8" if precision == "int8" else "fp32"
    limits = {}
    for kind, rate in (("int8", "int8_gops"), ("fp32", "fp32_gflops")):
        flags_limit = peak(machine["per_cycle_per_core"][kind], cores, machine["clock_mhz"])
        limits[kind] = ((machine.get("measured_peak") or {}).get(rate), flags_limit)
    measured, flags_limit = limits[key]
    limit = measured or flags_limit
    figures = {
        "peak": key, "peak_gops": limit, "peak_source": "measured" if measured else "flags",
        "flags_peak_gops": flags_limit, "cores": cores,
    }  # fmt: skip
    for tower in ("image", "text"):
        achieved = flops[tower] * speed[tower]["batch_per_s"] / 1e9
        figures[tower] = {"gflops": achieved, "share_of_peak": achieved / limit if limit else None}
        int8_share = (int8_shares or {}).get(tower)
        if key == "int8" and int8_share is not None:
            int8_peak, fp32_peak = (limits[kind][0] or limits[kind][1] for kind in ("int8", "fp32"))
            mix_peak = 1 / (int8_share / int8_peak + (1 - int8_share) / fp32_peak)
            figures[tower]["share_of_mix_peak"] = achieved / mix_peak
    return figures
