"""The driver: every cell of a config in order, within the time budget, one row each; an error
in a cell is recorded and the run goes on."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import gc
import os
import platform
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from experiments import speed_vs_torch as svt
from experiments.bench.config import BenchConfig, Cell, cell_order, validate
from experiments.bench.flops import measure_cpu_peak, peak_flops, theoretical_cpu_peak
from experiments.bench.frameworks import (
    compile_ahead,
    start_torch,
    tlx_prepare,
    tlx_result,
    torch_prepare,
    torch_result,
)
from experiments.bench.models import is_text
from experiments.bench.plan import plan_run, plan_table
from experiments.bench.report import error_text, table_line, write_reports
from experiments.bench.timing import time_interleaved
from tlx.precision import LOW_PRECISION, widened_on_backend


def free_memory(torch_used: bool) -> None:
    """Drop what a failed or finished cell left, so that the next one starts with free memory."""
    gc.collect()
    if torch_used:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_cell(cell: Cell, cfg: BenchConfig, env: dict, ahead=None) -> dict:
    """One row: tlx, then (with --torch) torch, or both in interleaved rounds (cfg.rounds > 1);
    an exception in either is recorded, not raised. `ahead`: a Future of the cell's tlx step
    compiled before (frameworks.compile_ahead)."""
    row = {**dataclasses.asdict(cell), "kind": "text" if is_text(cell.model) else "image"}
    row["input"] = f"seq {cfg.seq_len}" if is_text(cell.model) else f"{cfg.image_size}px"
    peak, peak_name = peak_flops(env["device"], cell.precision, cfg.tf32, env["cpu_peak"])
    row.update(peak_flops=peak, peak_name=peak_name, status="ok", rounds=1)
    row["load_avg_1m"] = os.getloadavg()[0]  # other processes on the machine skew the times
    start = time.perf_counter()
    row["tlx"] = row["torch"] = None
    if cfg.torch and cfg.rounds > 1:
        run_interleaved(cell, cfg, env, peak, row, ahead)
    else:
        run_in_turn(cell, cfg, env, peak, row, ahead)
    if row.get("tlx") and row.get("torch"):
        row["tlx_vs_torch"] = row["torch"]["step_median_s"] / row["tlx"]["step_median_s"]
    row["cell_s"] = time.perf_counter() - start
    return row


def _record_tlx_error(row: dict, exc: BaseException) -> None:
    row.update(status="error", error=error_text(exc), tlx=None)
    row["traceback"] = "".join(traceback.format_exception(exc, limit=8))


def _record_torch_error(row: dict, exc: BaseException) -> None:
    row["torch"] = None
    row["torch_error"] = error_text(exc)
    if row["status"] == "ok":
        row["status"] = "torch_error"


def run_in_turn(cell: Cell, cfg: BenchConfig, env: dict, peak, row: dict, ahead=None) -> None:
    """tlx's steps, its memory freed, then torch's (the GPU default: one model in memory)."""
    try:
        row["tlx"] = tlx_result(cell, cfg, peak, ahead and ahead.result())
    except Exception as exc:
        _record_tlx_error(row, exc)
    free_memory(False)
    if cfg.torch:
        flops = (row.get("tlx") or {}).get("flops")
        try:
            device = start_torch(env, cfg.tf32)
            row["torch"] = torch_result(cell, cfg, device, flops, peak)
        except Exception as exc:
            _record_torch_error(row, exc)
        free_memory(True)


def run_interleaved(cell: Cell, cfg: BenchConfig, env: dict, peak, row: dict, ahead=None) -> None:
    """Both frameworks set up at once and timed in alternating rounds (time_interleaved); one
    that fails is recorded and the other goes on. Both models are in memory together, so a CPU
    process's peak memory covers both."""
    row["rounds"] = cfg.rounds
    with contextlib.ExitStack() as stack:
        tlx = torch_ = None
        try:
            tlx = tlx_prepare(cell, cfg, peak, stack, ahead and ahead.result())
        except Exception as exc:
            _record_tlx_error(row, exc)
        try:
            device = start_torch(env, cfg.tf32)
            torch_ = torch_prepare(cell, cfg, device, stack)
        except Exception as exc:
            _record_torch_error(row, exc)
        timers = [t for t, _ in (x for x in (tlx, torch_) if x)]
        time_interleaved(timers, cfg.steps, cfg.warmup, cfg.rounds)
        if tlx:
            if tlx[0].error:
                _record_tlx_error(row, tlx[0].error)
            else:
                row["tlx"] = tlx[1]()
        if torch_:
            if torch_[0].error:
                _record_torch_error(row, torch_[0].error)
            else:
                row["torch"] = torch_[1]((row.get("tlx") or {}).get("flops"), peak)
    free_memory(True)


def machine() -> str:
    return f"{svt.machine()}, {platform.python_implementation()} {platform.python_version()}"


