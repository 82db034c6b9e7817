"""The training loop over an assembled :class:`~tlx.experiment.Experiment`.

Read top to bottom: initialise (fresh init + pretrained merge, or ``init_from`` another run), resume
from the workdir's latest checkpoint if there is one, then step. Each plan stage compiles its own
train step; at a stage boundary the optimizer state of groups that keep training carries over and
newly unfrozen groups start fresh. A run killed at any point and restarted with the same workdir
ends with the same parameters as one that never stopped: the batch for step s is a pure function of
(seed, s) and so is its dropout key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from tlx import run_folder
from tlx.checkpoint import Checkpoints
from tlx.data.iterate import iterate_batches
from tlx.errors import CheckpointError, TlxError
from tlx.experiment import Experiment
from tlx.machine import machine
from tlx.metrics import MetricWriter, add_sums, peak_memory_bytes
from tlx.parallel_modes import make_mode
from tlx.stage_program import StagePrograms
from tlx.steps import (
    check_accumulation,
)
from tlx.tasks import batch_weights
from tlx.transfer.batchnorm import batchnorm_param_paths, check_policy, with_affine_labels
from tlx.transfer.groups import assign_groups
from tlx.transfer.optim import StageOptimizers, carry_over
from tlx.transfer.plans import Plan
from tlx.tree import flatten, unflatten
from tlx.weights.merge import merge_pretrained


class NonFiniteLossError(TlxError, FloatingPointError):
    pass


def non_finite_message(cfg, loss: float, step: int, stage: int, checkpoints: Checkpoints) -> str:
    """What happened, what exists on disk, and advice that fits this config."""
    optim = cfg["optim"]
    lr, clip = float(optim["learning_rate"]), optim.get("clip_norm", None)
    last = checkpoints.latest_step()
    if last is None:
        saved = (
            f"No checkpoint was written yet (the first is due at step {cfg['checkpoint_every']})."
        )
    else:
        saved = f"The last checkpoint is step {last} in {checkpoints.directory}."
    advice = [f"a lower optim.learning_rate (now {lr:g}; try {lr / 10:g})"]
    if not clip:
        advice.append("optim.clip_norm=1.0 (gradients are not clipped now)")
    if cfg["model"].get("compute_dtype") == "float16":
        advice.append("model.compute_dtype='bfloat16' (float16 overflows above 65504)")
    clipped = f" Gradients are already clipped to norm {clip}." if clip else ""
    resume_from = (
        ""
        if last is None
        else f", or --config.init_from=<this workdir> to start from step {last}'s weights"
    )
    return (
        f"Loss became {loss} at step {step} (stage {stage}); stopping. {saved}{clipped} Train "
        f"again in a new --workdir with {' or '.join(advice)}{resume_from}."
    )


def initial_params(exp: Experiment, rng, log=print):
    """Fresh init, then the pretrained weights, then (optionally) another run's parameters."""
    variables = jax.jit(exp.model.init)(rng)  # one compilation instead of one per op
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    if exp.model.pretrained is not None:
        params, report = merge_pretrained(
            params, exp.model.pretrained, allow_fresh=exp.model.allow_fresh
        )
        log(report.summary())
    for collection, flat in exp.model.pretrained_state.items():  # e.g. BatchNorm statistics
        model_state[collection], _ = merge_pretrained(model_state[collection], flat)
    init_from = exp.config.get("init_from", "")
    if init_from:
        other = Checkpoints(Path(init_from) / run_folder.CHECKPOINTS)
        try:
            params = other.restore_params(params_like=params)
            model_state = other.restore_model_state(model_state)
        except CheckpointError as e:
            raise type(e)(f"config.init_from={init_from!r}: {e}") from e
        log(f"Initialised all parameters from the run in {init_from} (its latest checkpoint).")
    return jax.tree_util.tree_map(np.asarray, params), model_state


def optimizer_labels(exp: Experiment, group_of, flat_params, model_state):
    """The plan and path -> optimizer label map the run steps with: the model's groups, plus a
    `<group>/bn` label per group when frozen BatchNorm layers train their affine parameters."""
    model_cfg = exp.config["model"]
    if check_policy(model_cfg.get("frozen_batchnorm", "frozen")) != "affine":
        return exp.plan, group_of
    bn_paths = batchnorm_param_paths(flat_params, model_state)
    multiplier = float(model_cfg.get("frozen_batchnorm_lr_multiplier", 1.0))
    return with_affine_labels(exp.plan, group_of, bn_paths, multiplier)


