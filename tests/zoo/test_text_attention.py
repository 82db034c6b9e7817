"""config.model.attn_implementation: a BERT classifier attending through
jax.nn.dot_product_attention, built from a Hugging Face folder like any other."""

import numpy as np
import pytest

from tests.models.equivalence import assert_close
from tlx.zoo.registry import build_model


def bundle_for(folder, implementation):
    spec = {"name": "bert_classifier", "checkpoint": str(folder)}
    return build_model({**spec, "attn_implementation": implementation}, num_classes=3)


def test_fused_attention_drops_only_attention_dropout_and_keeps_the_outputs(tiny_bert_dir):
    import jax

    eager, fused = (bundle_for(tiny_bert_dir, impl) for impl in ("eager", "fused"))
    config, fused_config = eager.module.config, fused.module.config
    assert fused_config.attn_implementation == "fused"
    assert fused_config.attention_probs_dropout_prob == 0.0
    assert config.attention_probs_dropout_prob > 0  # the checkpoint's own rate, kept by eager
    assert fused_config.hidden_dropout_prob == config.hidden_dropout_prob
    variables = eager.init(jax.random.key(0))
    ids = np.array([[101, 2023, 2003, 102, 0, 0], [101, 2204, 3185, 2001, 2307, 102]], np.int32)
    batch = {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int32)}
    batch["token_type_ids"] = np.zeros_like(ids)
    outputs = [b.forward(variables["params"], {}, batch, None, False)[0] for b in (eager, fused)]
    # float32, the same weights: the two paths differ by reassociation only (relative 1e-5).
    assert_close(outputs[1], outputs[0], rtol=1e-5)


def test_an_unknown_attention_implementation_is_refused_at_build(tiny_bert_dir):
    with pytest.raises(ValueError, match="attn_implementation='flash'.*eager"):
        bundle_for(tiny_bert_dir, "flash")
