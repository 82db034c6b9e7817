"""How long a benchmark run will take, cell by cell, and how many timed steps fit its budget.

A GPU is lent to this project for minutes at a time, so a device run must measure every cell of
its profile in one short run: fewer timed steps per cell rather than skipped cells. The plan
estimates each cell from what it costs (compiling tlx's step, PyTorch's first step, which is
where cuDNN picks its kernels, and the steps themselves), then chooses the one timed-step count,
the same for every cell, that fits the whole profile in `budget_s`.
`python -m experiments.bench --profile=gpu --dry_run` prints the plan without touching a device.

The estimates are calibrated on this project's measured runs (experiments/results/
bench_gpu_h200_run1-4.json, NVIDIA H200, jax 0.11.2, torch 2.11): per model, the finetune step
time per example at the measured batch size and precision, scaled linearly to other batch sizes
(a larger batch is never slower per example, so this errs long), feature extraction at 0.45 of
finetune (ResNet-50 measured 0.41), and each compile time as measured. Where a precision was
not measured the other one stands in, and where a model was not measured at all the step time
comes from its model FLOPs at the slowest efficiency measured. On a CPU the same model FLOPs
over a quarter of the CPU's peak stand in for the step (the project's CPU runs reached 10-40%).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from experiments.bench.config import BenchConfig, Cell, cell_order
from experiments.bench.model_flops import model_flops
from experiments.bench.models import BERT_VARIANTS, is_text

# Per model, measured on one H200 (runs 1-4; the batch is in each figure): finetune seconds per
# example by precision; tlx's compile seconds per plan (trace + lower + XLA compile, as measured);
# and torch's first step over an ordinary one, where cuDNN autotunes the cell's convolutions. A
# process's first torch step also starts CUDA (some 6-11 s: ResNet-50's first cell took 24.5 s,
# its second 13.3; VGG16's 11.7 and 6.4): that is in RUN_OVERHEAD_S, not here.
GPU_MEASURED = {
    "resnet50": {
        "step_per_example": {"float32": 0.0359 / 64, "bfloat16": 0.0326 / 64},
        "compile_s": {"finetune": 15.7, "feature_extraction": 2.0},
        "torch_autotune_s": 13.3,
    },
    "bert_base": {
        "step_per_example": {"float32": 0.0571 / 32},
        "compile_s": {"finetune": 42.1},
        "torch_autotune_s": 0.5,
    },
    "vgg16": {
        "step_per_example": {"float32": 0.0448 / 64, "bfloat16": 0.0272 / 64},
        "compile_s": {"finetune": 21.3},
        "torch_autotune_s": 6.4,
    },
    "mobilenet_v2": {
        "step_per_example": {"bfloat16": 0.0345 / 64},
        "compile_s": {"finetune": 31.2},
        "torch_autotune_s": 6.1,  # its only cell, 12.2 s, was its process's first
    },
}
FEATURE_EXTRACTION_SHARE = 0.45  # of a finetune step (and of its compile, where not measured)
TORCH_STEP_FACTOR = 1.6  # torch's step against tlx's, the slowest measured
# Model FLOP/s of the slowest measured GPU cell (BERT-base finetune float32: 2.2 TFLOP in 57 ms),
# for models the table does not hold.
GPU_FLOOR_FLOPS_PER_S = 3.8e13
CPU_PEAK_SHARE = 0.25
CPU_COMPILE_S = {"finetune": 20.0, "feature_extraction": 8.0, "freeze_half": 15.0}
# Tracing and lowering a step, serial in Python (the rest of a compile runs on worker threads):
# about 2-5 s on the 2-core CPU under load, taken as 3 s for BERT and 2 s for a CNN.
LOWER_S = {"text": 3.0, "image": 2.0}
# Per cell besides compiling and steps: placing the initial weights, the optimizer's state and
# PyTorch's model copy on the device; per run: imports, start-up, each model's first weights,
# CUDA's start in torch.
CELL_OVERHEAD_S = 3.0
RUN_OVERHEAD_S = 40.0


@dataclasses.dataclass(frozen=True)
class CellEstimate:
    cell: Cell
    compile_s: float  # tlx: lowering + XLA compile
    lower_s: float  # the serial part of compile_s (tracing and lowering)
    torch_first_s: float  # torch's first step beyond an ordinary one (0 without torch)
    step_s: float  # one tlx step
    torch_step_s: float  # one torch step (0 without torch)
    source: str  # what the step estimate comes from

    def seconds(self, steps: int, warmup: int, overlap_compile: bool = False) -> float:
        """The cell's wall time with `steps` timed steps (compile left out when overlapped)."""
        per_step = self.step_s + self.torch_step_s
        compile_s = 0.0 if overlap_compile else self.compile_s
        return CELL_OVERHEAD_S + compile_s + self.torch_first_s + (warmup + steps) * per_step


