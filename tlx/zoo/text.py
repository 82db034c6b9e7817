"""Text classifiers on converted Hugging Face BERT-family encoders: ``model.name = "bert_classifier"``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from tlx.models.bert import BertForSequenceClassification, bert_param_groups
from tlx.ranges import OPTIONAL_DROPOUT
from tlx.spec import ModelSpec
from tlx.types import ForwardFn
from tlx.weights.hf_bert import load_hf_bert, load_tokenizer
from tlx.zoo.bundles import ModelBundle, compute_dtype, sown
from tlx.zoo.resolve import resolve_checkpoint


def bert_forward(module: BertForSequenceClassification, endpoint: str = "") -> ForwardFn:
    """The uniform forward(params, model_state, batch, rng, train) of a BERT classifier over
    tokenised batches (input_ids, attention_mask, token_type_ids). With an `endpoint` (the only
    one sown is "pooled", the classifier's input) the outputs are (logits, its activations)."""

    def forward(params, model_state, batch, rng, train):
        out = module.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            deterministic=not train,
            rngs={"dropout": rng} if train else None,
            mutable=["intermediates"] if endpoint else False,
        )
        if endpoint:
            logits, updates = out
            return (logits, sown(updates.get("intermediates", {}), endpoint)), model_state
        return out, model_state

    return forward


def bert_forward_and_init(module: BertForSequenceClassification):
    """The uniform forward (see `bert_forward`) and init(rng) of a BERT classifier."""

    def init(rng):
        ids = np.zeros((1, 8), np.int32)
        return module.init(rng, ids, np.ones_like(ids), ids)

    return bert_forward(module), init


def build_bert_classifier(model: ModelSpec | Mapping, num_classes: int) -> ModelBundle:
    spec = ModelSpec.of(model)
    folder = resolve_checkpoint(spec.checkpoint)
    config, pretrained = load_hf_bert(folder)
    random_init = bool(spec.random_init)  # the architecture only: from scratch
    dropout = spec.dropout  # None: the checkpoint's own rates
    if dropout is not None:
        OPTIONAL_DROPOUT.require(dropout, "model.dropout")
        config = dataclasses.replace(
            config, hidden_dropout_prob=float(dropout), attention_probs_dropout_prob=float(dropout)
        )
    if spec.attn_implementation != "eager":  # the fused kernels have no attention dropout
        config = config.for_fused_attention(spec.attn_implementation)
    pooling = spec.pooling
    module = BertForSequenceClassification(
        config,
        num_labels=num_classes,
        pooling=pooling,
        classifier_dropout=spec.classifier_dropout,
        dtype=compute_dtype(spec),
    )
    if pooling != "pooler":  # the pooler is not part of this model: its weights are unused
        pretrained = {k: v for k, v in pretrained.items() if not k.startswith("bert/pooler/")}
    # A checkpoint's own classifier is reused only when it has this task's number of classes.
    head = {k: v for k, v in pretrained.items() if k.startswith("classifier/")}
    if head and head.get("classifier/bias", np.zeros(0)).shape != (num_classes,):
        pretrained = {k: v for k, v in pretrained.items() if k not in head}

    forward, init = bert_forward_and_init(module)
    return ModelBundle(
        module=module,
        groups=bert_param_groups(config.num_hidden_layers, has_pooler=pooling == "pooler"),
        forward=forward,
        init=init,
        # one forward for every stage (no BatchNorm policy); an endpoint adds its activations
        forward_for_stage=lambda trainable, endpoint="": bert_forward(module, endpoint),
        pretrained=None if random_init else pretrained,
        allow_fresh=(r"^classifier/",),
        tokenizer=load_tokenizer(folder),
        checkpoint_dir=str(folder),
        description=(
            f"BERT {config.num_hidden_layers}x{config.hidden_size} "
            f"{'random init, shaped as' if random_init else 'from'} {spec.checkpoint}, "
            f"{pooling} pooling, {num_classes} classes"
        ),
    )
