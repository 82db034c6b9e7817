"""A stage program on its own, as a benchmark would use it: compile stage k of a plan, step it."""

import jax
import numpy as np

from tests.test_trainer import tiny_config
from tlx.experiment import build_experiment
from tlx.parallel_modes import make_mode
from tlx.stage_program import StagePrograms
from tlx.trainer import initial_params
from tlx.transfer.groups import assign_groups
from tlx.transfer.optim import StageOptimizers
from tlx.tree import flatten


def test_a_stage_trains_its_groups_only_and_evaluates(tiny_bert_dir, rt_data_dir, tmp_path):
    exp = build_experiment(tiny_config(tiny_bert_dir, rt_data_dir))
    params, model_state = initial_params(exp, jax.random.key(0), log=lambda *_: None)
    flat = flatten(params)
    group_of = assign_groups(list(flat), exp.model.groups)
    optimizers = StageOptimizers(exp.plan, group_of, exp.config["optim"], 8)
    mode = make_mode("jit")
    programs = StagePrograms(
        exp, exp.plan, group_of, flat, mode, clip_norm=1.0, accum_steps=1, cache_mode="off",
        cache_chunk=64, workdir=tmp_path, write_audit=True, log=lambda *_: None, progress=False,
    )  # fmt: skip
    stage = 1  # progressive: the head and the top layer train
    tx = optimizers(stage)
    opt_state = jax.jit(tx.init)(flat)
    program, trainable, frozen = programs.start(stage, flat, flatten(model_state), opt_state, tx)
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
