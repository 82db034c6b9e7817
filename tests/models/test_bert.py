"""tlx's BERT against transformers' PyTorch BERT on tiny random configs, every layer compared."""

import copy
import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from tests.conftest import TINY_BERT
from tests.models.equivalence import BERT_RTOL, assert_close, max_abs_diff
from tlx.models.bert import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    bert_param_groups,
)
from tlx.weights.hf_bert import load_hf_bert
from tlx.weights.merge import merge_pretrained

TINY = TINY_BERT

# HF's default init (std 0.02) keeps activations so small that exact and tanh GELU agree to 1e-6
# and a wrong activation would pass; a wider init makes every layer's nonlinearity count. It also
# amplifies float32 rounding: BERT_RTOL (tests/models/equivalence.py) is sized for it.
INIT_RANGE = 0.5


def _batch():
    """Padding in the batch (zeros in the mask) and non-trivial token types."""
    rng = np.random.default_rng(0)
    input_ids = rng.integers(1, TINY["vocab_size"], size=(3, 9)).astype(np.int64)
    attention_mask = np.ones((3, 9), np.int64)
    attention_mask[1, 6:] = 0
    attention_mask[2, 3:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = np.zeros((3, 9), np.int64)
    token_type_ids[:, 4:] = 1
    return input_ids, attention_mask, token_type_ids


def _save_torch(model, folder, weights_format):
    import torch

    model.save_pretrained(folder)
    if weights_format == "bin":  # transformers 5 saves only safetensors; write the legacy file
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")


def _torch_outputs(model, batch, **kwargs):
    import torch

    with torch.no_grad():
        return model(*(torch.from_numpy(x) for x in batch), **kwargs)


@pytest.mark.parametrize(
    "hidden_act,weights_format",
    [("gelu", "safetensors"), ("gelu", "bin"), ("gelu_new", "safetensors"), ("relu", "bin")],
)
def test_bert_model_matches_transformers_every_layer(tmp_path, hidden_act, weights_format):
    torch = pytest.importorskip("torch")
    import transformers

    torch.manual_seed(0)
    hf_config = transformers.BertConfig(**TINY, hidden_act=hidden_act, initializer_range=INIT_RANGE)
    torch_model = transformers.BertModel(hf_config).eval()
    _save_torch(torch_model, tmp_path, weights_format)

    config, flat = load_hf_bert(tmp_path)
    assert config.hidden_act == hidden_act
    model = BertModel(config)
    batch = _batch()
    # Every param comes from the checkpoint, so shapes suffice: no init compile.
    init = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(batch[0]))["params"]
    params, report = merge_pretrained({"bert": init}, flat)
    assert not report.fresh

    last, pooled, hidden = model.apply(
        {"params": params["bert"]}, *map(jnp.asarray, batch), output_hidden_states=True
    )
    expected = _torch_outputs(torch_model, batch, output_hidden_states=True)
    assert len(hidden) == len(expected.hidden_states) == TINY["num_hidden_layers"] + 1
    for i, (ours, theirs) in enumerate(zip(hidden, expected.hidden_states)):
        assert_close(ours, theirs.numpy(), BERT_RTOL, err_msg=f"hidden state {i}")
    assert_close(last, expected.last_hidden_state.numpy(), BERT_RTOL, err_msg="last hidden state")
    assert_close(pooled, expected.pooler_output.numpy(), BERT_RTOL, err_msg="pooled")


def _classifier(folder, weights_format="safetensors", **hf_kwargs):
    """transformers' 3-label classifier (seed 1), saved to folder and read back for tlx."""
    import torch
    import transformers

    torch.manual_seed(1)
    hf_config = transformers.BertConfig(
        **TINY, num_labels=3, initializer_range=INIT_RANGE, **hf_kwargs
    )
    torch_model = transformers.BertForSequenceClassification(hf_config).eval()
    _save_torch(torch_model, folder, weights_format)
    config, flat = load_hf_bert(folder)
    return torch_model, config, flat


def _logits(config, flat):
    model = BertForSequenceClassification(config, num_labels=3)
    batch = _batch()
    init = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(batch[0]))["params"]
    params, report = merge_pretrained(init, flat)
    assert not report.fresh and not report.unexpected
    return np.asarray(model.apply({"params": params}, *map(jnp.asarray, batch)))