def _measured(model: str) -> dict:
    """The table's entry for `model` (a BERT attention variant is timed as its base model)."""
    return GPU_MEASURED.get(BERT_VARIANTS[model][0] if is_text(model) else model, {})


def _flops_or_finetune(cell: Cell, cfg: BenchConfig) -> float:
    """The cell's model FLOPs, or finetune's where its plan has no formula (an upper bound)."""
    sizes = (cell.batch, cfg.image_size, cfg.seq_len)
    return model_flops(cell.model, cell.plan, *sizes) or model_flops(cell.model, "finetune", *sizes)


def _gpu_step(cell: Cell, cfg: BenchConfig) -> tuple[float, str]:
    measured = _measured(cell.model).get("step_per_example", {})
    per_example = measured.get(cell.precision) or next(iter(measured.values()), None)
    if per_example is None:
        return _flops_or_finetune(cell, cfg) / GPU_FLOOR_FLOPS_PER_S, "model FLOPs, slowest rate"
    share = FEATURE_EXTRACTION_SHARE if cell.plan == "feature_extraction" else 1.0
    source = "H200 measured" + ("" if cell.precision in measured else ", other precision")
    return per_example * cell.batch * share, source


def _gpu_compile(cell: Cell) -> float:
    compiles = _measured(cell.model).get("compile_s", {"finetune": 40.0})
    if cell.plan in compiles:
        return compiles[cell.plan]
    return compiles["finetune"] * (FEATURE_EXTRACTION_SHARE if cell.plan != "finetune" else 1.0)


def _torch_first(cell: Cell, seen: set) -> float:
    """cuDNN autotunes each new convolution shape once: a cell whose shapes a previous cell of
    the same model, batch and precision already tuned (its forward pass) costs little. The
    measured figures are at batch 64; a larger batch's trials take longer (taken as its square
    root: unmeasured)."""
    autotune = _measured(cell.model).get("torch_autotune_s", 10.0)
    key = (cell.model, cell.batch, cell.precision)
    tuned = key in seen
    seen.add(key)
    return 0.5 if tuned else autotune * max(1.0, (cell.batch / 64) ** 0.5)


def estimate_cells(cfg: BenchConfig, platform: str, cpu_peak: dict | None = None):
    """Every cell of `cfg` in run order, estimated for `platform` ("gpu" or "cpu")."""
    estimates, seen = [], set()
    for cell in cell_order(cfg):
        if platform == "gpu":
            step_s, source = _gpu_step(cell, cfg)
            compile_s = _gpu_compile(cell)
            torch_first = _torch_first(cell, seen) if cfg.torch else 0.0
        else:
            peak = (cpu_peak or {}).get(cell.precision) or 1e11
            flops = _flops_or_finetune(cell, cfg)
            step_s, source = flops / (peak * CPU_PEAK_SHARE), "model FLOPs at 25% of CPU peak"
            compile_s = CPU_COMPILE_S.get(cell.plan, 20.0) * (2.0 if is_text(cell.model) else 1.0)
            torch_first = step_s if cfg.torch else 0.0
        torch_step = step_s * TORCH_STEP_FACTOR if cfg.torch else 0.0
        lower_s = LOWER_S["text" if is_text(cell.model) else "image"]
        estimates.append(
            CellEstimate(cell, compile_s, lower_s, torch_first, step_s, torch_step, source)
        )
    return estimates


