"""The trainer end to end on a tiny random BERT and real Rotten Tomatoes snippets."""

import json

import jax
import numpy as np
import pytest

from configs import minilm_rt_progressive
from tlx.checkpoint import Checkpoints
from tlx.experiment import build_experiment
from tlx.trainer import NonFiniteLossError, initial_params, train
from tlx.tree import flatten


def tiny_config(tiny_bert_dir, rt_data_dir, **overrides):
    config = minilm_rt_progressive.get_config()
    config.model.checkpoint = str(tiny_bert_dir)
    config.data.data_dir = rt_data_dir
    config.data.train_examples = 96
    config.data.eval_batch_size = 256
    config.data.buckets = (64,)  # one shape: one compilation per stage
    config.batch_size = 8
    config.total_steps = 8
    config.plan.every = 2  # stages at 0, 2, 4, 6: head, +layer_1, +layer_0, +embeddings
    config.eval_every = 4
    config.checkpoint_every = 2
    config.log_every = 2
    config.optim.warmup_steps = 2
    config.optim.learning_rate = 1e-3
    for key, value in overrides.items():
        config[key] = value
    return config


class Killed(RuntimeError):
    pass


def kill_at(batches, at: int):
    """Training batches that stop the process (by raising) when step `at`'s batch is made."""

    def maybe_kill(step, batch):
        if step == at:
            raise Killed(step)
        return batch

    return batches.map_with_index(maybe_kill)


def params_of(workdir):
    return flatten(Checkpoints(workdir / "checkpoints").restore_params())


def test_run_writes_everything_and_freezes_by_plan(tiny_bert_dir, rt_data_dir, tmp_path):
    exp = build_experiment(tiny_config(tiny_bert_dir, rt_data_dir))
    logs = []
    summary = train(exp, tmp_path, log=logs.append, progress=False)
    assert set(summary["results"]) == {"validation", "test"}
    assert summary["results"]["test"]["examples"] == len(
        [1 for b in exp.eval_batches["test"] for w in b["weight"] if w > 0]
    )
    for name in ("config.json", "metrics.jsonl", "summary.json", "audit/stage_2.json"):
        assert (tmp_path / name).exists(), name
    # 8 steps of 8 examples over the run's seconds; memory is the process's high-water mark.
    expected_rate = 64 / summary["train_seconds_this_run"]
    assert summary["examples_per_sec"] == pytest.approx(expected_rate, rel=0.02)
    assert summary["peak_memory_bytes"] > 50 * 2**20
    # What the plan trained at its widest stage (progressive: the last one trains every group).
    last = json.loads((tmp_path / "audit/stage_3.json").read_text())["groups"]
    trained = dict(summary["trained"])
    step_memory = trained.pop("step_memory_bytes")
    assert trained == {
        "trainable_params": sum(g["params"] for g in last),
        "optimizer_state_bytes": sum(g["optimizer_state_bytes"] for g in last),
        "params": sum(g["params"] for g in last),
    }
    # Each stage's compiled step was measured into its audit (XLA's memory need); the run's is
    # the largest, and holds at least every float32 parameter the step reads.
    audits = [json.loads((tmp_path / f"audit/stage_{i}.json").read_text()) for i in range(4)]
    assert step_memory == max(a["step_memory_bytes"] for a in audits)
    assert all(a["step_memory_bytes"] >= 4 * trained["params"] for a in audits)
    first = json.loads((tmp_path / "audit/stage_0.json").read_text())["groups"]
    assert (
        sum(g["params"] for g in first if g["trainable"]) < summary["trained"]["trainable_params"]
    )
    assert summary["train_examples"] == exp.train_size == 96  # data.train_examples
    assert list((tmp_path / "tensorboard").iterdir())
    assert any("initialised fresh" in line.lower() or "fresh" in line.lower() for line in logs)
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == [2, 4, 6, 8]
    # learning rate per group shows the plan: layer_0 frozen until step 6
    lr0 = {r["step"]: r["lr/layer_0"] for r in records if r["split"] == "train"}
    assert lr0[4] == 0.0 and lr0[8] > 0.0
    audit0 = json.loads((tmp_path / "audit/stage_0.json").read_text())
    frozen = [g["group"] for g in audit0["groups"] if not g["trainable"]]
    assert frozen == ["embeddings", "layer_0", "layer_1"]
    assert all(g["optimizer_state_bytes"] == 0 for g in audit0["groups"] if not g["trainable"])


