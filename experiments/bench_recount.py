"""Recount the FLOPs, and so the MFU, of a saved benchmark run on the CPU lowering of each step.

Accelerator runs made before `bench.cpu_lowering_flops` existed took their FLOPs from the GPU's
compiled program, whose cost analysis cannot see into the cuDNN / cuBLAS calls that do the
convolutions and matmuls (ResNet-50 finetune at batch 64: 11.6 GFLOP counted against 1,509 real),
so their MFU column was 100x too low. A step's FLOP count depends only on its program, not on the
device: this rebuilds each cell's tlx step (random init, same model, plan, batch, precision and
input size), lowers it for the CPU, counts, and recomputes both frameworks' MFU from the step
times and peaks already in the file. No time is re-measured; the run needs no accelerator.

    python -m experiments.bench_recount experiments/results/bench_gpu_h200_run1.json

rewrites that .json and its .md beside it, and records the recount in the report.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import app

from experiments import bench
from experiments import speed_vs_torch as svt
from experiments.bench.model_flops import model_flops
from tlx import cli
from tlx.machine import git_commit

RECOUNT_SOURCE = "cpu_lowering (recounted)"

CellKey = tuple[str, str, int, str]  # model, plan, batch, precision


def config_of(report: dict) -> bench.BenchConfig:
    """The BenchConfig a report was made with (fields it does not name keep their defaults)."""
    fields = {f.name for f in dataclasses.fields(bench.BenchConfig)}
    given = {k: v for k, v in report["config"].items() if k in fields}
    return bench.BenchConfig(**given)


def count_step_flops(key: CellKey, cfg: bench.BenchConfig) -> float | None:
    """FLOPs of the cell's tlx train step, counted on its CPU lowering."""
    import jax

    model, plan, batch, precision = key
    program, carry, _ = svt.tlx_stage(bench.tlx_bundle(model, precision, cfg), plan)
    inputs = bench.numpy_batch(model, batch, cfg, seed=0, torch_layout=False)
    return bench.cpu_lowering_flops(program.step, (*carry, inputs, jax.random.key(1), 0))


def add_model_mfu(row: dict, cfg: bench.BenchConfig) -> None:
    """Each framework's MFU on the architecture's FLOPs (experiments.bench.model_flops)."""
    flops = model_flops(row["model"], row["plan"], int(row["batch"]), cfg.image_size, cfg.seq_len)
    row["tlx"]["model_flops"] = flops
    for result in (row["tlx"], row.get("torch") or {}):
        if result.get("step_median_s"):
            result["model_mfu"] = bench.mfu(flops, result["step_median_s"], row.get("peak_flops"))


def recount(report: dict, count: Callable[[CellKey, bench.BenchConfig], float | None]) -> dict:
    """`report` with each measured row's FLOPs and MFU from `count`; times are untouched."""
    cfg = config_of(report)
    counts: dict[CellKey, float | None] = {}
    for row in report["rows"]:
        tlx = row.get("tlx")
        if not tlx or not tlx.get("step_median_s"):
            continue  # skipped or failed: nothing was timed
        key = (row["model"], row["plan"], int(row["batch"]), row["precision"])
        add_model_mfu(row, cfg)
        if key not in counts:
            counts[key] = count(key, cfg)
        flops, peak = counts[key], row.get("peak_flops")
        if not flops:
            continue
        tlx.update(flops=flops, flops_source=RECOUNT_SOURCE)
        for result in (tlx, row.get("torch") or {}):
            if result.get("step_median_s") and peak:
                result["mfu"] = flops / result["step_median_s"] / peak
    report["flops_recount"] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "commit": git_commit(),
        "machine": bench.machine(),
        "cells": len(counts),
    }
    return report


def recount_file(path: Path, count=count_step_flops) -> dict:
    if path.suffix != ".json" or not path.is_file():
        raise ValueError(f"expected a benchmark report .json, found {str(path)!r}")
    report = json.loads(path.read_text())
    if "rows" not in report or "config" not in report:
        raise ValueError(f"{path} has no 'rows' and 'config': not a report from experiments.bench")
    report = recount(report, count)
    bench.write_atomic(path, json.dumps(report, indent=1, default=str))
    bench.write_atomic(path.with_suffix(".md"), bench.markdown(report))
    return report


def main(argv: Sequence[str]) -> None:
    paths = [Path(p) for p in argv[1:]]
    if not paths:
        raise app.UsageError("give one or more report .json files from experiments.bench")
    for path in paths:
        report = recount_file(path)
        mfus = [r["tlx"]["mfu"] for r in report["rows"] if (r.get("tlx") or {}).get("mfu")]
        print(
            f"{path}: {report['flops_recount']['cells']} cells recounted; tlx MFU "
            + (f"{min(mfus):.1%}–{max(mfus):.1%}" if mfus else "none")
        )


if __name__ == "__main__":
    cli.run(main, program="experiments.bench_recount")
