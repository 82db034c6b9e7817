"""One cell in each framework, set up and ready to time: tlx's compiled train step and the same
model and plan in PyTorch."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from experiments import speed_vs_torch as svt
from experiments.bench.flops import cpu_lowering_flops, step_flops, xla_step_bytes
from experiments.bench.inputs import numpy_batch, random_batches, read_ahead
from experiments.bench.model_flops import model_flops
from experiments.bench.models import initial_variables, is_text, tlx_bundle, torch_model
from experiments.bench.timing import StepTimer, add_throughput
from experiments.bench.trace import trace_steps
from tlx.metrics import peak_memory_bytes, process_max_rss_bytes

if TYPE_CHECKING:
    from experiments.bench.config import BenchConfig, Cell


@dataclasses.dataclass
class LoweredStep:
    """A cell's tlx step lowered for its device (and counted on the CPU lowering), to compile
    now or on a worker thread ahead of timing (compile_ahead)."""

    lowered: object
    lower_s: float
    cpu_count: float | None
    compiled: object = None
    compile_s: float | None = None
    in_parallel: bool = False  # compiled on a worker thread beside other compiles

    def compile(self) -> LoweredStep:
        start = time.perf_counter()
        self.compiled = self.lowered.compile()
        self.compile_s = self.lower_s + time.perf_counter() - start
        return self


def _tlx_build(cell: Cell, cfg: BenchConfig, stack: contextlib.ExitStack):
    """(program, carry, batches, args): the cell's StageProgram on the cached initial weights,
    its batches read ahead, and the arguments of its first step."""
    import jax

    bundle = tlx_bundle(cell.model, cell.precision, cfg)
    make = lambda seed: numpy_batch(cell.model, cell.batch, cfg, seed, torch_layout=False)
    variables = initial_variables(cell.model, cell.precision, cfg)
    program, carry, mode = svt.tlx_stage(
        bundle, cell.plan, train_batches=random_batches(make), variables=variables
    )
    reader = read_ahead(program.train_batches, cfg.prefetch_depth, mode.put_batch)
    batches = stack.enter_context(contextlib.closing(reader))
    args = (*carry, next(batches), jax.random.key(1), 0)
    return program, carry, batches, args


def _lower(program, args, count_on_cpu: bool) -> LoweredStep:
    import jax

    start = time.perf_counter()
    lowered = program.step.lower(*args)
    lower_s = time.perf_counter() - start
    # The CPU lowering counts what an accelerator's library calls hide (step_flops).
    count = count_on_cpu and jax.devices()[0].platform != "cpu"
    return LoweredStep(lowered, lower_s, cpu_lowering_flops(program.step, args) if count else None)


def lower_cell(cell: Cell, cfg: BenchConfig) -> LoweredStep:
    """The cell's step lowered (its weights and batches freed again), ready to compile."""
    with contextlib.ExitStack() as stack:
        program, _, _, args = _tlx_build(cell, cfg, stack)
        return _lower(program, args, cfg.count_flops_on_cpu)


def compile_ahead(cells, cfg: BenchConfig, workers: int) -> dict:
    """{cell: Future[LoweredStep]}: each cell lowered in turn here (tracing holds the GIL) and
    compiled on `workers` threads (XLA compiles without it). Nothing is timed meanwhile: on a GPU
    the compiles' autotuning shares the device. A cell that fails holds its exception."""
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="compile")
    futures = {}
    for cell in cells:
        try:
            futures[cell] = pool.submit(lower_cell(cell, cfg).compile)
        except Exception as exc:  # recorded as the cell's tlx error when it is timed
            futures[cell] = concurrent.futures.Future()
            futures[cell].set_exception(exc)
    pool.shutdown(wait=False)
    return futures