@pytest.mark.parametrize("weights_format", ["safetensors", "bin"])
def test_sequence_classification_logits_match_transformers(tmp_path, weights_format):
    pytest.importorskip("torch")
    torch_model, config, flat = _classifier(tmp_path, weights_format)
    assert {"classifier/kernel", "classifier/bias"} <= set(flat)
    logits = _logits(config, flat)
    expected = _torch_outputs(torch_model, _batch()).logits.numpy()
    assert logits.shape == (3, 3)
    assert_close(logits, expected, BERT_RTOL)


def test_tolerance_spans_float32_rounding_but_not_a_wrong_conversion(tmp_path):
    """BERT_RTOL's two ends, on the classifier whose logits differed by 1.8e-5 on an Intel Xeon.
    Against transformers in float64 (exact, to float32 precision), each float32 result, tlx's and
    transformers' own, is within half the tolerance, so their difference stays within it on a CPU
    that rounds up to 8x worse than this one (measured: 15 and 15 ulps of the scale, 128 allowed).
    A wrong conversion misses it by more than 20x (tanh GELU for exact: 32x; the others: > 10^4x).
    Scale = the largest logit (4.6): row 2's logits (~0.4) cancel terms as large as the others'."""
    pytest.importorskip("torch")
    torch_model, config, flat = _classifier(tmp_path)
    batch = _batch()
    exact = _torch_outputs(copy.deepcopy(torch_model).double(), batch).logits.numpy()
    theirs = _torch_outputs(torch_model, batch).logits.numpy()
    tol = BERT_RTOL * float(np.max(np.abs(theirs)))
    assert max_abs_diff(theirs, exact) <= tol / 2, "transformers float32 vs float64"
    assert max_abs_diff(_logits(config, flat), exact) <= tol / 2, "tlx float32 vs float64"

    attn = "bert/encoder/layer_0/attention/self/"
    transposed = {**flat, attn + "query/kernel": flat[attn + "query/kernel"].T}
    swapped = {**flat}
    for leaf in ("kernel", "bias"):
        swapped[f"{attn}query/{leaf}"] = flat[f"{attn}key/{leaf}"]
        swapped[f"{attn}key/{leaf}"] = flat[f"{attn}query/{leaf}"]
    wrong = {
        "tanh GELU for exact": _logits(dataclasses.replace(config, hidden_act="gelu_new"), flat),
        "query kernel not transposed": _logits(config, transposed),
        "query and key swapped": _logits(config, swapped),
    }
    for mistake, logits in wrong.items():
        assert max_abs_diff(logits, theirs) > 20 * tol, mistake
        with pytest.raises(AssertionError):
            assert_close(logits, theirs, BERT_RTOL)


def test_layer_norm_eps_comes_from_the_checkpoint(tmp_path):
    """BERT's eps (1e-12) against a wrong 1e-5 moves these logits by only ~40 ulps, inside the
    float32 noise, so the tests above cannot tell whether eps is read; a large one shows it."""
    pytest.importorskip("torch")
    torch_model, config, flat = _classifier(tmp_path, layer_norm_eps=0.1)
    assert config.layer_norm_eps == 0.1
    theirs = _torch_outputs(torch_model, _batch()).logits.numpy()
    assert_close(_logits(config, flat), theirs, BERT_RTOL)
    wrong = _logits(dataclasses.replace(config, layer_norm_eps=1e-12), flat)
    assert max_abs_diff(wrong, theirs) > 20 * BERT_RTOL * float(np.max(np.abs(theirs)))


def test_new_head_on_pretrained_encoder_reports_fresh_params(tmp_path):
    pytest.importorskip("torch")
    import transformers

    transformers.BertModel(transformers.BertConfig(**TINY)).save_pretrained(tmp_path)
    config, flat = load_hf_bert(tmp_path)
    model = BertForSequenceClassification(config, num_labels=5)
    init = model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
    params, report = merge_pretrained(init, flat, allow_fresh=[r"^classifier/"])
    assert sorted(report.fresh) == ["classifier/bias", "classifier/kernel"]
    assert "classifier/kernel" in report.summary()
    np.testing.assert_array_equal(params["classifier"]["kernel"], init["classifier"]["kernel"])
    np.testing.assert_array_equal(
        params["bert"]["pooler"]["dense"]["bias"], flat["bert/pooler/dense/bias"]
    )


def _tiny_config(**overrides):
    return BertConfig(**{**TINY, **overrides})


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_without_pooler_has_no_pooler_params(pooling):
    model = BertForSequenceClassification(_tiny_config(), num_labels=2, pooling=pooling)
    input_ids, attention_mask, token_type_ids = map(jnp.asarray, _batch())
    params = model.init(jax.random.key(0), input_ids)["params"]
    assert "pooler" not in params["bert"]
    logits = model.apply({"params": params}, input_ids, attention_mask, token_type_ids)
    assert logits.shape == (3, 2)