def train_state_of(opt_state, dropout_rng) -> dict:
    """What a checkpoint's ``train_state`` item holds: what training needs besides the model."""
    return {"opt_state": opt_state, "rng": jax.random.key_data(dropout_rng)}


@dataclasses.dataclass
class RunStart:
    """Where a run begins: step 0 with fresh (or pretrained) parameters, or the newest intact
    checkpoint of its workdir, which fixes step, stage, optimizer state and RNG."""

    step: int
    stage_index: int
    params: dict
    model_state: dict
    opt_state: object
    dropout_rng: jax.Array
    plan: Plan
    group_of: dict[str, str]  # parameter path -> optimizer label
    shapes: dict  # parameter path -> ShapeDtypeStruct
    optimizer_for: StageOptimizers
    checkpoints: Checkpoints


def start_or_resume(exp: Experiment, workdir: Path, log=print) -> RunStart:
    cfg = exp.config
    init_rng, dropout_rng = jax.random.split(jax.random.key(int(cfg["seed"])))
    params, model_state = initial_params(exp, init_rng, log)
    flat = flatten(params)
    group_of = assign_groups(list(flat), exp.model.groups)
    plan, group_of = optimizer_labels(exp, group_of, flat, model_state)
    optimizer_for = StageOptimizers(plan, group_of, cfg["optim"], int(cfg["total_steps"]))
    checkpoints = Checkpoints(
        workdir / run_folder.CHECKPOINTS, int(cfg.get("keep_checkpoints", 2)), writer=True
    )
    # The saved optimizer state belongs to the stage of the last step taken (step - 1); if the
    # step opens a new stage, the loop moves to it exactly as an unbroken run does.
    stage_at = lambda step: plan.stage_index_at(max(step - 1, 0))

    def restore_at(step: int):
        like = train_state_of(jax.eval_shape(optimizer_for(stage_at(step)).init, flat), dropout_rng)
        return step, checkpoints.restore(step, params, like, model_state)

    # A damaged newer checkpoint is set aside (Checkpoints.restore_latest_intact).
    resumed = checkpoints.restore_latest_intact(restore_at, log)
    step = resumed[0] if resumed else 0
    if resumed:
        params, train_state, meta, model_state = resumed[1]
        opt_state = train_state["opt_state"]
        dropout_rng = jax.random.wrap_key_data(train_state["rng"])
        log(f"Resumed from {checkpoints.directory} at step {step} (stage {meta['stage']}).")
    else:
        opt_state = jax.jit(optimizer_for(stage_at(0)).init)(flat)
    # Shapes from here on: the step donates parameter buffers, so the arrays may be invalidated.
    shapes = {p: jax.ShapeDtypeStruct(np.shape(v), v.dtype) for p, v in flat.items()}
    return RunStart(
        step, stage_at(step), params, model_state, opt_state, dropout_rng, plan, group_of,
        shapes, optimizer_for, checkpoints,
    )  # fmt: skip


class TrainWindow:
    """Train metrics between two log steps: the task's sums, the examples and the time spent
    waiting for input (how far the input pipeline lags the step)."""

    def __init__(self, task, batch_size: int):
        self.task, self.batch_size = task, batch_size
        self.total_wait = 0.0
        self.reset()

    def reset(self) -> None:
        self.sums, self.examples, self.waited, self.start = None, 0, 0.0, time.perf_counter()

    def wait(self, seconds: float) -> None:
        self.waited += seconds
        self.total_wait += seconds

    def add(self, metrics) -> None:
        self.sums = add_sums(self.sums, {k: metrics[k] for k in self.task.sum_keys})
        self.examples += self.batch_size

    def values(self) -> dict:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        values = self.task.summarize(self.sums)
        values.pop("examples")
        values["examples_per_sec"] = self.examples / elapsed
        values["input_wait_fraction"] = self.waited / elapsed
        return values


