"""MFU's two halves: a step's FLOPs (and memory) from XLA's cost analysis, and the device's peak
FLOP/s (vendor tables; on CPU, a measured figure or large matmuls timed at start-up)."""

from __future__ import annotations

import time
from collections.abc import Callable

from tlx.flops import first_cost, lowering_flops

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
# This project's 2-core AMD EPYC (AVX2), measured by --measure_cpu_peak (best of 5 timed
# 2048x2048 matmuls after a warm-up; jax 0.10.2, torch 2.14) on an otherwise idle machine,
# 2026-11-26, the best of two runs: float32 150 GFLOP/s (the other run: 120), bfloat16 112 (108;
# jax's: torch's CPU bfloat16 matmul runs at 0.3). With other processes running it measured 57
# and 52: the machine drifts by 2x and more.
CPU_PEAK = {"float32": 150e9, "bfloat16": 112e9}


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


def xla_step_bytes(compiled) -> int | None:
    """XLA's own memory need for the step: arguments + outputs + temporaries, less aliasing."""
    try:
        stats = compiled.memory_analysis()
    except Exception:
        return None
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


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
    """Best large-matmul FLOP/s per precision, the higher of jax's and (float32 only) torch's: the
    most a real workload could reach on this CPU. torch's CPU bfloat16 matmul is left out: at
    0.3 GFLOP/s here it would take minutes and never be the higher one."""
    peaks = {precision: jax_matmul_peak(precision, n) for precision in ("float32", "bfloat16")}
    if with_torch:
        peaks["float32"] = max(peaks["float32"], torch_matmul_peak("float32", n))
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
