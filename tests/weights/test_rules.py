"""The rule-table converter and the merge into a fresh init report every problem at once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tlx.weights.merge import MergeError, merge_pretrained
from tlx.weights.rules import ConversionError, Rule, convert, transpose

RULES = [
    Rule(r"layer\.(\d+)\.weight", r"layer_\1/kernel", transpose),
    Rule(r"layer\.(\d+)\.bias", r"layer_\1/bias"),
    Rule(r"buffer\..*", None),  # dropped on purpose
]


def test_convert_expands_groups_transforms_and_drops():
    tensors = {
        "layer.0.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "layer.0.bias": np.zeros(2, np.float32),
        "buffer.position_ids": np.arange(4),
    }
    flat = convert(tensors, RULES)
    assert sorted(flat) == ["layer_0/bias", "layer_0/kernel"]
    np.testing.assert_array_equal(flat["layer_0/kernel"], tensors["layer.0.weight"].T)


def test_convert_reports_every_problem_in_one_error():
    rules = [
        *RULES,
        Rule(r"layer\.1\.bias", "other/bias"),  # a second rule for layer.1.bias
        Rule(r"alias\.weight", "layer_0/kernel", transpose),  # collides with layer.0.weight
    ]
    tensors = {
        "layer.0.weight": np.ones((2, 3), np.float32),
        "layer.1.bias": np.ones(2, np.float32),
        "layer.2.weight": np.ones(3, np.float32),  # transpose of a 1-d array fails
        "alias.weight": np.ones((2, 3), np.float32),
        "mystery.gamma": np.ones(2, np.float32),
        "stray": np.ones(1, np.float32),
    }
    with pytest.raises(ConversionError) as info:
        convert(tensors, rules)
    message = str(info.value)
    assert len(info.value.problems) == 5, message
    assert "unmatched source key 'mystery.gamma'" in message
    assert "unmatched source key 'stray'" in message
    assert "'layer.1.bias' matched 2 rules" in message
    assert "target 'layer_0/kernel' produced by both" in message
    assert "transform for 'layer.2.weight'" in message and "2-d" in message


def _init():
    return {
        "encoder": {"dense": {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}},
        "head": {"kernel": jnp.full((2, 5), 7.0), "bias": jnp.zeros(5)},
    }


def test_merge_loads_casts_to_init_dtype_and_reports_fresh_head():
    init = _init()
    pretrained = {
        "encoder/dense/kernel": np.ones((3, 2), np.float64),
        "encoder/dense/bias": np.ones(2, np.float16),
    }
    params, report = merge_pretrained(init, pretrained, allow_fresh=[r"^head/"])
    assert params["encoder"]["dense"]["kernel"].dtype == jnp.float32
    np.testing.assert_array_equal(params["encoder"]["dense"]["kernel"], np.ones((3, 2)))
    np.testing.assert_array_equal(params["head"]["kernel"], init["head"]["kernel"])
    assert sorted(report.loaded) == ["encoder/dense/bias", "encoder/dense/kernel"]
    assert sorted(report.fresh) == ["head/bias", "head/kernel"]
    assert "initialised fresh" in report.summary() and "head/kernel" in report.summary()


def test_merge_reports_mis_shaped_unexpected_and_missing_together():
    pretrained = {
        "encoder/dense/kernel": np.ones((2, 3), np.float32),  # transposed by mistake
        "encoder/dense/bias": np.ones(2, np.float32),
        "pooler/dense/kernel": np.ones((2, 2), np.float32),  # not in the model
    }
    with pytest.raises(MergeError) as info:
        merge_pretrained(_init(), pretrained)  # head is not allowed to be fresh
    message = str(info.value)
    assert "unexpected checkpoint key 'pooler/dense/kernel'" in message
    assert "mis-shaped 'encoder/dense/kernel': checkpoint (2, 3), model (3, 2)" in message
    assert "missing from the checkpoint 'head/kernel'" in message
    assert "missing from the checkpoint 'head/bias'" in message
    assert info.value.report.mis_shaped == [("encoder/dense/kernel", (2, 3), (3, 2))]


def test_merge_hints_at_a_prefix_mismatch():
    pretrained = {"bert/encoder/dense/kernel": np.ones((3, 2), np.float32)}
    with pytest.raises(MergeError, match="'bert/' prefix"):
        merge_pretrained({"encoder": _init()["encoder"]}, pretrained)


def test_merge_into_an_abstract_init_needs_no_fresh_params():
    abstract = jax.eval_shape(_init)
    pretrained = {"encoder/dense/kernel": np.ones((3, 2)), "encoder/dense/bias": np.ones(2)}
    pretrained |= {"head/kernel": np.ones((2, 5)), "head/bias": np.ones(5)}
    params, report = merge_pretrained(abstract, pretrained)
    assert params["head"]["bias"].dtype == jnp.float32 and not report.fresh
    del pretrained["head/bias"]
    with pytest.raises(MergeError, match="'head/bias' has no initial value"):
        merge_pretrained(abstract, pretrained, allow_fresh=[r"^head/"])