def check_batch_sizes(exp: Experiment, mode) -> int:
    """Every batch divides over the devices; returns the micro-batches per step."""
    cfg = exp.config
    mode.check_batch_size(int(cfg["batch_size"]))
    for batches in exp.eval_batches.values():
        # several processes: each holds its 1/count of the rows (tlx.data.sampling.Shard)
        global_rows = len(batch_weights(batches[0])) * jax.process_count()
        mode.check_batch_size(global_rows, "eval batch size")
    accum_steps = int(cfg.get("grad_accum_steps", 1))
    check_accumulation(int(cfg["batch_size"]) // mode.num_devices, accum_steps)
    return accum_steps


def train(exp: Experiment, workdir: str | Path, *, log=print, progress: bool = True) -> dict:
    called = time.perf_counter()
    cfg, task, workdir = exp.config, exp.task, Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    is_lead = jax.process_index() == 0
    total_steps, batch_size = int(cfg["total_steps"]), int(cfg["batch_size"])
    mode = make_mode(cfg.get("parallel", "jit"), cfg.get("sharding"))  # jit (+ rules) or pmap
    accum_steps = check_batch_sizes(exp, mode)
    config_changes = run_folder.check_resume(workdir, cfg)  # refuses before anything is written
    run = start_or_resume(exp, workdir, log)
    plan, checkpoints, stage_index, dropout_rng = (
        run.plan,
        run.checkpoints,
        run.stage_index,
        run.dropout_rng,
    )
    if is_lead:
        run_folder.record_start(workdir, cfg, config_changes, run.step)
    tx = run.optimizer_for(stage_index)
    params, model_state, opt_state = mode.replicate((run.params, run.model_state, run.opt_state))
    if hasattr(mode, "describe"):  # parameters split over a 'model' axis
        log(mode.describe(params))
    # Steps take and give flat dicts: the stage's trainable parameters, its frozen ones (fixed for
    # the stage, never handed back) and the model state ('batch_stats/...' paths).
    trainable, frozen, state = {}, flatten(params), flatten(model_state)
    writer = MetricWriter(workdir, enabled=is_lead)
    writer.truncate_after(run.step)
    programs = StagePrograms(
        exp, plan, run.group_of, run.shapes, mode,
        clip_norm=cfg["optim"].get("clip_norm", None),
        accum_steps=accum_steps,
        cache_mode=cfg.get("feature_cache", "off"),
        cache_chunk=int(cfg["data"].get("eval_batch_size", batch_size)),
        workdir=workdir, write_audit=is_lead, log=log, progress=progress,
    )  # fmt: skip
    program, trainable, frozen = programs.start(stage_index, frozen, state, opt_state, tx)
    bar = tqdm(
        total=total_steps, initial=run.step, disable=not (progress and is_lead), desc="train"
    )
    window = TrainWindow(task, batch_size)
    workers = int(cfg["data"].get("workers", 0))
    # Worker processes would each copy a feature cache; a thread reads cached batches ahead.
    read_ahead = lambda source, step: iterate_batches(
        source,
        step,
        num_workers=0 if programs.cache is not None else workers,
        to_device=mode.put_batch,
    )
    batches = read_ahead(program.train_batches, run.step)

    def stop() -> None:  # before raising: the bar, the prefetching and the metric files end
        bar.close()
        batches.close()
        writer.close()

    def record(first_step: int, stage: int, chunk_metrics, count: int) -> dict:
        """Metrics of `count` steps (stacked when count > 1) to the host, one step at a time:
        stop on a non-finite loss, else add to the window. Returns the last step's metrics."""
        chunk_metrics = jax.device_get(mode.host_metrics(chunk_metrics))  # one wait, then host
        for i in range(count):
            metrics = chunk_metrics if count == 1 else {k: v[i] for k, v in chunk_metrics.items()}
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                stop()
                message = non_finite_message(cfg, loss, first_step + i, stage, checkpoints)
                raise NonFiniteLossError(message)
            window.add(metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", stage=stage, refresh=False)  # tqdm paces redraws
        return metrics

    def save(step: int):
        train_state = train_state_of(mode.unreplicate(opt_state), dropout_rng)
        meta = {"step": step, "stage": plan.stage_index_at(max(step - 1, 0))}
        # One copy of everything (pmap holds one per device): checkpoints are mode-independent.
        params = mode.unreplicate(unflatten({**frozen, **trainable}))
        try:
            checkpoints.save(step, params, train_state, meta, unflatten(mode.unreplicate(state)))
        except CheckpointError:  # e.g. a full disk: stop cleanly, the error says what is intact
            stop()
            raise

    started = time.perf_counter()
    final_results = {}  # evaluations made at the last step, reused below
    steps_per_call = int(cfg.get("steps_per_call", 1))  # checked by check_config
    log_every, eval_every = int(cfg.get("log_every", 50)), int(cfg["eval_every"])
    checkpoint_every = int(cfg["checkpoint_every"])

    def chunk_end(step: int) -> int:
        """The first step after `step` where something happens (log, eval, save, new stage)."""
        ends = [
            total_steps,
            *((step // n + 1) * n for n in (log_every, eval_every, checkpoint_every)),
        ]
        return min(ends + [b for b in plan.boundaries if b > step])

    step, pending, last_metrics = run.step, None, {}  # pending: the last step's unread metrics
    while step < total_steps:
        if plan.stage_index_at(step) != stage_index:
            old_stage = plan.stages[stage_index]
            stage_index = plan.stage_index_at(step)
            tx = run.optimizer_for(stage_index)
            fresh = mode.replicate(jax.jit(tx.init)(mode.unreplicate({**frozen, **trainable})))
            opt_state = carry_over(opt_state, fresh, old_stage, plan.stages[stage_index])
            old_batches = program.train_batches
            program, trainable, frozen = programs.start(
                stage_index, {**frozen, **trainable}, state, opt_state, tx
            )
            if program.train_batches is not old_batches:  # cached features came or went
                batches.close()
                batches = read_ahead(program.train_batches, step)

        count = min(steps_per_call, chunk_end(step) - step)
        wait_start = time.perf_counter()
        chunk = [next(batches) for _ in range(count)]  # already on the device(s)
        window.wait(time.perf_counter() - wait_start)
        # One step per call, or (steps_per_call > 1) a scan over `count` steps that ends at the
        # next log / eval / save / stage step, so everything happens where it would with 1.
        step_call = program.step if count == 1 else program.multi_step
        trainable, state_updates, opt_state, step_metrics = step_call(
            trainable,
            program.read_frozen,
            program.state_for_step(state),
            opt_state,
            chunk[0] if count == 1 else tuple(chunk),
            dropout_rng,
            step,
        )
        if state_updates:  # e.g. BatchNorm statistics in "train" mode
            state = {**state, **state_updates}
        # The step runs asynchronously: read the previous step's metrics while it does, so the
        # host's work overlaps the device's (it matters for steps of a millisecond, e.g. cached).
        if pending is not None:
            last_metrics = record(*pending)
        pending = (step, stage_index, step_metrics, count)
        done = step + count
        at_log = done % log_every == 0 or done == total_steps
        at_eval = done % eval_every == 0 or done == total_steps
        at_save = done % checkpoint_every == 0 or done == total_steps
        if at_log or at_eval or at_save:  # nothing is logged or saved past an unchecked loss
            last_metrics, pending = record(*pending), None

        if at_log:
            values = window.values()
            values["grad_norm"] = float(last_metrics["grad_norm"])
            for group, rate in run.optimizer_for.learning_rates(stage_index, done - 1).items():
                values[f"lr/{group}"] = rate
            writer.write(done, "train", values)
            window.reset()
        if at_eval:
            split = cfg["data"].get("eval_split", "validation")
            result = programs.evaluate(split, {**frozen, **trainable}, state)
            # Wall time since train() began (set-up, caches, evaluations included): for
            # time-to-accuracy curves.
            writer.write(done, split, {**result, "elapsed_seconds": time.perf_counter() - called})
            if done == total_steps:
                final_results[split] = result
            bar.write(f"step {done}: {split} {task.headline(result)}")
            window.start = time.perf_counter()  # keep eval time out of examples/s
        if at_save:
            save(done)
            window.start = time.perf_counter()
        step = done
    bar.close()
    batches.close()  # stops prefetching (and worker processes)
    train_seconds = time.perf_counter() - started

    results = {
        split: final_results.get(split) or programs.evaluate(split, {**frozen, **trainable}, state)
        for split in exp.eval_batches
    }
    for split, result in results.items():
        writer.write(total_steps, f"final_{split}", result)
    writer.close()
    checkpoints.close()
    summary = {
        "plan": plan.name,
        "model": exp.model.description,
        "steps": total_steps,
        "resumed_from_step": run.step,
        "train_examples": exp.train_size,  # distinct labelled examples drawn from
        "train_seconds_this_run": round(train_seconds, 2),
        "input_wait_fraction": round(window.total_wait / max(train_seconds, 1e-9), 4),
        # Whole steps of this run (compilation included), and the memory high-water mark.
        "examples_per_sec": round(
            (total_steps - run.step) * batch_size / max(train_seconds, 1e-9), 2
        ),
        "peak_memory_bytes": peak_memory_bytes(),
        "machine": machine(),  # seconds and examples/s compare only within one machine
        "results": results,
    }
    if is_lead:
        (workdir / run_folder.SUMMARY).write_text(json.dumps(summary, indent=1))
    return summary
