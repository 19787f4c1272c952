"""The machine and its compute limit: CPU model, cores, the instruction-set flags that matter for
inference, the clock, the peak fp32 and int8 rates they give, and the package versions in use."""

from __future__ import annotations

import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = (
    "siglip2-sdk", "numpy", "onnxruntime", "torch", "executorch", "ai-edge-litert", "transformers",
    "tokenizers", "pillow",
)  # fmt: skip

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
        "peak_fp32_gflops": peak(rates["fp32"], cores, mhz),
        "peak_int8_gops": peak(rates["int8"], cores, mhz),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def measured_peaks(threads: int, sizes: tuple[int, ...] = (1536, 3072), runs: int = 5) -> dict:
    """What the cores in use reach, measured: the best of `runs` square GEMMs of each of `sizes` in fp32
    (torch, oneDNN / MKL) and in u8 x s8 int8 (onnxruntime's MatMulInteger, MLAS), in G(FL)OP/s.
    Several sizes because the int8 GEMM writes int32 results: at 1536 that traffic held it 10-30%
    below what it reaches at 3072.

    The flags-based peak multiplies a clock that virtual machines misreport (/proc/cpuinfo gives the
    TSC rate; boost is invisible) by a per-cycle rate; these runs include the real clock and what this
    CPU's best kernels reach, so the benchmark compares bundles with them. Hand-written: no library
    reports either figure. None where torch or onnxruntime is missing."""
    fp32, int8 = {}, {}
    for size in sizes:
        operations = 2 * size**3
        fp32[size] = _best_rate(_torch_gemm(size, threads), operations, runs)
        int8[size] = _best_rate(_onnxruntime_int8_gemm(size, threads), operations, runs)
    return {
        "fp32_gflops": None if None in fp32.values() else max(fp32.values()),
        "int8_gops": None if None in int8.values() else max(int8.values()),
        "sizes": list(sizes),
        "threads": threads,
    }


def _best_rate(call, operations: int, runs: int) -> float | None:
    if call is None:
        return None
    call()  # warm-up: first-touch, packing, thread start
    best = min(_seconds(call) for _ in range(runs))
    return operations / best / 1e9


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _torch_gemm(size: int, threads: int):
    try:
        import torch
    except ImportError:
        return None
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(size, size, generator=generator), torch.rand(size, size, generator=generator)

    def call():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            torch.mm(a, b)
        finally:
            torch.set_num_threads(before)

    return call


def _onnxruntime_int8_gemm(size: int, threads: int):
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-64, 64, (size, size), dtype=np.int8), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 128, (size, size), dtype=np.uint8)
    return lambda: session.run(None, {"a": a})


def machine_summary() -> str:
    """One line for a results file: CPU model, cores, OS and architecture."""
    info = machine_info()
    return f"{info['cpu']}, {info['physical_cores']} cores, {platform.system()} {info['architecture']}"


def peak(per_cycle: int, cores: int, mhz: float | None) -> float | None:
    return per_cycle * cores * mhz / 1000 if mhz else None


def package_versions() -> dict[str, str]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions
