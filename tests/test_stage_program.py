"""A stage program on its own, as a benchmark would use it: compile stage k of a plan, step it."""

import jax
import numpy as np

from tests.test_trainer import tiny_config
from tlx.data.iterate import iterate_batches
from tlx.experiment import build_experiment
from tlx.parallel_modes import make_mode
from tlx.stage_program import StagePrograms
from tlx.trainer import initial_params
from tlx.transfer.groups import assign_groups
from tlx.transfer.optim import StageOptimizers
from tlx.tree import flatten

QUIET = dict(log=lambda *_: None)


def tiny_stage_inputs(tiny_bert_dir, rt_data_dir):
    """(experiment, flat params, group_of, stage optimizers, mode) of the tiny progressive run."""
    exp = build_experiment(tiny_config(tiny_bert_dir, rt_data_dir))
    params, _ = initial_params(exp, jax.random.key(0), **QUIET)
    flat = flatten(params)
    group_of = assign_groups(list(flat), exp.model.groups)
    optimizers = StageOptimizers(exp.plan, group_of, exp.spec.optim, 8)
    return exp, flat, group_of, optimizers, make_mode("jit")


def test_a_stage_trains_its_groups_only_and_evaluates(tiny_bert_dir, rt_data_dir, tmp_path):
    exp, flat, group_of, optimizers, mode = tiny_stage_inputs(tiny_bert_dir, rt_data_dir)
    programs = StagePrograms(
        exp, exp.plan, group_of, flat, mode, clip_norm=1.0, accum_steps=1, cache_mode="off",
        cache_chunk=64, workdir=tmp_path, write_audit=True, progress=False, **QUIET,
    )  # fmt: skip
    stage = 1  # progressive: the head and the top layer train
    tx = optimizers(stage)
    opt_state = jax.jit(tx.init)(flat)
    program, trainable, frozen = programs.start(stage, flat, {}, opt_state, tx)
    wanted = {p for p, g in group_of.items() if g in exp.plan.stages[stage].trainable}
    assert program.trainable_paths == wanted == set(trainable)
    assert set(frozen) == set(flat) - wanted
    assert (tmp_path / "audit" / f"stage_{stage}.json").exists()

    before = {k: np.asarray(v) for k, v in flat.items()}
    for step in range(2):  # the warm-up's first step has a learning rate of 0
        batch = mode.put_batch(program.train_batches[step])
        trainable, _, opt_state, metrics = program.step(
            trainable, program.read_frozen, program.state_for_step({}), opt_state, batch,
            jax.random.key(1), step,
        )  # fmt: skip
        assert np.isfinite(float(metrics["loss"]))
    assert all(not np.array_equal(trainable[k], before[k]) for k in trainable)
    assert all(np.array_equal(frozen[k], before[k]) for k in frozen)
    result = programs.evaluate("validation", {**frozen, **trainable}, {})
    assert set(result) == {"accuracy", "loss", "examples"} and result["examples"] > 0


def test_a_model_alone_gets_the_program_an_experiment_gets(tiny_bert_dir, rt_data_dir, tmp_path):
    """StagePrograms.for_model (what the benchmarks build) compiles the trainer's step: the same
    steps from the same inputs, fed as the trainer feeds them, give the same parameters."""
    exp, flat, group_of, optimizers, mode = tiny_stage_inputs(tiny_bert_dir, rt_data_dir)
    stage, tx = 1, optimizers(1)

    def two_steps(programs):
        opt_state = jax.jit(tx.init)(flat)
        program, trainable, _ = programs.start(stage, flat, {}, opt_state, tx)
        batches = iterate_batches(program.train_batches, 0, to_device=mode.put_batch)
        for step in range(2):
            trainable, _, opt_state, _ = program.step(
                trainable, program.read_frozen, program.state_for_step({}), opt_state,
                next(batches), jax.random.key(1), step,
            )  # fmt: skip
        batches.close()
        return program, {k: np.asarray(v) for k, v in trainable.items()}

    audit = []
    alone = StagePrograms.for_model(
        exp.model, exp.plan, group_of, flat, mode, task=exp.task,
        train_batches=exp.train_batches, clip_norm=1.0, log=audit.append,
    )  # fmt: skip
    with_exp = StagePrograms(
        exp, exp.plan, group_of, flat, mode, clip_norm=1.0, accum_steps=1, cache_mode="off",
        cache_chunk=64, workdir=tmp_path, write_audit=False, progress=False, **QUIET,
    )  # fmt: skip
    program, ours = two_steps(alone)
    _, theirs = two_steps(with_exp)
    assert program.train_batches is exp.train_batches and alone.cache is None
    assert ours.keys() == theirs.keys() and ours.keys() == program.trainable_paths
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
    assert len(audit) == 1 and "stage 1" in audit[0]  # the audit went to `log`, not to a file
    assert not (tmp_path / "audit").exists()
