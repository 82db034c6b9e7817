"""One line naming the machine a benchmark ran on, for every results table."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    """CPU model (from /proc/cpuinfo where there is one), CPU count, and the accelerators."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} CPUs ({platform.system()})"
    try:
        import jax

        devices = [d for d in jax.devices() if d.platform != "cpu"]
        if devices:
            text += f", {len(devices)} x {devices[0].device_kind}"
    except Exception:  # a table should still name the CPU if JAX cannot start
        pass
    return text