def test_unfreezing_happens_at_exactly_the_declared_steps(tiny_bert_dir, rt_data_dir, tmp_path):
    """Checkpoints every step: a group's params change first at its stage's first step."""
    config = tiny_config(
        tiny_bert_dir, rt_data_dir, checkpoint_every=1, total_steps=7, keep_checkpoints=10
    )
    exp = build_experiment(config)
    train(exp, tmp_path, log=lambda *_: None, progress=False)
    ckpts = Checkpoints(tmp_path / "checkpoints", max_to_keep=100)
    history = {s: flatten(ckpts.restore_params(s)) for s in range(1, 8)}
    first_change = {}
    for group, key in (
        ("layer_1", "bert/encoder/layer_1/output/dense/kernel"),
        ("layer_0", "bert/encoder/layer_0/output/dense/kernel"),
        ("embeddings", "bert/embeddings/word_embeddings/embedding"),
    ):
        for s in range(2, 8):
            if not np.array_equal(history[s][key], history[s - 1][key]):
                first_change.setdefault(group, s)  # params after step s-1 -> s: step index s-1
    # stage 1 starts at step index 2, so its first update lands in checkpoint 3; and so on
    assert first_change == {"layer_1": 3, "layer_0": 5, "embeddings": 7}


def test_killed_run_resumes_to_identical_parameters(tiny_bert_dir, rt_data_dir, tmp_path):
    config = tiny_config(tiny_bert_dir, rt_data_dir)
    exp = build_experiment(config)
    train(exp, tmp_path / "straight", log=lambda *_: None, progress=False)

    exp_killed = build_experiment(config)
    exp_killed.train_batches = kill_at(exp_killed.train_batches, at=5)
    with pytest.raises(Killed):
        train(exp_killed, tmp_path / "resumed", log=lambda *_: None, progress=False)
    assert Checkpoints(tmp_path / "resumed/checkpoints").latest_step() == 4  # a stage boundary
    logs = []
    summary = train(build_experiment(config), tmp_path / "resumed", log=logs.append, progress=False)
    assert summary["resumed_from_step"] == 4
    assert any("Resumed" in line for line in logs)
    a, b = params_of(tmp_path / "straight"), params_of(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_per_group_schedules_log_their_rates_and_resume_to_identical_parameters(
    tiny_bert_dir, rt_data_dir, tmp_path
):
    config = tiny_config(tiny_bert_dir, rt_data_dir)
    config.optim.group_schedules = {
        "head": {"decay": "constant", "warmup_steps": 0},
        "layer_*": {"decay": "linear", "clock": "group", "warmup_steps": 0},
    }
    train(build_experiment(config), tmp_path / "straight", log=lambda *_: None, progress=False)
    records = [
        json.loads(x) for x in (tmp_path / "straight/metrics.jsonl").read_text().splitlines()
    ]
    lr = {r["step"]: r for r in records if r["split"] == "train"}
    head = [lr[s]["lr/head"] for s in (2, 4, 6, 8)]
    assert head == pytest.approx([head[0]] * 4)  # constant, while the run's schedule decays
    # layer_1 unfreezes at step index 2 with 6 steps left: its own linear decay, logged after
    # the window's last step (index 3: own count 1 -> 1 - 1/6; index 7: count 5 -> 1/6)
    peak = (
        config.optim.learning_rate
        * build_experiment(config, with_data=False).plan.stages[-1].multipliers["layer_1"]
    )
    assert lr[4]["lr/layer_1"] == pytest.approx(peak * (1 - 1 / 6), rel=1e-5)
    assert lr[8]["lr/layer_1"] == pytest.approx(peak * (1 / 6), rel=1e-5)

    exp_killed = build_experiment(config)
    exp_killed.train_batches = kill_at(exp_killed.train_batches, at=5)
    with pytest.raises(Killed):
        train(exp_killed, tmp_path / "resumed", log=lambda *_: None, progress=False)
    train(build_experiment(config), tmp_path / "resumed", log=lambda *_: None, progress=False)
    a, b = params_of(tmp_path / "straight"), params_of(tmp_path / "resumed")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_several_steps_per_call_train_as_one_step_per_call(tiny_bert_dir, rt_data_dir, tmp_path):
    """steps_per_call=4 scans up to 4 steps per call, cut at stage starts (3, 6, 9) and at the
    log / eval / save steps: the same parameters and logged losses as one step per call."""
    runs = {}
    for per_call in (1, 4):
        config = tiny_config(tiny_bert_dir, rt_data_dir, steps_per_call=per_call)
        config.total_steps = 10
        config.plan.every = 3  # stages at 0, 3, 6, 9; with saves at 8: chunks 3, 3, 2, 1, 1
        config.log_every = config.eval_every = 10
        config.checkpoint_every = 8
        workdir = tmp_path / f"per_call_{per_call}"
        train(build_experiment(config), workdir, log=lambda *_: None, progress=False)
        records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
        runs[per_call] = (params_of(workdir), [r for r in records if r["split"] == "train"])
    (one, one_log), (four, four_log) = runs[1], runs[4]
    for k in one:
        np.testing.assert_allclose(one[k], four[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert [r["step"] for r in four_log] == [r["step"] for r in one_log] == [10]
    assert four_log[0]["loss"] == pytest.approx(one_log[0]["loss"], rel=1e-5)
    with pytest.raises(ValueError, match="steps_per_call=0 must be a positive integer"):
        build_experiment(tiny_config(tiny_bert_dir, rt_data_dir, steps_per_call=0))


def test_init_from_another_run_is_not_a_resume(tiny_bert_dir, rt_data_dir, tmp_path):
    config = tiny_config(tiny_bert_dir, rt_data_dir, total_steps=4)
    config.plan.every = 1
    train(build_experiment(config), tmp_path / "first", log=lambda *_: None, progress=False)
    second = config.copy_and_resolve_references()
    second.init_from = str(tmp_path / "first")
    logs = []
    summary = train(build_experiment(second), tmp_path / "second", log=logs.append, progress=False)
    assert summary["resumed_from_step"] == 0
    assert any("Initialised all parameters from the run" in line for line in logs)
    # the second run's step 0 starts from the first run's final parameters, not the pretrained ones
    exp2 = build_experiment(second, with_data=False)
    start, _ = initial_params(exp2, jax.random.key(0), log=lambda *_: None)
    first = params_of(tmp_path / "first")
    for k, v in flatten(start).items():
        np.testing.assert_array_equal(v, first[k], err_msg=k)
    key = "bert/encoder/layer_1/output/dense/kernel"
    assert not np.array_equal(first[key], exp2.model.pretrained[key])  # the first run trained it


def nan_at(batches, at: int):
    """Training batches whose step `at` has all weights zero: loss 0/0 = NaN."""

    def maybe_nan(step, batch):
        if step == at:
            batch = {**batch, "weight": np.zeros(batch["label"].shape, np.float32)}
        return batch

    return batches.map_with_index(maybe_nan)


def test_non_finite_loss_stops_naming_the_step_and_keeps_last_checkpoint(
    tiny_bert_dir, rt_data_dir, tmp_path
):
    exp = build_experiment(tiny_config(tiny_bert_dir, rt_data_dir))
    exp.train_batches = nan_at(exp.train_batches, at=5)
    with pytest.raises(NonFiniteLossError, match="at step 5") as err:
        train(exp, tmp_path, log=lambda *_: None, progress=False)
    message = str(err.value)
    assert "The last checkpoint is step 4" in message
    # advice that fits the config: its learning rate, and no advice to clip what is clipped
    assert "optim.learning_rate (now 0.001" in message
    assert "already clipped to norm 1.0" in message and "optim.clip_norm=1.0" not in message
    assert Checkpoints(tmp_path / "checkpoints").latest_step() == 4


def test_feature_extraction_step_costs_about_a_forward_pass():
    """Compiled FLOPs (XLA cost analysis) of a head-only step vs. the forward pass, real MiniLM."""
    from tlx.steps import make_eval_step, make_train_step
    from tlx.transfer.groups import assign_groups
    from tlx.transfer.optim import make_optimizer
    from tlx.transfer.plans import feature_extraction

    config = minilm_rt_progressive.get_config()
    exp = build_experiment(config, with_data=False)
    params = exp.model.init(jax.random.key(0))["params"]
    group_of = assign_groups(list(flatten(params)), exp.model.groups)
    stage = feature_extraction(exp.group_names).stages[0]
    tx = make_optimizer(stage, group_of, config.optim, lambda s: 1e-3)
    trainable = [p for p, g in group_of.items() if g in stage.trainable]
    step = make_train_step(exp.model.forward, trainable, tx, clip_norm=1.0)
    batch = {
        "input_ids": np.ones((32, 64), np.int32),
        "attention_mask": np.ones((32, 64), np.int32),
        "token_type_ids": np.zeros((32, 64), np.int32),
        "label": np.zeros((32,), np.int32),
    }
    opt_state = tx.init(flatten(params))

    def flops(fn, *args):
        cost = jax.jit(fn).lower(*args).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return cost["flops"]

    step_flops = flops(step, params, {}, opt_state, batch, jax.random.key(0))
    forward_flops = flops(make_eval_step(exp.model.forward), params, {}, batch)
    finetune_tx = make_optimizer(
        type(stage)(0, dict.fromkeys(stage.multipliers, 1.0)),
        group_of,
        config.optim,
        lambda s: 1e-3,
    )
    full_step = make_train_step(exp.model.forward, list(group_of), finetune_tx, clip_norm=1.0)
    full_flops = flops(
        full_step, params, {}, finetune_tx.init(flatten(params)), batch, jax.random.key(0)
    )
    assert step_flops <= 1.15 * forward_flops, (step_flops, forward_flops)
    assert full_flops > 2.5 * forward_flops  # the comparison can fail: full backward is costly
