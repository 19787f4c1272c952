"""What one bench run measures and how often: `BenchSettings`, with the checks the CLI's flags get."""

from __future__ import annotations

from dataclasses import dataclass

from siglip2_sdk.core.errors import Siglip2Error

BASELINES = ("transformers", "none")
ACCURACY_MODES = ("full", "cosine", "none")


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