def tlx_prepare(
    cell: Cell,
    cfg: BenchConfig,
    peak: float | None,
    stack: contextlib.ExitStack,
    ahead: LoweredStep | None = None,
):
    """(timer, finish): the cell's compiled tlx step, the trainer's StageProgram, ready to time
    on batches read as the trainer reads them; finish() -> its result. `ahead`: the step
    compiled before (compile_ahead), else it is lowered and compiled here."""
    import jax

    program, carry, batches, args = _tlx_build(cell, cfg, stack)
    if ahead is None:
        ahead = _lower(program, args, cfg.count_flops_on_cpu).compile()
    else:
        ahead.in_parallel = True
    compiled, rng, step_number = ahead.compiled, args[-2], itertools.count()

    def run_step(batch):
        out = compiled(*carry, batch, rng, next(step_number))
        jax.block_until_ready(out)
        carry[:] = svt.next_carry(carry, out)

    timer = StepTimer(run_step, batches, cfg.slow_step_s)

    def finish() -> dict:
        result = timer.result()
        flops, source = step_flops(compiled, ahead.lowered, ahead.cpu_count)
        result.update(compile_s=ahead.compile_s, flops=flops, flops_source=source)
        result["compiled_in_parallel"] = ahead.in_parallel
        result["mfu"] = mfu(flops, result["step_median_s"], peak)
        result["model_flops"] = model_flops(
            cell.model, cell.plan, cell.batch, cfg.image_size, cfg.seq_len
        )
        result["model_mfu"] = mfu(result["model_flops"], result["step_median_s"], peak)
        result["peak_bytes"] = peak_memory_bytes()
        result["xla_step_bytes"] = xla_step_bytes(compiled)
        if cfg.profile_dir:  # after the timed steps: tracing slows the steps it traces
            where = Path(cfg.profile_dir) / cell_name(cell)
            result["profile"] = trace_steps(run_step, batches, cfg.profile_steps, where)
        return add_throughput(result, cell.batch, cfg.seq_len if is_text(cell.model) else None)

    return timer, finish


def cell_name(cell: Cell) -> str:
    return f"{cell.model}_{cell.plan}_b{cell.batch}_{cell.precision}"


def mfu(flops: float | None, step_s: float, peak: float | None) -> float | None:
    return flops / step_s / peak if flops and peak else None


def tlx_result(cell: Cell, cfg: BenchConfig, peak: float | None, ahead=None) -> dict:
    with contextlib.ExitStack() as stack:
        timer, finish = tlx_prepare(cell, cfg, peak, stack, ahead)
        timer.run(cfg.warmup, cfg.steps)
        return finish()


def torch_device_for(jax_platform: str) -> str:
    """torch runs where jax runs: CUDA beside a jax GPU, the CPU beside a jax CPU."""
    import torch

    if jax_platform == "gpu" and torch.cuda.is_available():
        return "cuda"
    if jax_platform == "cpu":
        return "cpu"
    raise RuntimeError(f"no torch device matches jax's {jax_platform!r}")


def configure_torch(device: str, tf32: bool) -> None:
    import torch

    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    else:
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick kernels once, as XLA does
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def torch_prepare(cell: Cell, cfg: BenchConfig, device: str, stack: contextlib.ExitStack):
    """(timer, finish): the cell in PyTorch ready to time, and finish(flops, peak) -> its result,
    MFU counting XLA's FLOPs for the same step (`flops`)."""
    import torch

    net, opt, logits_of = torch_model(cell)
    net.to(device)
    channels_last = cfg.torch_channels_last and not is_text(cell.model)
    if channels_last:  # NHWC, as XLA's CPU convolutions and oneDNN's fast paths want
        net.to(memory_format=torch.channels_last)
    autocast = torch.autocast(device, torch.bfloat16, enabled=cell.precision == "bfloat16")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def run_step(batch):
        batch = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
        if channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = logits_of(batch)
        torch.nn.functional.cross_entropy(logits.float(), batch["label"]).backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    make = lambda seed: numpy_batch(cell.model, cell.batch, cfg, seed, torch_layout=True)
    reader = read_ahead(random_batches(make), cfg.prefetch_depth)
    batches = stack.enter_context(contextlib.closing(reader))
    timer = StepTimer(run_step, batches, cfg.slow_step_s)

    def finish(flops, peak) -> dict:
        result = timer.result()
        result["channels_last"] = channels_last
        result["mfu"] = mfu(flops, result["step_median_s"], peak)
        step_model_flops = model_flops(
            cell.model, cell.plan, cell.batch, cfg.image_size, cfg.seq_len
        )
        result["model_mfu"] = mfu(step_model_flops, result["step_median_s"], peak)
        if device == "cuda":
            result["peak_bytes"] = int(torch.cuda.max_memory_allocated())
        else:
            result["peak_bytes"] = process_max_rss_bytes()
        return add_throughput(result, cell.batch, cfg.seq_len if is_text(cell.model) else None)

    return timer, finish


def torch_result(cell: Cell, cfg: BenchConfig, device: str, flops, peak) -> dict:
    with contextlib.ExitStack() as stack:
        timer, finish = torch_prepare(cell, cfg, device, stack)
        timer.run(cfg.warmup, cfg.steps)
        return finish(flops, peak)


def start_torch(env: dict, tf32: bool) -> str:
    """Import and set up torch on first use, so that jax has loaded its CUDA libraries (cuDNN
    among them) first, and return its device; raises where torch has no device like jax's."""
    if "torch_device" not in env:
        import torch

        env["torch"] = torch.__version__
        env["torch_device"] = torch_device_for(env["platform"])
        configure_torch(env["torch_device"], tf32)
    return env["torch_device"]
