"""One plan stage, compiled: the unit the trainer steps with and the benchmarks can time.

:class:`StagePrograms` turns a stage of the plan into a :class:`StageProgram`: it splits the flat
parameters into the stage's trainable and frozen ones, prints and saves the freeze audit, builds
(or drops) the feature cache of the frozen bottom groups, and compiles the train step (one step a
call, and a scan of several) over exactly the inputs the step reads. It keeps the feature cache
from one stage to the next while the frozen prefix is unchanged, and evaluates with or without it.

The trainer builds it from an :class:`~tlx.experiment.Experiment`; :meth:`StagePrograms.for_model`
builds it from a model bundle alone (no data set, no feature cache, no audit file), so that a
benchmark times the very step the trainer takes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp

from tlx.metrics import add_sums
from tlx.steps import CLASSIFICATION, make_eval_step, make_multi_step, make_split_train_step
from tlx.transfer import audit, feature_cache
from tlx.transfer.plans import Plan
from tlx.tree import unflatten

# The train step's trainable parameters (0) and optimizer state (3): it returns their new
# values, so their buffers are donated to XLA. Without it each step allocated a fresh copy of
# both (VGG16 freeze_half at 112 px: 3.9 s -> 2.9 s a step under load, peak 4.15 -> 2.87 GB).
DONATED_STEP_ARGS = (0, 3)


@dataclasses.dataclass
class StageProgram:
    """A stage's compiled steps and what they read.

    ``step(trainable, read_frozen, state, opt_state, batch, rng, step_number)`` and
    ``multi_step(..., batches, ...)`` return (trainable, state_updates, opt_state, metrics); the
    dropout key is fold_in(rng, step_number), folded inside the compiled step.
    """

    index: int
    trainable_paths: frozenset[str]
    step: Callable
    multi_step: Callable
    read_frozen: dict  # the frozen parameters the step is passed (a cache makes some unread)
    read_state: tuple[str, ...] | None  # the model-state keys it is passed (None: all)
    train_batches: object  # random access: train_batches[step]; cached features or inputs

    def state_for_step(self, state: Mapping) -> Mapping:
        return state if self.read_state is None else {k: state[k] for k in self.read_state}


def evaluate(eval_step, params, model_state, batches, mode, task) -> dict:
    """The task's summary over evaluation batches (their metric sums added on the host; a task
    that collects also gets every batch's per-example rows, as numpy)."""
    total, collected = None, []
    collects = getattr(task, "collects", False)
    for batch in batches:
        out = eval_step(params, model_state, mode.put_batch(batch))
        sums, rows = out if collects else (out, None)
        total = add_sums(total, mode.host_metrics(sums))
        if collects:
            collected.append(jax.tree.map(mode.host_rows, rows))
    return task.summarize(total, collected) if collects else task.summarize(total)


@dataclasses.dataclass
class ModelSource:
    """What :class:`StagePrograms` reads of an Experiment, for a model without a data set: the
    bundle, the task and (optionally) the random-access train batches every program steps over.
    No evaluation splits and nothing to cache."""

    model: object  # a tlx.zoo.bundles.ModelBundle
    task: object = CLASSIFICATION
    train_batches: object = None
    eval_batches: Mapping = dataclasses.field(default_factory=dict)
    cacheable: object = None

    @property
    def group_names(self) -> list[str]:
        return self.model.group_names


