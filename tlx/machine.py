"""The machine a run or benchmark ran on, in one line: for summary.json and results tables."""

from __future__ import annotations

import os
import platform
import subprocess

# Vector/matrix extensions that decide CPU matmul speed, best first. Without avx512_bf16 or AMX
# neither XLA nor PyTorch has a native bfloat16 matmul on the CPU.
_ISA_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def cpu_info() -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo, or (platform.processor(), empty) without one."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and cpu in ("", platform.machine()):
                    cpu = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return cpu, flags


def cpu_isa(flags: set[str]) -> str:
    """E.g. 'AVX2' or 'AVX-512, AVX512-BF16': the extensions present, best first."""
    names = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16", "avx512f": "AVX-512"}
    found = [names.get(flag, flag.upper()) for flag in _ISA_FLAGS if flag in flags]
    return ", ".join(found) or "no AVX2"


def machine() -> str:
    """CPU model and vector extensions, CPU count, and the accelerators."""
    cpu, flags = cpu_info()
    text = f"{cpu}"
    if flags:
        text += f" ({cpu_isa(flags)})"
    text += f", {os.cpu_count()} CPUs ({platform.system()})"
    try:
        import jax

        devices = [d for d in jax.devices() if d.platform != "cpu"]
        if devices:
            text += f", {len(devices)} x {devices[0].device_kind}"
    except Exception:  # a table should still name the CPU if JAX cannot start
        pass
    return text


def git_commit() -> str:
    """The checkout's short commit, which every published table names; 'unknown' outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()
