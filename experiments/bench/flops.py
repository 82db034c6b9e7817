"""MFU's two halves: a step's FLOPs (and memory) from XLA's cost analysis, and the device's peak
FLOP/s (vendor tables; on CPU, a measured figure or large matmuls timed at start-up)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from tlx.flops import compiled_step_bytes, first_cost, lowering_flops

# Dense peak FLOP/s per precision, first substring of jax's device_kind that matches wins.
# Vendor figures without sparsity; "tf32" is what float32 matmuls run at on GPUs by default.
# TPUs run float32 matmuls as bfloat16 passes by default, so they fall back to the bfloat16 peak.
H100_SXM = {"bfloat16": 989e12, "tf32": 494.7e12, "float32": 67e12}
PEAKS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"bfloat16": 756e12, "tf32": 378e12, "float32": 51e12}),
    ("H100", H100_SXM),
    ("H200", H100_SXM),  # same compute as the H100 SXM, more and faster memory
    ("A100", {"bfloat16": 312e12, "tf32": 156e12, "float32": 19.5e12}),
    ("TPU v4", {"bfloat16": 275e12}),
    ("TPU v5 lite", {"bfloat16": 197e12}),  # v5e's device_kind
    ("TPU v5e", {"bfloat16": 197e12}),
    ("TPU v5p", {"bfloat16": 459e12}),
    ("TPU v5", {"bfloat16": 459e12}),  # v5p's device_kind
]
# A CPU's dense peak is its cores x clock x FLOPs per core per cycle, which its instruction set
# decides: two fused multiply-add pipes per core (every x86 server core since Haswell), each
# 2 FLOPs per lane, 8 float32 lanes with AVX2 and 16 with AVX-512 (Zen 4 runs AVX-512 through
# 256-bit halves: half this, so the figure is an upper bound there). bfloat16: AVX512-BF16's
# VDPBF16PS does two products per float32 lane (twice the float32 rate); an AMX tile unit
# 1,024 bfloat16 FLOPs per cycle (Intel's figure for Sapphire Rapids); without either, bfloat16
# runs at the float32 rate or worse. A measured table taken on one machine kind (the project's
# AVX2 EPYC: 150 GFLOP/s) put MFU at 145-215% on the AVX-512 ones.
FLOAT32_FLOPS_PER_CYCLE = {"avx512f": 64, "avx2": 32}
BFLOAT16_FLOPS_PER_CYCLE = {"amx_bf16": 1024, "avx512_bf16": 128}


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_clock_hz() -> float | None:
    """The highest clock the OS reports: cpufreq's maximum, else /proc/cpuinfo's current MHz
    (a VM shows only its nominal clock; turbo may run above it: see theoretical_cpu_peak)."""
    candidates = []
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    with contextlib.suppress(OSError, ValueError):
        candidates.append(float(max_freq.read_text()) * 1e3)  # kHz
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                candidates.append(float(line.partition(":")[2]) * 1e6)
    return max(candidates, default=None)


def flops_per_cycle(flags: set[str]) -> dict[str, float]:
    """Dense float32 and bfloat16 FLOPs per core per cycle for a CPU with these flags."""
    float32 = next((v for k, v in FLOAT32_FLOPS_PER_CYCLE.items() if k in flags), 16)
    bfloat16 = next((v for k, v in BFLOAT16_FLOPS_PER_CYCLE.items() if k in flags), float32)
    return {"float32": float32, "bfloat16": bfloat16}


def theoretical_cpu_peak(flags=None, clock_hz=None, cores=None) -> dict[str, float]:
    """{precision: FLOP/s} of this CPU from its cores, clock and instruction set. Measured step
    rates stay under it unless the cores turbo above the reported clock; --measure_cpu_peak
    raises it to the best measured matmul, so that MFU stays at most 100% there too."""
    flags = cpu_flags() if flags is None else flags
    clock_hz = clock_hz or cpu_clock_hz() or 3e9
    cores = cores or len(os.sched_getaffinity(0))
    return {p: cores * clock_hz * f for p, f in flops_per_cycle(flags).items()}


# One FLOP count for training and benchmarks (tlx.flops): the trainer records compute per run.
cpu_lowering_flops = lowering_flops


def step_flops(compiled, lowered, cpu_count=None) -> tuple[float | None, str | None]:
    """FLOPs of one step from XLA's cost analysis: the largest of the compiled, the lowered and
    (`cpu_count`, on accelerators) the CPU lowering's counts. On GPU the compiled program hands
    convolutions and matmuls to cuDNN and cuBLAS custom calls that the analysis cannot count
    (ResNet-50 finetune at batch 64: 11.6 GFLOP counted against 1,509 real), and the GPU lowering
    had no count at all on the H200 of 2026-11-26; the CPU lowering of the same step counts them."""
    counts = {"cpu_lowering": float(cpu_count)} if cpu_count else {}
    for source, stage in (("compiled", compiled), ("lowered", lowered)):
        try:
            flops = first_cost(stage.cost_analysis()).get("flops")
        except Exception:  # some backends do not implement it
            flops = None
        if flops and flops > 0:
            counts[source] = float(flops)
    if not counts:
        return None, None
    source = max(counts, key=counts.get)
    return counts[source], source


# XLA's own memory need for a compiled step (tlx.flops, where the trainer measures it too).
xla_step_bytes = compiled_step_bytes


def matmul_flops_per_s(matmul: Callable[[], object], n: int, repeats: int = 5) -> float:
    matmul()  # compile / warm up
    best = min(_timed(matmul) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def jax_matmul_peak(precision: str, n: int) -> float:
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), precision)
    dot = jax.jit(lambda x: x @ x)
    return matmul_flops_per_s(lambda: dot(a).block_until_ready(), n)


def torch_matmul_peak(precision: str, n: int) -> float:
    import torch

    a = torch.ones((n, n), dtype=getattr(torch, precision))
    return matmul_flops_per_s(lambda: a @ a, n)


def measure_cpu_peak(n: int = 2048, with_torch: bool = True) -> dict[str, float]:
    """Per precision, the higher of the theoretical peak and the best large matmul measured
    (jax's, and torch's too with `with_torch`): a clock running above the reported one shows
    here, so MFU stays at most 100%. torch's bfloat16 matmul is timed only on CPUs with native
    bfloat16 instructions: elsewhere it ran at 0.3 GFLOP/s (AVX2 EPYC), minutes for one."""
    peaks = theoretical_cpu_peak()
    native_bfloat16 = bool(cpu_flags() & set(BFLOAT16_FLOPS_PER_CYCLE))
    for precision in ("float32", "bfloat16"):
        peaks[precision] = max(peaks[precision], jax_matmul_peak(precision, n))
        if with_torch and (precision == "float32" or native_bfloat16):
            peaks[precision] = max(peaks[precision], torch_matmul_peak(precision, n))
    return peaks


def peak_flops(device, precision: str, tf32: bool, cpu_peak: dict) -> tuple[float | None, str]:
    """(dense peak FLOP/s, what it is) for this device and precision; None where unknown."""
    if device.platform == "cpu":
        return cpu_peak.get(precision), f"cpu {precision}"
    kind = device.device_kind
    for pattern, peaks in PEAKS:
        if pattern in kind:
            name = "tf32" if precision == "float32" and tf32 and "tf32" in peaks else precision
            name = name if name in peaks else "bfloat16"
            return peaks[name], f"{pattern} {name}"
    return None, f"{kind}: no peak in the table"