def test_mean_pooling_ignores_padding():
    """Changing a padded token must not change the mean-pooled logits."""
    model = BertForSequenceClassification(_tiny_config(), num_labels=2, pooling="mean")
    input_ids, attention_mask, _ = map(jnp.asarray, _batch())
    params = model.init(jax.random.key(0), input_ids)["params"]
    changed = input_ids.at[2, 5].set(7)  # row 2 is padding from position 3 on
    a = model.apply({"params": params}, input_ids, attention_mask)
    b = model.apply({"params": params}, changed, attention_mask)
    # Exactly: padded keys get softmax weight exp(finfo.min - max) == 0 and mean weight 0.
    np.testing.assert_array_equal(a, b)


def test_dropout_uses_the_dropout_rng_only_when_training():
    model = BertForSequenceClassification(_tiny_config(), num_labels=2)
    input_ids, attention_mask, _ = map(jnp.asarray, _batch())
    params = model.init(jax.random.key(0), input_ids)["params"]
    eval_a = model.apply({"params": params}, input_ids, attention_mask)
    eval_b = model.apply({"params": params}, input_ids, attention_mask, deterministic=True)
    np.testing.assert_array_equal(eval_a, eval_b)
    apply_train = jax.jit(
        lambda key: model.apply(
            {"params": params},
            input_ids,
            attention_mask,
            deterministic=False,
            rngs={"dropout": key},
        )
    )
    # rbg keys: this jaxlib takes ~6 s to compile a threefry bernoulli on the CPU, rbg ~0.3 s.
    train = lambda seed: apply_train(jax.random.key(seed, impl="rbg"))
    assert not np.allclose(train(1), eval_a)
    assert not np.allclose(train(1), train(2))
    np.testing.assert_array_equal(train(3), train(3))


def test_bfloat16_compute_stays_close_to_float32():
    config = _tiny_config()
    input_ids, attention_mask, token_type_ids = map(jnp.asarray, _batch())
    params = BertModel(config).init(jax.random.key(0), input_ids)["params"]
    ref, _ = BertModel(config).apply({"params": params}, input_ids, attention_mask, token_type_ids)
    low, _ = BertModel(config, dtype=jnp.bfloat16).apply(
        {"params": params}, input_ids, attention_mask, token_type_ids
    )
    assert low.dtype == jnp.bfloat16
    # bfloat16 keeps 8 significant bits (eps 2**-7); LayerNorm renormalises every layer, so the
    # error does not compound: measured 1.1 eps of the scale, allowed 4.
    assert_close(low.astype(jnp.float32), ref, rtol=4 * float(jnp.finfo(jnp.bfloat16).eps))


@pytest.mark.parametrize("pooling,has_pooler", [("pooler", True), ("mean", False)])
def test_param_groups_cover_every_param_exactly_once_in_order(pooling, has_pooler):
    model = BertForSequenceClassification(_tiny_config(), num_labels=2, pooling=pooling)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
    groups = bert_param_groups(TINY["num_hidden_layers"], has_pooler=has_pooler)
    names = [name for name, _ in groups]
    expected = ["embeddings", "layer_0", "layer_1", *(["pooler"] if has_pooler else []), "head"]
    assert names == expected
    for path in traverse_util.flatten_dict(params, sep="/"):
        hits = [name for name, regex in groups if re.search(regex, path)]
        assert len(hits) == 1, (path, hits)


def test_param_groups_do_not_confuse_layer_1_and_layer_10():
    groups = dict(bert_param_groups(12))
    assert not re.search(groups["layer_1"], "bert/encoder/layer_10/output/dense/kernel")


def test_config_from_dict_ignores_unknown_keys_and_rejects_other_models():
    d = {**TINY, "model_type": "bert", "architectures": ["BertModel"], "use_cache": True}
    assert BertConfig.from_dict(d) == BertConfig(**TINY)
    with pytest.raises(ValueError, match="model_type='roberta'"):
        BertConfig.from_dict({**d, "model_type": "roberta"})
    with pytest.raises(ValueError, match="relative_key"):
        BertConfig.from_dict({**d, "position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="hidden_act"):
        BertConfig.from_dict({**d, "hidden_act": "swish"})


def test_too_long_inputs_are_refused_not_clamped():
    model = BertModel(_tiny_config())
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=64"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 65), jnp.int32))
