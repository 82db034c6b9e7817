"""`python -m experiments.bench`'s flags and main (see experiments.bench)."""

from __future__ import annotations

from pathlib import Path

from absl import flags

from experiments import speed_vs_torch as svt  # noqa: F401 (defines the shared flags)
from experiments.bench.config import PROFILES, BenchConfig, validate, with_overrides
from experiments.bench.flops import theoretical_cpu_peak
from experiments.bench.plan import plan_run, plan_table
from experiments.bench.report import markdown
from experiments.bench.run import run_bench

# Shared with speed_vs_torch (defined there, so importing both does not define them twice).
_MODELS, _PLANS, _STEPS, _WARMUP, _OUT = (
    flags.FLAGS[name] for name in ("models", "plans", "steps", "warmup", "out")
)
_PROFILE = flags.DEFINE_enum(
    "profile", "cpu_small", ["cpu_small", "cpu_transfer", "gpu"], "Cells and step counts."
)
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", None, "Batch sizes, for every model.")
_PRECISIONS = flags.DEFINE_list("precisions", None, "float32 and/or bfloat16.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Square input size of the CNNs.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", None, "Tokens per example for BERT.")
_TORCH = flags.DEFINE_boolean("torch", None, "Also time the same cells in PyTorch.")
_TIME_BUDGET = flags.DEFINE_float(
    "time_budget_s", None, "Start no cell past this many seconds (the rest are 'skipped')."
)
_SLOW_STEP = flags.DEFINE_float(
    "slow_step_s",
    None,
    "A framework whose first warm-up step takes longer than this is timed on one step only.",
)
_CHANNELS_LAST = flags.DEFINE_boolean(
    "torch_channels_last", True, "PyTorch CNNs run in channels_last (NHWC) memory format."
)
_TF32 = flags.DEFINE_boolean("tf32", True, "GPU float32: allow TF32 (JAX's default) in both.")
_ROUNDS = flags.DEFINE_integer(
    "rounds",
    None,
    "With --torch: time both frameworks in this many alternating rounds (1: one after the other).",
)
_PLAN_BUDGET = flags.DEFINE_float(
    "plan_budget_s",
    None,
    "Cut the timed steps per cell until the whole run's estimate fits this many seconds.",
)
_COMPILE_WORKERS = flags.DEFINE_integer(
    "compile_workers", None, "> 0: compile every tlx step up front on this many threads."
)
_PROFILE_DIR = flags.DEFINE_string(
    "profile_dir",
    None,
    "Trace a few more tlx steps of every cell here (TensorBoard / XProf) and report the "
    "device's busy share of them.",
)
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", None, "Steps traced per cell.")
_DRY_RUN = flags.DEFINE_boolean(
    "dry_run", False, "Print the plan (cells, estimates, total) and stop; no device is used."
)
_MEASURE_CPU_PEAK = flags.DEFINE_boolean(
    "measure_cpu_peak", False, "On CPU, time large matmuls first and use them as the peak."
)


def config_from_flags() -> BenchConfig:
    """The profile with every flag that was given on the command line laid over it."""
    holders = {
        "models": _MODELS,
        "plans": _PLANS,
        "batch_sizes": _BATCH_SIZES,
        "precisions": _PRECISIONS,
        "steps": _STEPS,
        "warmup": _WARMUP,
        "image_size": _IMAGE_SIZE,
        "seq_len": _SEQ_LEN,
        "torch": _TORCH,
        "time_budget_s": _TIME_BUDGET,
        "slow_step_s": _SLOW_STEP,
        "rounds": _ROUNDS,
        "plan_budget_s": _PLAN_BUDGET,
        "compile_workers": _COMPILE_WORKERS,
        "profile_dir": _PROFILE_DIR,
        "profile_steps": _PROFILE_STEPS,
    }
    given = {name: holder.value for name, holder in holders.items() if holder.present}
    return with_overrides(
        PROFILES[_PROFILE.value],
        tf32=_TF32.value,
        torch_channels_last=_CHANNELS_LAST.value,
        **given,
    )


def dry_run(cfg: BenchConfig) -> str:
    """The plan a run of `cfg` would follow, for the device its profile is for."""
    platform = "gpu" if cfg.profile == "gpu" else "cpu"
    budget = cfg.plan_budget_s if cfg.plan_budget_s is not None else cfg.time_budget_s
    plan = plan_run(cfg, platform, budget, cfg.plan_min_steps, theoretical_cpu_peak())
    return f"Dry run of profile {cfg.profile} on {platform}.\n\n" + plan_table(plan)


def main(argv):
    del argv
    cfg = config_from_flags()
    if _DRY_RUN.value:
        validate(cfg)
        print(dry_run(cfg))
        return
    out = Path(_OUT.value if _OUT.present else f"runs/bench_{cfg.profile}")
    report = run_bench(cfg, out, _MEASURE_CPU_PEAK.value)
    print(markdown(report))
    print(f"wrote {out}/bench.json, bench.md, bench.png")
