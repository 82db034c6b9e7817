"""The machine a run or benchmark ran on, in one line: for summary.json and results tables."""

from __future__ import annotations

import os
import platform
import subprocess

# Vector/matrix extensions that decide CPU matmul speed, best first. Without avx512_bf16 or AMX
# neither XLA nor PyTorch has a native bfloat16 matmul on the CPU.
_ISA_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


# AMD's CPU generations by (family, model range): a VM's model name is often just "AMD EPYC",
# which names Zen 3, Zen 4 and Zen 5 alike, and these run the same program at different speeds.
_AMD_CORES = (
    (25, range(0x00, 0x10), "Zen 3"),
    (25, range(0x10, 0x20), "Zen 4"),
    (25, range(0x20, 0x60), "Zen 3"),
    (25, range(0x60, 0x80), "Zen 4"),
    (25, range(0xA0, 0xB0), "Zen 4"),
    (26, range(0x00, 0x100), "Zen 5"),
)


def cpu_generation(vendor: str, family: int | None, model: int | None) -> str:
    """E.g. 'family 25 model 17, Zen 4': enough to tell two CPUs with one model name apart."""
    if family is None or model is None:
        return ""
    text = f"family {family} model {model}"
    if vendor == "AuthenticAMD":
        core = next((name for f, ms, name in _AMD_CORES if f == family and model in ms), "")
        text += f", {core}" if core else ""
    return text


def cpu_info(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """(model name with its family and model, flags) from /proc/cpuinfo, or
    (platform.processor(), empty) without one."""
    cpu, flags = platform.processor() or platform.machine(), set()
    fields: dict[str, str] = {}
    try:
        with open(path) as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if not key and fields:  # the first processor is enough
                    break
                fields.setdefault(key, value.strip())
    except OSError:
        return cpu, flags
    cpu = fields.get("model name") or cpu
    flags = set(fields.get("flags", "").split())
    number = {k: int(fields[k]) for k in ("cpu family", "model") if fields.get(k, "").isdigit()}
    generation = cpu_generation(
        fields.get("vendor_id", ""), number.get("cpu family"), number.get("model")
    )
    return (f"{cpu} [{generation}]" if generation else cpu), flags


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