class StagePrograms:
    @classmethod
    def for_model(
        cls,
        model,
        plan: Plan,
        group_of: Mapping[str, str],
        shapes: Mapping,
        mode,
        *,
        task=CLASSIFICATION,
        train_batches=None,
        clip_norm: float | None = None,
        accum_steps: int = 1,
        log=lambda *_: None,
    ) -> StagePrograms:
        """The programs of `plan` for a model bundle alone, as a benchmark needs them: `start`
        compiles exactly the trainer's step, over `train_batches` (random access, e.g. a grain
        MapDataset, read with tlx.data.iterate.iterate_batches as the trainer reads its own).
        No feature cache and no audit file; the audit goes to `log` (silent by default)."""
        source = ModelSource(model, task, train_batches)
        return cls(
            source, plan, group_of, shapes, mode, clip_norm=clip_norm, accum_steps=accum_steps,
            cache_mode="off", cache_chunk=1, workdir=None, write_audit=False, log=log,
            progress=False,
        )  # fmt: skip

    def __init__(
        self,
        exp,
        plan: Plan,
        group_of: Mapping[str, str],
        shapes: Mapping,
        mode,
        *,
        clip_norm: float | None,
        accum_steps: int,
        cache_mode: str,
        cache_chunk: int,
        workdir: Path | None,
        write_audit: bool,
        log=print,
        progress: bool = True,
    ):
        self.exp, self.plan, self.group_of, self.shapes, self.mode = (
            exp,
            plan,
            group_of,
            shapes,
            mode,
        )
        self.clip_norm, self.accum_steps = clip_norm, accum_steps
        self.cache_mode, self.cache_chunk = feature_cache.check_mode(cache_mode), cache_chunk
        self.workdir, self.write_audit, self.log, self.progress = (
            workdir,
            write_audit,
            log,
            progress,
        )
        self.task = exp.task
        self.cache = None  # the FeatureCache of the current stage's frozen prefix, if any
        self._eval_step = mode.compile_eval(
            make_eval_step(exp.model.forward, mode.axis_name, self.task)
        )
        self._cached_eval_step = None  # the current cache's jitted evaluation step

    def start(self, index: int, params: Mapping, state: Mapping, opt_state, tx):
        """(program, trainable, frozen): stage `index` compiled, and the flat `params` split
        into the parameters it trains (fresh buffers: the step donates them) and those it
        keeps fixed."""
        stage = self.plan.stages[index]
        mode, exp = self.mode, self.exp
        trainable_paths = frozenset(p for p, g in self.group_of.items() if g in stage.trainable)
        # A parameter that was frozen may share its buffer with the loaded checkpoint
        # (device_put need not copy): the donated trainable ones get buffers of their own.
        trainable = {p: jnp.copy(v) for p, v in params.items() if p in trainable_paths}
        frozen = {p: v for p, v in params.items() if p not in trainable_paths}
        forward = exp.model.forward
        if exp.model.forward_for_stage is not None:  # e.g. BatchNorm policy of frozen groups
            forward = exp.model.forward_for_stage(stage.trainable)
        rows = audit.audit_stage(stage, self.group_of, self.shapes, mode.unreplicate(opt_state))
        self.log(audit.format_audit(rows, index, stage.start_step))
        if self.write_audit:
            audit.save_audit(self.workdir, rows, index, stage.start_step)

        self._update_cache(stage, forward, {**frozen, **trainable}, state)
        train_batches = exp.train_batches
        if self.cache is not None:
            forward = self.cache.forward(forward)
            train_batches = self.cache.train_batches(exp.cacheable.index_batches)
        step_fn = make_split_train_step(
            forward,
            trainable_paths,
            tx,
            self.clip_norm,
            accum_steps=self.accum_steps,
            axis_name=mode.axis_name,
            task=self.task,
        )
        read_frozen, read_state = frozen, None
        if self.cache is not None:
            unread_params, unread_state = self.cache.unread_inputs(self.group_of, frozen, state)
            step_fn = feature_cache.skip_unread_inputs(
                step_fn, frozen, state, unread_params, unread_state
            )
            read_frozen = {k: v for k, v in frozen.items() if k not in unread_params}
            read_state = tuple(k for k in state if k not in unread_state)
        keyed = lambda *args: step_fn(*args[:-2], jax.random.fold_in(args[-2], args[-1]))
        program = StageProgram(
            index=index,
            trainable_paths=trainable_paths,
            step=mode.compile_train(keyed, DONATED_STEP_ARGS),
            # several steps per call: traced once per chunk length
            multi_step=mode.compile_train(make_multi_step(keyed), DONATED_STEP_ARGS),
            read_frozen=read_frozen,
            read_state=read_state,
            train_batches=train_batches,
        )
        return program, trainable, frozen

    def evaluate(
        self, split: str, params: Mapping, state: Mapping, *, uncached: bool = False
    ) -> dict:
        """The task's summary of `split` with these (flat) parameters and model state.
        `uncached`: through the whole model even when this stage caches its frozen bottom's
        features (for parameters other than the stage's own, e.g. a selected earlier step)."""
        batches, eval_step = self.exp.eval_batches[split], self._eval_step
        if self.cache is not None and not uncached:  # the frozen bottom's features, per stage
            batches = self.cache.eval_batches(split, batches)
            eval_step = self._cached_eval_step
        return evaluate(
            eval_step, unflatten(params), unflatten(state), batches, self.mode, self.task
        )

    def _update_cache(self, stage, forward, params: Mapping, state: Mapping) -> None:
        """Keep, drop or build the feature cache for this stage's frozen prefix of groups."""
        prefix = ()
        if self.cache_mode != "off":
            prefix = feature_cache.frozen_prefix(stage, self.exp.group_names)
        if self.cache is not None and self.cache.prefix != prefix:
            self.log(f"Dropping the feature cache of groups {list(self.cache.prefix)}.")
            self.cache.drop()
            self.cache = None
        if prefix and self.cache is None:
            mode = self.mode
            self.cache = feature_cache.build(
                stage_forward=forward,
                params=mode.unreplicate(unflatten(params)),
                model_state=unflatten(mode.unreplicate(state)),
                group_of=self.group_of,
                prefix=prefix,
                examples=self.exp.cacheable,
                mode=self.cache_mode,
                workdir=self.workdir,
                chunk=self.cache_chunk,
                log=self.log,
                progress=self.progress,
            )
            self._cached_eval_step = mode.compile_eval(
                make_eval_step(
                    self.cache.forward(self.exp.model.forward), mode.axis_name, self.task
                )
            )
