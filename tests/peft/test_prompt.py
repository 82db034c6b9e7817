"""Prompt tuning (tlx.peft.prompt): learned vectors after [CLS] that every layer attends to, cut
from the outputs again; refused on a model without BERT embeddings."""

import dataclasses

import jax
import numpy as np
import pytest

from tests.peft.test_adapters import BATCH, CONFIG, tiny_bert
from tests.peft.test_lora import tiny_bundle
from tlx.errors import ConfigError
from tlx.models.bert import BertForSequenceClassification, bert_param_groups
from tlx.peft import apply_peft
from tlx.spec import PeftSpec
from tlx.tree import flatten, unflatten
from tlx.zoo.bundles import ModelBundle
from tlx.zoo.text import bert_forward_and_init


def with_prompt(bundle, tokens=3):
    shapes = jax.eval_shape(bundle.init, jax.random.key(0))
    param_shapes = {p: s.shape for p, s in flatten(shapes["params"]).items()}
    return apply_peft(bundle, PeftSpec(method="prompt", prompt_tokens=tokens), param_shapes)


def mean_pooled_bert(config=CONFIG):
    module = BertForSequenceClassification(config, num_labels=3, pooling="mean")
    forward, init = bert_forward_and_init(module)
    return ModelBundle(module, bert_param_groups(2, has_pooler=False), forward, init)


@pytest.mark.parametrize("make", [tiny_bert, mean_pooled_bert], ids=["pooler", "mean"])
def test_the_prompt_is_attended_to_and_trained_and_the_outputs_keep_their_shape(make):
    base, bundle = make(), with_prompt(make())
    params = bundle.init(jax.random.key(0))["params"]
    assert flatten(params)["bert/embeddings/prompt"].shape == (3, CONFIG.hidden_size)
    logits = bundle.forward(params, {}, BATCH, None, False)[0]
    base_params = unflatten({p: v for p, v in flatten(params).items() if "prompt" not in p})
    plain = base.forward(base_params, {}, BATCH, None, False)[0]
    assert logits.shape == plain.shape
    assert np.abs(np.asarray(logits) - np.asarray(plain)).max() > 1e-4  # the prompt is read
    grads = jax.grad(lambda p: bundle.forward(p, {}, BATCH, None, False)[0].sum())(params)
    assert np.abs(flatten(grads)["bert/embeddings/prompt"]).max() > 0


def test_the_prompt_works_with_fused_attention_and_its_key_lengths():
    fused = dataclasses.replace(CONFIG, attn_implementation="xla", attention_probs_dropout_prob=0)
    eager = dataclasses.replace(CONFIG, attention_probs_dropout_prob=0)
    outputs = []
    for config in (eager, fused):
        bundle = with_prompt(mean_pooled_bert(config))
        params = bundle.init(jax.random.key(0))["params"]
        outputs.append(np.asarray(bundle.forward(params, {}, BATCH, None, False)[0]))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)


def test_prompt_tuning_on_a_model_without_bert_embeddings_is_refused():
    with pytest.raises(ConfigError, match="needs one BERT embeddings module"):
        with_prompt(tiny_bundle())
    with pytest.raises(ConfigError, match="peft.prompt_tokens"):
        with_prompt(tiny_bert(), tokens=0)
