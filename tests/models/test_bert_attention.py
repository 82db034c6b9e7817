"""BERT attention through jax.nn.dot_product_attention ("xla", "cudnn", "fused") against tlx's own
einsum attention ("eager"), on a tiny random BERT and a right-padded batch."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from tests.models.equivalence import assert_close
from tlx.models.bert import (
    ATTN_IMPLEMENTATIONS,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
)

CONFIG = BertConfig(
    vocab_size=100,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=16,
)
LENGTHS = (12, 1, 7, 3)  # right-padded as tlx's batches are: a full row and a [CLS]-only one

# Eager and XLA attention are the same float32 ops (q.k, scale, masked float32 softmax, p.v);
# only XLA's contraction layouts differ, hence the GEMM blocking and summation order, which vary
# with the CPU (Intel AMX, AVX-512, AMD AVX2) and thread count. Measured on this project's CPU:
# forward bit-identical, gradients at most 5.6e-7 of each parameter's largest gradient (4.7
# ulps). 1e-5 of the output's scale (84 ulps) leaves 18x for other CPUs, and is 70,000x below
# what dropping the padding mask does to these outputs (0.70 of the scale; checked below).
FLOAT32_RTOL = 1e-5
# bfloat16 keeps 8 significant bits: each rounding is off by up to 2**-8 (3.9e-3) relative. Eager
# rounds the attention scores to bfloat16 before its float32 softmax, XLA keeps float32 logits,
# and two layers carry the difference on: measured 2**-6 of the scale (hidden states, pooled and
# logits). 2**-4 is 4x that, 11x below the padding mask's effect (0.70).
BFLOAT16_RTOL = 2.0**-4


def _batch():
    ids = np.random.default_rng(0).integers(1, CONFIG.vocab_size, (len(LENGTHS), max(LENGTHS)))
    mask = (np.arange(max(LENGTHS))[None, :] < np.array(LENGTHS)[:, None]).astype(np.int32)
    return np.where(mask, ids, CONFIG.pad_token_id).astype(np.int32), mask


def _classifier(implementation="eager", dtype=jnp.float32, config=CONFIG):
    config = dataclasses.replace(config, attn_implementation=implementation)
    return BertForSequenceClassification(config, num_labels=3, dtype=dtype)


def _params():
    ids, mask = _batch()
    return _classifier().init(jax.random.key(0), ids, mask)["params"]


def _outputs(implementation, params, dtype=jnp.float32, use_mask=True):
    """(hidden states at the unpadded positions, pooled, classifier logits), as float32."""
    ids, mask = _batch()
    mask_or_none = mask if use_mask else None
    config = dataclasses.replace(CONFIG, attn_implementation=implementation)
    hidden, pooled = BertModel(config, dtype).apply({"params": params["bert"]}, ids, mask_or_none)
    logits = _classifier(implementation, dtype).apply({"params": params}, ids, mask_or_none)
    valid = mask.astype(bool)
    as32 = lambda x: np.asarray(x.astype(jnp.float32))
    return {"hidden": as32(hidden)[valid], "pooled": as32(pooled), "logits": as32(logits)}


def _assert_outputs_close(ours, eager, rtol, label):
    for name in eager:
        assert_close(ours[name], eager[name], rtol, err_msg=f"{label} {name}")


@pytest.mark.parametrize("implementation", ["xla", "fused"])  # on a CPU "fused" runs XLA
def test_float32_matches_eager(implementation):
    params = _params()
    eager = _outputs("eager", params)
    # The batch's padding must matter, or the comparison would not test the key lengths.
    unmasked = _outputs("eager", params, use_mask=False)
    assert (
        np.abs(unmasked["hidden"] - eager["hidden"]).max()
        > 1e4 * FLOAT32_RTOL * np.abs(eager["hidden"]).max()
    )
    _assert_outputs_close(_outputs(implementation, params), eager, FLOAT32_RTOL, implementation)


def test_padded_positions_stay_finite():
    ids, mask = _batch()
    config = dataclasses.replace(CONFIG, attn_implementation="xla")
    hidden, _ = BertModel(config).apply({"params": _params()["bert"]}, ids, mask)
    assert np.isfinite(np.asarray(hidden)[mask == 0]).all()


def test_gradients_match_eager():
    ids, mask = _batch()
    labels = np.arange(len(LENGTHS)) % 3

    def grads(implementation):
        def loss(params):
            logits = _classifier(implementation).apply({"params": params}, ids, mask)
            log_probs = jax.nn.log_softmax(logits)
            return -jnp.take_along_axis(log_probs, labels[:, None], axis=1).mean()

        return traverse_util.flatten_dict(jax.grad(loss)(_params()), sep="/")

    eager, xla = grads("eager"), grads("xla")
    largest = max(np.abs(g).max() for g in eager.values())
    for path, g in eager.items():
        if path.endswith("attention/self/key/bias"):
            # Zero in exact arithmetic: q.b_key shifts a whole row of scores, which softmax
            # ignores. What is there is rounding, bounded against the largest gradient.
            assert np.abs(xla[path]).max() <= FLOAT32_RTOL * largest, path
            continue
        assert_close(xla[path], g, FLOAT32_RTOL, err_msg=path)


def test_bfloat16_matches_eager():
    params = _params()
    eager = _outputs("eager", params, jnp.bfloat16)
    _assert_outputs_close(_outputs("xla", params, jnp.bfloat16), eager, BFLOAT16_RTOL, "bf16")


@pytest.mark.parametrize("implementation", ["xla", "fused"])
def test_attention_dropout_is_refused_in_training(implementation):
    ids, mask = _batch()
    model = _classifier(implementation)
    assert CONFIG.attention_probs_dropout_prob > 0
    params = {"params": _params()}
    model.apply(params, ids, mask, deterministic=True)  # evaluation has no dropout to lose
    with pytest.raises(ValueError, match="attention_probs_dropout_prob"):
        model.apply(params, ids, mask, deterministic=False, rngs={"dropout": jax.random.key(1)})


def test_for_fused_attention_trains_with_hidden_dropout():
    config = CONFIG.for_fused_attention()
    assert config.attn_implementation == "fused"
    assert config.attention_probs_dropout_prob == 0.0
    assert config.hidden_dropout_prob == CONFIG.hidden_dropout_prob
    ids, mask = _batch()
    model = _classifier("fused", config=config)
    params = {"params": _params()}
    train = model.apply(params, ids, mask, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert np.isfinite(np.asarray(train)).all()
    # Hidden dropout still acts: training differs from evaluation.
    assert not np.allclose(train, model.apply(params, ids, mask, deterministic=True))


def test_unknown_implementation_names_the_allowed_ones():
    with pytest.raises(ValueError, match="flash") as error:
        BertConfig(**{**dataclasses.asdict(CONFIG), "attn_implementation": "flash"})
    for name in ATTN_IMPLEMENTATIONS:
        assert repr(name) in str(error.value)


def test_from_dict_reads_attn_implementation_not_transformers_own():
    d = {**dataclasses.asdict(CONFIG), "model_type": "bert"}
    del d["attn_implementation"]
    # transformers' key names a PyTorch kernel ("sdpa", "flash_attention_2"): not tlx's choice.
    assert (
        BertConfig.from_dict({**d, "_attn_implementation": "sdpa"}).attn_implementation == "eager"
    )
    assert BertConfig.from_dict({**d, "attn_implementation": "xla"}).attn_implementation == "xla"


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="cuDNN may be there")
def test_cudnn_without_a_gpu_says_what_to_do():
    ids, mask = _batch()
    with pytest.raises(ValueError, match='needs an NVIDIA GPU.*"fused"'):
        _classifier("cudnn").apply({"params": _params()}, ids, mask)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="needs a backend without cuDNN")
def test_fused_falls_back_to_xla_when_cudnn_refuses(monkeypatch):
    """On a "gpu" backend "fused" tries cuDNN first; here jax refuses it ("cuDNN is not
    detected"), as it refuses float32 inputs and unsupported head dims on a real GPU."""
    params = _params()
    xla = _outputs("xla", params)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    fused = _outputs("fused", params)
    for name in xla:
        np.testing.assert_array_equal(fused[name], xla[name], err_msg=name)
