"""Bottleneck adapters after BERT's output projections (tlx.peft.adapters)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.equivalence import assert_close
from tlx.errors import ConfigError
from tlx.models.bert import BertConfig, BertForSequenceClassification, bert_param_groups
from tlx.peft import apply_peft
from tlx.spec import PeftSpec
from tlx.tree import flatten, unflatten
from tlx.zoo.bundles import ModelBundle
from tlx.zoo.text import bert_forward_and_init

CONFIG = BertConfig(
    vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
)
IDS = np.array([[1, 5, 7, 9, 2, 0], [1, 4, 4, 8, 3, 2]], np.int32)
BATCH = {"input_ids": IDS, "attention_mask": (IDS > 0).astype(np.int32)}
BATCH["token_type_ids"] = np.zeros_like(IDS)


def tiny_bert():
    module = BertForSequenceClassification(CONFIG, num_labels=3)
    forward, init = bert_forward_and_init(module)
    return ModelBundle(module, bert_param_groups(2), forward, init)


def with_adapters(bundle, **fields):
    shapes = jax.eval_shape(bundle.init, jax.random.key(0))
    param_shapes = {p: s.shape for p, s in flatten(shapes["params"]).items()}
    return apply_peft(bundle, PeftSpec(method="adapters", **fields), param_shapes)


def test_adapters_follow_both_output_projections_and_start_as_the_identity():
    base = tiny_bert()
    bundle = with_adapters(base, bottleneck=4)
    params = flatten(bundle.init(jax.random.key(0))["params"])
    added = sorted(p for p in params if "/adapter_" in p)
    assert len(added) == 2 * 2 * 4  # 2 layers x (attention, feed-forward) x (down, up) x (W, b)
    assert params["bert/encoder/layer_1/output/dense/adapter_down/kernel"].shape == (16, 4)
    assert params["bert/encoder/layer_0/attention/output/dense/adapter_up/kernel"].shape == (4, 16)
    base_params = unflatten({p: v for p, v in params.items() if "/adapter_" not in p})
    plain = base.forward(base_params, {}, BATCH, None, False)[0]
    assert_close(bundle.forward(unflatten(params), {}, BATCH, None, False)[0], plain, rtol=1e-6)


def test_gradients_reach_the_adapters_and_change_the_output():
    bundle = with_adapters(tiny_bert(), bottleneck=4)
    params = flatten(bundle.init(jax.random.key(0))["params"])
    rng = np.random.default_rng(0)
    for p in params:
        if "adapter_up/kernel" in p:
            params[p] = jnp.asarray(rng.standard_normal(params[p].shape), jnp.float32)
    params = unflatten(params)
    before = bundle.forward(params, {}, BATCH, None, False)[0]
    grads = flatten(jax.grad(lambda p: bundle.forward(p, {}, BATCH, None, False)[0].sum())(params))
    assert np.abs(grads["bert/encoder/layer_0/output/dense/adapter_down/kernel"]).max() > 0
    zeroed = {p: (v * 0 if "adapter_up" in p else v) for p, v in flatten(params).items()}
    after = bundle.forward(unflatten(zeroed), {}, BATCH, None, False)[0]
    assert np.abs(np.asarray(before) - np.asarray(after)).max() > 1e-3


def test_bad_adapter_settings_are_refused():
    with pytest.raises(ConfigError, match="matches no dense layer"):
        with_adapters(tiny_bert(), targets="^no_such_layer")
    with pytest.raises(ConfigError, match="peft.bottleneck"):
        with_adapters(tiny_bert(), bottleneck=0)
