"""Where a run begins: its initial variables, optimizers and checkpoints, or its last checkpoint.

:func:`start_or_resume` finishes assembling an :class:`~tlx.experiment.Experiment` into a
:class:`RunStart`: the initial variables (fresh init, then the pretrained weights, then
``init_from`` another run), the optimizer label of every parameter (its group, plus ``<group>/bn``
for affine BatchNorm), the stage optimizers, and the checkpoints of the workdir. When the workdir
holds an intact checkpoint, the run resumes there: step, stage, parameters, model state, optimizer
state and dropout key all come from it, so a killed run ends as one that never stopped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from tlx import run_folder
from tlx.adaptation.statistics import reestimate_batchnorm
from tlx.checkpoint import Checkpoints
from tlx.errors import CheckpointError
from tlx.experiment import Experiment
from tlx.peft.labels import with_peft_labels
from tlx.selection import SelectionState
from tlx.steps import check_accumulation
from tlx.tasks import batch_weights
from tlx.transfer.batchnorm import batchnorm_param_paths, with_affine_labels, with_fixed_labels
from tlx.transfer.groups import assign_groups
from tlx.transfer.optim import StageOptimizers
from tlx.transfer.plans import Plan
from tlx.tree import flatten
from tlx.weights.merge import merge_pretrained


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
    init_from = exp.spec.init_from
    if init_from:
        # The other run's selected weights (its best on validation, else its last step).
        other = Checkpoints(run_folder.selected_checkpoints(init_from))
        added = {k: params[k] for k in exp.model.added_params}  # not in the other run: fresh
        try:
            like = {k: v for k, v in params.items() if k not in added}
            params = {**other.restore_params(params_like=like), **added}
            model_state = other.restore_model_state(model_state)
        except CheckpointError as e:
            raise type(e)(f"config.init_from={init_from!r}: {e}") from e
        fresh = f"; fresh: {', '.join(added)}" if added else ""
        log(
            f"Initialised all parameters from the run in {init_from} (its selected checkpoint, "
            f"{other.directory.name}/{other.latest_step()}){fresh}."
        )
    return jax.tree_util.tree_map(np.asarray, params), model_state


def optimizer_labels(exp: Experiment, group_of, flat_params, model_state):
    """The plan and path -> optimizer label map the run steps with: the model's groups, plus a
    `<group>/bn` label per group when frozen BatchNorm layers train their affine parameters, and
    a `<group>/base` one, always frozen, for what a parameter-efficient method leaves untrained
    (tlx.peft.labels)."""
    model, plan, labels = exp.spec.model, exp.plan, group_of
    if model.batchnorm == "fixed":  # torchvision's FrozenBatchNorm2d: scale and bias never train
        bn_paths = batchnorm_param_paths(flat_params, model_state)
        plan, labels = with_fixed_labels(plan, labels, bn_paths)
    elif model.frozen_batchnorm in ("affine", "tent"):
        bn_paths = batchnorm_param_paths(flat_params, model_state)
        multiplier = float(model.frozen_batchnorm_lr_multiplier)
        plan, labels = with_affine_labels(plan, labels, bn_paths, multiplier)
    if exp.spec.peft.enabled:
        head = exp.model.group_names[-1]
        plan, labels = with_peft_labels(plan, labels, exp.spec.peft.method, head)
    return plan, labels


def train_state_of(opt_state, dropout_rng) -> dict:
    """What a checkpoint's ``train_state`` item holds: what training needs besides the model."""
    return {"opt_state": opt_state, "rng": jax.random.key_data(dropout_rng)}


def check_batch_sizes(exp: Experiment, mode) -> int:
    """Every batch divides over the devices; returns the micro-batches per step."""
    spec = exp.spec
    mode.check_batch_size(spec.batch_size)
    for batches in exp.eval_batches.values():
        # several processes: each holds its 1/count of the rows (tlx.data.sampling.Shard)
        global_rows = len(batch_weights(batches[0])) * jax.process_count()
        mode.check_batch_size(global_rows, "eval batch size")
    check_accumulation(spec.batch_size // mode.num_devices, spec.grad_accum_steps)
    return spec.grad_accum_steps


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
    selection: SelectionState  # the best evaluation so far (config.selection)
    train_flops: float | None  # compute spent before this step (None: not known, e.g. resumed
    # from a checkpoint written before tlx counted it)


def start_or_resume(exp: Experiment, workdir: Path, log=print) -> RunStart:
    spec = exp.spec
    init_rng, dropout_rng = jax.random.split(jax.random.key(spec.seed))
    params, model_state = initial_params(exp, init_rng, log)
    flat = flatten(params)
    group_of = assign_groups(list(flat), exp.model.groups)
    plan, group_of = optimizer_labels(exp, group_of, flat, model_state)
    optimizer_for = StageOptimizers(plan, group_of, spec.optim, spec.total_steps)
    checkpoints = Checkpoints(workdir / run_folder.CHECKPOINTS, spec.keep_checkpoints, writer=True)
    # The saved optimizer state belongs to the stage of the last step taken (step - 1); if the
    # step opens a new stage, the loop moves to it exactly as an unbroken run does.
    stage_at = lambda step: plan.stage_index_at(max(step - 1, 0))

    def restore_at(step: int):
        like = train_state_of(jax.eval_shape(optimizer_for(stage_at(step)).init, flat), dropout_rng)
        return step, checkpoints.restore(step, params, like, model_state)

    # A damaged newer checkpoint is set aside (Checkpoints.restore_latest_intact).
    resumed = checkpoints.restore_latest_intact(restore_at, log)
    step = resumed[0] if resumed else 0
    selection, train_flops = SelectionState(), 0.0
    if resumed:
        params, train_state, meta, model_state = resumed[1]
        opt_state = train_state["opt_state"]
        dropout_rng = jax.random.wrap_key_data(train_state["rng"])
        selection = SelectionState.from_meta(meta)
        train_flops = meta.get("train_flops")
        log(f"Resumed from {checkpoints.directory} at step {step} (stage {meta['stage']}).")
    else:
        opt_state = jax.jit(optimizer_for(stage_at(0)).init)(flat)
        if exp.target is not None and spec.adapt.reestimates_statistics:
            model_state = reestimate_batchnorm(
                exp.model.module, params, model_state, exp.target.statistics_batches
            )
            log(
                f"AdaBN: BatchNorm statistics re-estimated on {exp.target.name} "
                f"{spec.adapt.target_split} ({len(exp.target.statistics_batches)} batches)."
            )
    # Shapes from here on: the step donates parameter buffers, so the arrays may be invalidated.
    shapes = {p: jax.ShapeDtypeStruct(np.shape(v), v.dtype) for p, v in flat.items()}
    return RunStart(
        step, stage_at(step), params, model_state, opt_state, dropout_rng, plan, group_of,
        shapes, optimizer_for, checkpoints, selection, train_flops,
    )  # fmt: skip
