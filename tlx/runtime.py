"""Process-wide runtime settings, applied where tlx starts (before JAX initialises its backend)."""

from __future__ import annotations

import os

# Defaults that measured faster on CPU; a user's own XLA_FLAGS entries for the same flag win.
DEFAULT_XLA_FLAGS: dict[str, str] = {}


def configure(num_cpu_devices: int | None = None, experiment_flags: str = "") -> None:
    """Merge tlx's default XLA flags into XLA_FLAGS and quiet TensorFlow-style logging.

    Precedence, highest first: the user's own XLA_FLAGS, then the experiment's `xla_flags`
    (a config field: flags measured faster for that model, e.g. VGG's convolutions on CPU), then
    tlx's defaults. XLA reads its flags once per process, when JAX starts its backend, so this
    runs before anything touches a device.
    """
    flags = os.environ.get("XLA_FLAGS", "").split()
    present = {f.split("=")[0] for f in flags}
    for flag in experiment_flags.split():
        if flag.split("=")[0] not in present:
            flags.append(flag)
            present.add(flag.split("=")[0])
    defaults = dict(DEFAULT_XLA_FLAGS)
    if num_cpu_devices:
        defaults["--xla_force_host_platform_device_count"] = str(num_cpu_devices)
    flags += [f"{k}={v}" for k, v in defaults.items() if k not in present]
    os.environ["XLA_FLAGS"] = " ".join(flags)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    enable_compilation_cache()


def enable_compilation_cache() -> None:
    """Persist compiled steps across processes: a resumed or repeated run skips recompiling."""
    from tlx.zoo.places import cache_root  # the one cache root

    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_root() / "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
