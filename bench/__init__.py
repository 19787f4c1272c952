"""`siglip2-sdk bench`: how fast, how big, how heavy and how faithful bundles are, against transformers'
eager fp32 model and the float checkpoint they were exported from, measured in one run.

Timings are interleaved: every round times every model once, in a rotating order, so drift and other
load on the machine hit all models alike. Load time and peak RSS come from a fresh process per model,
so each figure is that model's alone. FLOPs come from the model shape, the machine's peak from its CPU
flags and clock, so the distance to the compute limit is a number.
"""

from __future__ import annotations

from .indexing import export_images
from .machine import machine_info, machine_summary, package_versions, per_cycle_rates
from .run import run_bench
from .settings import BenchSettings
from .subjects import BASELINE_NAME, open_bundle

__all__ = [
    "BASELINE_NAME",
    "BenchSettings",
    "export_images",
    "machine_info",
    "machine_summary",
    "open_bundle",
    "package_versions",
    "per_cycle_rates",
    "run_bench",
]
