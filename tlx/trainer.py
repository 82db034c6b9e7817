"""The training loop over an assembled :class:`~tlx.experiment.Experiment`.

Read top to bottom: :func:`train` starts the run (or resumes it from the workdir's latest intact
checkpoint, :mod:`tlx.run_start`), then steps to the end, logging, evaluating and saving on the
way; :class:`Session` holds what changes while it does (the stage's compiled program, the device
state, the input stream, the metric files). Each plan stage compiles its own train step; at a
stage boundary the optimizer state of groups that keep training carries over and newly unfrozen
groups start fresh. A run killed at any point and restarted with the same workdir ends with the
same parameters as one that never stopped: the batch for step s is a pure function of (seed, s)
and so is its dropout key.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
from tqdm.auto import tqdm

from tlx import run_folder
from tlx.adaptation.describe import describe_adaptation
from tlx.checkpoint import Checkpoints
from tlx.data.iterate import iterate_batches
from tlx.errors import CheckpointError, TlxError
from tlx.experiment import Experiment
from tlx.flops import FlopCounter, lowering_flops, step_memory_bytes
from tlx.machine import machine
from tlx.metrics import MetricWriter, add_sums, peak_memory_bytes
from tlx.parallel_modes import make_mode
from tlx.precision import precision_notice
from tlx.run_start import (  # noqa: F401 - initial_params and friends: also imported from here
    RunStart,
    check_batch_sizes,
    initial_params,
    optimizer_labels,
    start_or_resume,
    train_state_of,
)
from tlx.selection import Selection, SelectionState, set_aside_future_best
from tlx.spec import RunSpec
from tlx.stage_program import StagePrograms
from tlx.transfer import audit
from tlx.transfer.optim import carry_over
from tlx.tree import flatten, unflatten


class NonFiniteLossError(TlxError, FloatingPointError):
    pass


def non_finite_message(
    spec: RunSpec, loss: float, step: int, stage: int, checkpoints: Checkpoints
) -> str:
    """What happened, what exists on disk, and advice that fits this config."""
    lr, clip = float(spec.optim.learning_rate), spec.optim.clip_norm
    last = checkpoints.latest_step()
    if last is None:
        saved = f"No checkpoint was written yet (the first is due at step {spec.checkpoint_every})."
    else:
        saved = f"The last checkpoint is step {last} in {checkpoints.directory}."
    advice = [f"a lower optim.learning_rate (now {lr:g}; try {lr / 10:g})"]
    if not clip:
        advice.append("optim.clip_norm=1.0 (gradients are not clipped now)")
    if spec.model.compute_dtype == "float16":
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


class Events:
    """When something happens besides a step: a log, an evaluation, a checkpoint, a new stage."""

    def __init__(self, spec: RunSpec, boundaries):
        self.total = spec.total_steps
        self.log, self.eval, self.save = spec.log_every, spec.eval_every, spec.checkpoint_every
        self.boundaries = boundaries

    def next_after(self, step: int) -> int:
        """The first step after `step` where something happens."""
        ends = [self.total, *((step // n + 1) * n for n in (self.log, self.eval, self.save))]
        return min(ends + [b for b in self.boundaries if b > step])

    def at(self, done: int) -> tuple[bool, bool, bool]:
        """(log, evaluate, save) once `done` steps are taken."""
        last = done == self.total
        return tuple(done % n == 0 or last for n in (self.log, self.eval, self.save))


class Session:
    """One training session of a run, from its start (or resume) step to the end: the compiled
    stage program, the parameters and states on the device(s), the input stream, the progress bar
    and the metric files."""

    def __init__(self, exp: Experiment, workdir: Path, run: RunStart, mode, accum_steps: int,
                 *, log, progress: bool, called: float):  # fmt: skip
        spec = exp.spec
        self.exp, self.spec, self.run, self.mode, self.log = exp, spec, run, mode, log
        self.called, self.is_lead = called, jax.process_index() == 0
        self.workdir = workdir
        self.stage_index = run.stage_index
        params, model_state, self.opt_state = mode.replicate(
            (run.params, run.model_state, run.opt_state)
        )
        if hasattr(mode, "describe"):  # parameters split over a 'model' axis
            log(mode.describe(params))
        # Steps take and give flat dicts: the stage's trainable parameters, its frozen ones (fixed
        # for the stage, never handed back) and the model state ('batch_stats/...' paths).
        self.state = flatten(model_state)
        self.writer = MetricWriter(workdir, enabled=self.is_lead)
        self.writer.truncate_after(run.step)
        self.programs = StagePrograms(
            exp, run.plan, run.group_of, run.shapes, mode,
            clip_norm=spec.optim.clip_norm,
            accum_steps=accum_steps,
            cache_mode=spec.feature_cache,
            cache_chunk=spec.eval_batch_size,
            workdir=workdir, write_audit=self.is_lead, log=log, progress=progress,
        )  # fmt: skip
        self.program, self.trainable, self.frozen = self.programs.start(
            self.stage_index, flatten(params), self.state, self.opt_state,
            run.optimizer_for(self.stage_index),
        )  # fmt: skip
        self.bar = tqdm(
            total=spec.total_steps,
            initial=run.step,
            disable=not (progress and self.is_lead),
            desc="train",
        )
        self.window = TrainWindow(exp.task, spec.batch_size)
        self.batches = self.read_ahead(self.program.train_batches, run.step)
        self.last_metrics = {}
        self.flops = FlopCounter(run.train_flops)  # compute spent, counted once per step shape
        self.selection = Selection(spec.selection, spec.data.eval_split, run.selection)
        # A parameter-efficient run's checkpoints leave out what never trains and comes from
        # the pretrained weights (a reference to them stays in each checkpoint's meta).
        # (Not after init_from: another run's weights are no reference a later restore has.)
        partial = spec.peft.enabled and not spec.init_from
        self.unchanged = never_trained_pretrained(exp, run) if partial else frozenset()
        self.best = None  # the selected step's checkpoint (config.selection)
        if self.selection.enabled:
            set_aside_future_best(workdir, run.step)  # the resumed run redoes those evaluations
            # Every best step is kept while a regular checkpoint's meta names it (prune_best).
            self.best = Checkpoints(workdir / run_folder.BEST_CHECKPOINTS, None, writer=True)

    @property
    def params(self) -> dict:
        return {**self.frozen, **self.trainable}

    def read_ahead(self, source, step: int):
        # Worker processes would each copy a feature cache; a thread reads cached batches ahead.
        workers = 0 if self.programs.cache is not None else self.spec.data.workers
        return iterate_batches(source, step, num_workers=workers, to_device=self.mode.put_batch)

    def stop(self) -> None:
        """The bar, the prefetching (and its worker processes) and the metric files end."""
        self.bar.close()
        self.batches.close()
        self.writer.close()

    def enter_stage_of(self, step: int) -> None:
        """Move to the plan stage `step` belongs to, if it is not the current one."""
        plan, mode = self.run.plan, self.mode
        if plan.stage_index_at(step) == self.stage_index:
            return
        old_stage = plan.stages[self.stage_index]
        self.stage_index = plan.stage_index_at(step)
        tx = self.run.optimizer_for(self.stage_index)
        fresh = mode.replicate(jax.jit(tx.init)(mode.unreplicate(self.params)))
        self.opt_state = carry_over(self.opt_state, fresh, old_stage, plan.stages[self.stage_index])
        old_batches = self.program.train_batches
        self.program, self.trainable, self.frozen = self.programs.start(
            self.stage_index, self.params, self.state, self.opt_state, tx
        )
        if self.program.train_batches is not old_batches:  # cached features came or went
            self.batches.close()
            self.batches = self.read_ahead(self.program.train_batches, step)

    def take_steps(self, step: int, count: int, dropout_rng):
        """Steps `step` .. `step + count - 1`: one step per call, or a scan over `count` steps
        (steps_per_call > 1) that ends where something happens. Returns the unread metrics."""
        wait_start = time.perf_counter()
        chunk = [next(self.batches) for _ in range(count)]  # already on the device(s)
        self.window.wait(time.perf_counter() - wait_start)
        uncounted = self.uncounted_steps(chunk, dropout_rng, step)  # before: inputs are donated
        step_call = self.program.step if count == 1 else self.program.multi_step
        self.trainable, state_updates, self.opt_state, metrics = step_call(
            self.trainable,
            self.program.read_frozen,
            self.program.state_for_step(self.state),
            self.opt_state,
            chunk[0] if count == 1 else tuple(chunk),
            dropout_rng,
            step,
        )
        if state_updates:  # e.g. BatchNorm statistics in "train" mode
            self.state = {**self.state, **state_updates}
        self.count_flops(uncounted, measure_memory=count == 1)
        return metrics

    def uncounted_steps(self, chunk, dropout_rng, step: int) -> list[tuple]:
        """(batch, the step's arguments) for each step of `chunk`; empty under pmap, whose
        per-device program is not the step (jit counts it)."""
        if self.mode.name == "pmap":
            self.flops.total = None
            return []
        program = self.program
        args = (self.trainable, program.read_frozen, program.state_for_step(self.state),
                self.opt_state)  # fmt: skip
        return [(batch, (*args, batch, dropout_rng, step)) for batch in chunk]

    def count_flops(self, uncounted: list[tuple], measure_memory: bool) -> None:
        """Each step's FLOPs (a new stage or batch shape is counted once, on its lowering), after
        the step ran: its trace is then cached, so counting costs only the lowering. With
        `measure_memory` (the single step ran, so its compilation is cached) also its memory
        need, into the stage's audit. The seconds this takes are kept out of examples/s and the
        run's timings."""
        counted = self.flops.seconds
        step = self.program.step
        for batch, args in uncounted:
            raised = self.flops.add(
                self.stage_index,
                batch,
                lambda args=args: lowering_flops(step, args),
                (lambda args=args: step_memory_bytes(step, args)) if measure_memory else None,
            )
            if raised is not None and self.is_lead:
                audit.record_step_memory(self.workdir, self.stage_index, raised)
        self.window.start += self.flops.seconds - counted

    def record(self, first_step: int, stage: int, chunk_metrics, count: int) -> None:
        """Metrics of `count` steps (stacked when count > 1) to the host, one step at a time:
        stop on a non-finite loss, else add to the window."""
        chunk_metrics = jax.device_get(self.mode.host_metrics(chunk_metrics))  # one wait
        for i in range(count):
            metrics = chunk_metrics if count == 1 else {k: v[i] for k, v in chunk_metrics.items()}
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                self.stop()
                message = non_finite_message(
                    self.spec, loss, first_step + i, stage, self.run.checkpoints
                )
                raise NonFiniteLossError(message)
            self.window.add(metrics)
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", stage=stage, refresh=False)
        self.last_metrics = metrics

    def log_train(self, done: int) -> None:
        values = self.window.values()
        values["grad_norm"] = float(self.last_metrics["grad_norm"])
        for group, rate in self.run.optimizer_for.learning_rates(
            self.stage_index, done - 1
        ).items():
            values[f"lr/{group}"] = rate
        self.writer.write(done, "train", values)
        self.window.reset()

    def evaluate(self, done: int) -> dict:
        split = self.spec.data.eval_split
        result = self.programs.evaluate(split, self.params, self.state)
        # Wall time since train() began (set-up, caches, evaluations included; FLOP counting
        # not), and the training FLOPs so far: for time- and compute-to-accuracy curves.
        elapsed = time.perf_counter() - self.called - self.flops.seconds
        record = {**result, "elapsed_seconds": elapsed}
        if self.flops.total is not None:
            record["train_flops"] = self.flops.total
        self.writer.write(done, split, record)
        self.bar.write(f"step {done}: {split} {self.exp.task.headline(result)}")
        self.window.start = time.perf_counter()  # keep eval time out of examples/s
        return result

    def save(self, step: int, dropout_rng, *, best: bool = False) -> None:
        """A checkpoint of `step` (with the best-so-far state, so a resume selects as an unbroken
        run does); `best`: into checkpoints_best/, replacing the previous best."""
        mode = self.mode
        train_state = train_state_of(mode.unreplicate(self.opt_state), dropout_rng)
        meta = {
            "step": step,
            "stage": self.run.plan.stage_index_at(max(step - 1, 0)),
            "selection": self.selection.state.as_meta(),
            "train_flops": self.flops.total,
        }
        # One copy of everything (pmap holds one per device): checkpoints are mode-independent.
        params = mode.unreplicate(unflatten(self.params))
        state = unflatten(mode.unreplicate(self.state))
        try:
            checkpoints = self.best if best else self.run.checkpoints
            checkpoints.save(
                step, params, train_state, meta, state,
                omit=self.unchanged, base_source=self.spec.model.checkpoint,
            )  # fmt: skip
        except CheckpointError:  # e.g. a full disk: stop cleanly, the error says what is intact
            self.stop()
            raise
        if self.best is not None and not best:
            self.prune_best()
        self.window.start = time.perf_counter()

    def prune_best(self) -> None:
        """Drop best steps that neither the current state nor any kept regular checkpoint names
        (a resume from one of those restores the best step its meta names)."""
        regular = self.run.checkpoints
        named = {self.selection.state.best_step}
        for step in regular.all_steps():
            named.add(SelectionState.from_meta(regular.restore_meta(step)).best_step)
        for step in self.best.all_steps():
            if step not in named:
                self.best.delete(step)

    def final_results(self, last_step: int, evaluated: dict) -> tuple[int, dict]:
        """(selected step, every evaluation split there): the last step (those evaluated there
        are reused), or with config.selection the best evaluation's step, restored."""
        selected = self.selection.state.best_step if self.selection.enabled else None
        if selected is None or selected == last_step:
            selected, params, state = last_step, self.params, self.state
            uncached = False
        else:
            params, state = self.restore_best(selected)
            evaluated, uncached = {}, True
        results = {
            split: evaluated.get(split)
            or self.programs.evaluate(split, params, state, uncached=uncached)
            for split in self.exp.eval_batches
        }
        for split, result in results.items():
            self.writer.write(selected, f"final_{split}", result)
        self.writer.close()
        self.run.checkpoints.close()
        if self.best is not None:
            self.best.close()
        return selected, results

    def restore_best(self, step: int) -> tuple[dict, dict]:
        """The flat parameters and model state of checkpoints_best/`step`, placed like the
        session's own (replicated, or split over a 'model' axis)."""
        like = unflatten(self.run.shapes)
        base = self.mode.unreplicate(self.frozen) if self.unchanged else None
        params = self.best.restore_params(step=step, params_like=like, base=base)
        state = self.best.restore_model_state(unflatten(self.mode.unreplicate(self.state)), step)
        params, state = self.mode.replicate((params, state))
        return flatten(params), flatten(state)


def never_trained_pretrained(exp: Experiment, run: RunStart) -> frozenset[str]:
    """Parameter paths no stage of the plan trains whose values are the pretrained weights'."""
    trained = {g for stage in run.plan.stages for g in stage.trainable}
    pretrained = exp.model.pretrained or {}
    return frozenset(
        p for p, label in run.group_of.items() if label not in trained and p in pretrained
    )


def train(exp: Experiment, workdir: str | Path, *, log=print, progress: bool = True) -> dict:
    called = time.perf_counter()
    spec, workdir = exp.spec, Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mode = make_mode(spec.parallel, spec.sharding)  # jit (+ sharding rules) or pmap
    accum_steps = check_batch_sizes(exp, mode)
    config_changes = run_folder.check_resume(workdir, spec.config)  # refuses before any write
    for line in describe_adaptation(spec):
        log(line)
    if notice := precision_notice(spec.model.compute_dtype):  # e.g. bfloat16 on XLA:CPU
        log(notice)
    run = start_or_resume(exp, workdir, log)
    if jax.process_index() == 0:
        run_folder.record_start(workdir, spec.config, config_changes, run.step)
    session = Session(exp, workdir, run, mode, accum_steps, log=log, progress=progress,
                      called=called)  # fmt: skip
    events = Events(spec, run.plan.boundaries)

    started = time.perf_counter()
    evaluated, evaluated_at = {}, None  # the latest evaluation: reused if at the last step
    step, pending = run.step, None  # pending: the last steps' unread metrics
    selection = session.selection  # the best evaluation so far; early stopping
    while step < spec.total_steps and not selection.should_stop():
        session.enter_stage_of(step)
        count = min(spec.steps_per_call, events.next_after(step) - step)
        metrics = session.take_steps(step, count, run.dropout_rng)
        # The steps run asynchronously: read the previous ones' metrics while they do, so the
        # host's work overlaps the device's (it matters for steps of a millisecond, e.g. cached).
        if pending is not None:
            session.record(*pending)
        pending = (step, session.stage_index, metrics, count)
        done = step + count
        at_log, at_eval, at_save = events.at(done)
        if at_log or at_eval or at_save:  # nothing is logged or saved past an unchecked loss
            session.record(*pending)
            pending = None
        if at_log:
            session.log_train(done)
        if at_eval:
            result = session.evaluate(done)
            evaluated, evaluated_at = {spec.data.eval_split: result}, done
            if selection.observe(done, result):
                session.save(done, run.dropout_rng, best=True)
            if selection.should_stop() and done < spec.total_steps:  # saved with the stop below
                selection.state.stopped_at, at_save = done, True
                session.bar.write(f"step {done}: no {selection.spec.metric} improvement in "
                                  f"{selection.spec.patience} evaluations; stopping early.")  # fmt: skip
        if at_save:
            session.save(done, run.dropout_rng)
        step = done
    session.bar.close()
    session.batches.close()  # stops prefetching (and worker processes)
    train_seconds = time.perf_counter() - started - session.flops.seconds

    last_step = step
    if spec.total_steps == 0 and not run.checkpoints.all_steps():
        # A run that trains nothing (an adaptation's statistics alone): its state is the result.
        session.save(0, run.dropout_rng)
    evaluated = evaluated if evaluated_at == last_step else {}
    selected_step, results = session.final_results(last_step, evaluated)
    summary = {
        "plan": run.plan.name,
        "model": exp.model.description,
        "steps": spec.total_steps,
        "last_step": last_step,  # total_steps, or where the run stopped early
        "selected_step": selected_step,  # the step whose results these are (config.selection)
        "selection": selection.summary(last_step),
        # Training FLOPs (XLA's count of each step's CPU lowering): in all, and to the selected
        # step (from its evaluation record; None where unknown).
        "flops": {
            "total": session.flops.total,
            "to_selected": _flops_at(
                workdir, spec.data.eval_split, selected_step, last_step, session.flops.total
            ),
            "counting_seconds": round(session.flops.seconds, 2),
        },  # fmt: skip
        "resumed_from_step": run.step,
        "train_examples": exp.train_size,  # distinct labelled examples drawn from
        "train_seconds_this_run": round(train_seconds, 2),
        "input_wait_fraction": round(session.window.total_wait / max(train_seconds, 1e-9), 4),
        # Whole steps of this run (compilation included), and the memory high-water mark.
        "examples_per_sec": round(
            (last_step - run.step) * spec.batch_size / max(train_seconds, 1e-9), 2
        ),
        "peak_memory_bytes": peak_memory_bytes(),
        "trained": audit.trained_extent(workdir),  # what the plan trained, at its widest stage
        "machine": machine(),  # seconds and examples/s compare only within one machine
        "results": results,
    }
    if jax.process_index() == 0:
        (workdir / run_folder.SUMMARY).write_text(json.dumps(summary, indent=1))
    return summary


def _flops_at(workdir: Path, split: str, step: int, last_step: int, total) -> float | None:
    """Training FLOPs up to `step`: the total at the last step, else the evaluation record's."""
    if step == last_step:
        return total
    records = [r for r in run_folder.read_metrics(workdir) if r["split"] == split]
    return next((r.get("train_flops") for r in reversed(records) if r["step"] == step), None)