def environment(cfg: BenchConfig, measure_peak: bool) -> dict:
    """Device, versions and peaks, once per run; sets the float32 matmul precision."""
    import jax

    if not cfg.tf32:
        jax.config.update("jax_default_matmul_precision", "highest")
    device = jax.devices()[0]
    env = {
        "device": device,
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "machine": machine(),
        "cpu_peak": theoretical_cpu_peak(),
        "cpu_peak_source": "cores x clock x FLOPs per cycle of the instruction set",
        "compilation_cache": os.environ.get("JAX_COMPILATION_CACHE_DIR"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jaxlib": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
    }
    if device.platform == "gpu":
        env["cuda"] = gpu_versions()
    # Low precisions XLA has no kernels for here (tlx.precision): the report says so.
    env["widened"] = {
        p: list(ops)
        for p in cfg.precisions
        if p in LOW_PRECISION and (ops := widened_on_backend(p))
    }
    if measure_peak and device.platform == "cpu":
        env["cpu_peak"] = measure_cpu_peak(with_torch=cfg.torch)
        env["cpu_peak_source"] = "theoretical, raised to the best matmul measured at start-up"
    return env


def _jaxlib_version() -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return None


def over_budget(cfg: BenchConfig, elapsed: float, rows: Sequence[dict]) -> bool:
    """Past the budget, or the slowest cell so far would end past it."""
    if cfg.time_budget_s is None:
        return False
    slowest = max((r.get("cell_s", 0.0) for r in rows), default=0.0)
    return elapsed + slowest > cfg.time_budget_s


def planned(cfg: BenchConfig, env: dict) -> tuple[BenchConfig, dict]:
    """`cfg` with the timed steps its plan fits in cfg.plan_budget_s, and the plan's summary."""
    plan = plan_run(cfg, env["platform"], cfg.plan_budget_s, cfg.plan_min_steps, env["cpu_peak"])
    print(plan_table(plan), flush=True)
    summary = {"steps": plan.steps, "estimate_s": plan.total_s, "fits": plan.fits}
    summary["budget_s"] = plan.budget_s
    overlap = plan.compile_workers > 0  # each cell's share, as the total counts it
    summary["cell_estimates_s"] = [
        e.seconds(plan.steps, plan.warmup, overlap) for e in plan.estimates
    ]
    return dataclasses.replace(cfg, steps=plan.steps), summary


CUDA_VERSION_GETTERS = (
    "cuda_driver_get_version",
    "cuda_runtime_get_version",
    "cudnn_get_version",
    "cublas_get_version",
)


def gpu_versions() -> dict:
    """The CUDA driver, runtime, cuDNN and cuBLAS versions jax's CUDA plugin reports ({} without
    one): a GPU figure is read against them."""
    try:
        from jax._src.lib import cuda_versions
    except ImportError:
        return {}
    if cuda_versions is None:
        return {}
    versions = {}
    for name in CUDA_VERSION_GETTERS:
        getter = getattr(cuda_versions, name, None)
        try:
            versions[name.removesuffix("_get_version")] = getter() if getter else None
        except Exception as exc:  # noqa: BLE001 - a version is a nicety
            versions[name.removesuffix("_get_version")] = error_text(exc)
    return versions


def public(env: dict) -> dict:
    return {k: v for k, v in env.items() if k != "device"}


def run_bench(cfg: BenchConfig, out: Path, measure_peak: bool = False) -> dict:
    """Every cell of `cfg`, most important first; reports rewritten in `out` after each."""
    validate(cfg)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = environment(cfg, measure_peak)
    report = {
        "config": dataclasses.asdict(cfg),
        "environment": public(env),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "status": "running",
        "rows": [],
    }
    print(f"devices: {env['device']} x{env['device_count']} ({env['device_kind']})", flush=True)
    if cfg.plan_budget_s is not None:
        cfg, report["plan"] = planned(cfg, env)
        report["config"] = dataclasses.asdict(cfg)
    cells = cell_order(cfg)
    ahead = {}
    if cfg.compile_workers > 0:
        compile_start = time.perf_counter()
        ahead = compile_ahead(cells, cfg, cfg.compile_workers)
        concurrent.futures.wait(ahead.values())
        report["compile_phase_s"] = time.perf_counter() - compile_start
        print(f"compiled {len(cells)} steps in {report['compile_phase_s']:.0f} s", flush=True)
    for cell in cells:
        elapsed = time.perf_counter() - started
        if over_budget(cfg, elapsed, report["rows"]):
            row = {**dataclasses.asdict(cell), "status": "skipped", "tlx": None, "torch": None}
            row.update(peak_flops=None, peak_name="")
        else:
            row = run_cell(cell, cfg, env, ahead.get(cell))
        report["rows"].append(row)
        report["elapsed_s"] = time.perf_counter() - started
        report["environment"] = public(env)
        print(table_line(row), flush=True)
        write_reports(report, out)
    report["status"] = "done"
    report["elapsed_s"] = time.perf_counter() - started
    write_reports(report, out)
    return report