def compile_phase_s(estimates: Sequence[CellEstimate], workers: int) -> float:
    """Wall time of compiling every cell up front: the steps are lowered one after the other
    (Python holds the GIL) and compiled on `workers` threads as they come, so the phase lasts
    the serial lowering plus the last compile, or the compiles shared out, whichever is more."""
    if not estimates:
        return 0.0
    serial = sum(e.lower_s for e in estimates)
    last = estimates[-1].compile_s - estimates[-1].lower_s
    shared = sum(e.compile_s - e.lower_s for e in estimates) / workers
    return max(serial + last, shared + estimates[0].lower_s)


def run_seconds(
    estimates: Sequence[CellEstimate], steps: int, warmup: int, compile_workers: int = 0
) -> float:
    """The whole run's estimated wall time with `steps` timed steps in every cell."""
    overlap = compile_workers > 0
    cells = sum(e.seconds(steps, warmup, overlap) for e in estimates)
    upfront = compile_phase_s(estimates, compile_workers) if overlap else 0.0
    return RUN_OVERHEAD_S + upfront + cells


@dataclasses.dataclass(frozen=True)
class RunPlan:
    estimates: tuple[CellEstimate, ...]
    steps: int  # timed steps in every cell
    warmup: int
    compile_workers: int
    budget_s: float | None
    total_s: float

    @property
    def fits(self) -> bool:
        return self.budget_s is None or self.total_s <= self.budget_s


def plan_run(
    cfg: BenchConfig,
    platform: str,
    budget_s: float | None,
    min_steps: int = 3,
    cpu_peak: dict | None = None,
) -> RunPlan:
    """The most timed steps (at most cfg.steps, at least `min_steps`) for which every cell fits
    in `budget_s`; when even `min_steps` does not fit, the plan says so (fits is False) rather
    than dropping cells."""
    estimates = tuple(estimate_cells(cfg, platform, cpu_peak))
    total = lambda s: run_seconds(estimates, s, cfg.warmup, cfg.compile_workers)
    steps = cfg.steps
    if budget_s is not None:
        steps = max(
            (s for s in range(min_steps, cfg.steps + 1) if total(s) <= budget_s),
            default=min(min_steps, cfg.steps),
        )
    return RunPlan(estimates, steps, cfg.warmup, cfg.compile_workers, budget_s, total(steps))


def plan_table(plan: RunPlan) -> str:
    """The plan as Markdown: one line per cell with its estimate, then the total."""
    overlap = plan.compile_workers > 0
    lines = [
        f"Plan: {len(plan.estimates)} cells, {plan.steps} timed steps each after "
        f"{plan.warmup} warm-up"
        + (f"; tlx steps compiled up front on {plan.compile_workers} threads" if overlap else ""),
        "",
        "| # | model | plan | batch | precision | compile s | torch first s | step ms "
        "| torch step ms | cell s | step estimate from |",
        "|" + "---|" * 11,
    ]
    for i, e in enumerate(plan.estimates, 1):
        c = e.cell
        cell_s = e.seconds(plan.steps, plan.warmup, overlap)
        lines.append(
            f"| {i} | {c.model} | {c.plan} | {c.batch} | {c.precision} | {e.compile_s:.1f} "
            f"| {e.torch_first_s:.1f} | {e.step_s * 1e3:.1f} | {e.torch_step_s * 1e3:.1f} "
            f"| {cell_s:.1f} | {e.source} |"
        )
    upfront = compile_phase_s(plan.estimates, plan.compile_workers) if overlap else 0.0
    budget = "no budget" if plan.budget_s is None else f"budget {plan.budget_s:.0f} s"
    verdict = "fits" if plan.fits else "DOES NOT FIT: fewer cells or a larger budget"
    lines += [
        "",
        f"Total: {plan.total_s:.0f} s ({plan.total_s / 60:.1f} min) = start-up "
        f"{RUN_OVERHEAD_S:.0f} s + compile phase {upfront:.0f} s + cells "
        f"{plan.total_s - RUN_OVERHEAD_S - upfront:.0f} s; {budget}: {verdict}.",
    ]
    return "\n".join(lines) + "\n"
