"""LoRA and BitFit as plan choices in a real run (tiny BERT, Rotten Tomatoes): what trains is
what the method says, the audit shows it, and a killed run resumes exactly."""

import json

import jax
import numpy as np
import pytest

from tests.test_trainer import Killed, kill_at, params_of, tiny_config
from tlx.checkpoint import Checkpoints
from tlx.errors import CheckpointIntegrityError
from tlx.experiment import build_experiment
from tlx.predict import load_run
from tlx.trainer import initial_params, train
from tlx.tree import flatten, unflatten

LORA = {"method": "lora", "targets": "attention/self/(query|value)/kernel", "rank": 2}


def peft_config(tiny_bert_dir, rt_data_dir, peft, **overrides):
    config = tiny_config(tiny_bert_dir, rt_data_dir, total_steps=4, **overrides)
    config.plan.name = "finetune"
    config.data.eval_examples = 32  # evaluation is not what these tests check
    config.peft = peft
    return config


def initial(exp) -> dict:
    """The run's own starting parameters (start_or_resume splits the seed's key the same way)."""
    init_rng, _ = jax.random.split(jax.random.key(exp.spec.seed))
    return flatten(initial_params(exp, init_rng, log=lambda *_: None)[0])


def changed(before: dict, after: dict) -> set:
    return {p for p in after if not np.array_equal(np.asarray(before[p]), np.asarray(after[p]))}


def test_lora_trains_only_its_factors_and_the_head(tiny_bert_dir, rt_data_dir, tmp_path):
    exp = build_experiment(peft_config(tiny_bert_dir, rt_data_dir, LORA))
    before = initial(exp)
    train(exp, tmp_path, log=lambda *_: None, progress=False)
    after = params_of(tmp_path)
    factors = {p for p in after if p.endswith(("/lora_a", "/lora_b"))}
    assert len(factors) == 2 * 2 * 2  # 2 layers x (query, value) x (A, B)
    moved = changed(before, after)
    assert moved == factors | {"classifier/kernel", "classifier/bias"}
    assert "classifier/kernel" in moved
    audit = json.loads((tmp_path / "audit/stage_0.json").read_text())
    rows = {g["group"]: g for g in audit["groups"]}
    assert rows["layer_0"]["trainable"] and not rows["layer_0/base"]["trainable"]
    assert rows["layer_0/base"]["optimizer_state_bytes"] == 0
    # the trainable part of a layer is its 4 factors: 2 x (32x2 + 2x32) parameters
    assert rows["layer_0"]["params"] == 2 * (32 * 2 + 2 * 32)
    assert rows["head"]["trainable"] and "head/base" not in rows
    check_checkpoints_hold_only_what_changed(tmp_path, factors, before)


def check_checkpoints_hold_only_what_changed(workdir, factors, before):
    """The frozen pretrained weights stay out of the files, named with their checksums in meta;
    a restore takes them from the model and refuses other base weights."""
    checkpoints = Checkpoints(workdir / "checkpoints")
    step = checkpoints.latest_step()
    base = checkpoints.restore_meta(step)["base_params"]["checksums"]
    assert "bert/encoder/layer_0/attention/self/query/kernel" in base
    assert not any("lora" in p or p.startswith("classifier/") for p in base)
    saved = set(flatten(checkpoints.restore_params(step)))
    assert saved.isdisjoint(base) and factors <= saved
    _, params, _ = load_run(workdir)
    full = flatten(params)
    for path in base:
        np.testing.assert_array_equal(full[path], before[path])
    like = unflatten(full)
    other = {p: np.asarray(full[p]) + 1 for p in base}
    with pytest.raises(CheckpointIntegrityError, match="other base weights"):
        checkpoints.restore_params(step, params_like=like, base=other)


def test_bitfit_trains_biases_and_the_head(tiny_bert_dir, rt_data_dir, tmp_path):
    exp = build_experiment(peft_config(tiny_bert_dir, rt_data_dir, {"method": "bitfit"}))
    before = initial(exp)
    train(exp, tmp_path, log=lambda *_: None, progress=False)
    moved = changed(before, params_of(tmp_path))
    assert moved and all(p.endswith("/bias") or p.startswith("classifier/") for p in moved)
    assert "classifier/kernel" in moved
    assert "bert/encoder/layer_0/attention/self/query/bias" in moved


def test_a_killed_lora_run_resumes_to_identical_parameters(tiny_bert_dir, rt_data_dir, tmp_path):
    config = peft_config(tiny_bert_dir, rt_data_dir, {**LORA, "dropout": 0.1})
    train(build_experiment(config), tmp_path / "straight", log=lambda *_: None, progress=False)
    killed = build_experiment(config)
    killed.train_batches = kill_at(killed.train_batches, at=3)
    with pytest.raises(Killed):
        train(killed, tmp_path / "resumed", log=lambda *_: None, progress=False)
    train(build_experiment(config), tmp_path / "resumed", log=lambda *_: None, progress=False)
    a, b = params_of(tmp_path / "straight"), params_of(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_adapters_train_the_adapters_layernorms_and_head(tiny_bert_dir, rt_data_dir, tmp_path):
    peft = {"method": "adapters", "bottleneck": 4}
    exp = build_experiment(peft_config(tiny_bert_dir, rt_data_dir, peft))
    before = initial(exp)
    train(exp, tmp_path, log=lambda *_: None, progress=False)
    moved = changed(before, params_of(tmp_path))
    assert any("/adapter_up/" in p for p in moved)
    assert all("/adapter_" in p or "/LayerNorm/" in p or p.startswith("classifier/") for p in moved)
    assert not any(p.endswith("attention/self/query/kernel") for p in moved)


def test_prompt_tuning_trains_the_prompt_and_the_head(tiny_bert_dir, rt_data_dir, tmp_path):
    exp = build_experiment(peft_config(tiny_bert_dir, rt_data_dir, {"method": "prompt"}))
    before = initial(exp)
    train(exp, tmp_path, log=lambda *_: None, progress=False)
    moved = changed(before, params_of(tmp_path))
    assert moved == {"bert/embeddings/prompt", "classifier/kernel", "classifier/bias"}
